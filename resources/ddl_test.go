package resources

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/database"
)

// TestSQLiteEnumCheck: on SQLite an enum's CHECK accepts exactly its values
// (and NULL, as IN did) without an ephemeral index per statement, which an
// IN list of three or more values made SQLite build at every INSERT.
func TestSQLiteEnumCheck(t *testing.T) {
	db, err := database.Open(context.Background(), database.Config{URL: filepath.Join(t.TempDir(), "t.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	r := &Resource{Name: "items", Fields: []*Field{{Name: "status", Type: TypeEnum, EnumValues: []string{"draft", "it's live", "archived"}}}}
	require.NoError(t, db.Write.Exec(createTableSQL(database.SQLite, "items", r)).Error)
	insert := `INSERT INTO items (id, status, created_at, updated_at) VALUES (?, ?, '2026-01-01', '2026-01-01')`
	for i, v := range []any{"draft", "it's live", "archived", nil} {
		require.NoError(t, db.Write.Exec(insert, string(rune('a'+i)), v).Error, "%v is allowed", v)
	}
	for i, v := range []string{"Draft", "", "it''s live", "draft "} {
		err := db.Write.Exec(insert, string(rune('p'+i)), v).Error
		require.ErrorContains(t, err, "CHECK constraint failed: items_status_check", "%q is refused", v)
	}
	var program []map[string]any
	require.NoError(t, db.Read.Raw("EXPLAIN "+strings.ReplaceAll(insert, "?", "'x'")).Scan(&program).Error)
	var ops []any
	for _, step := range program {
		ops = append(ops, step["opcode"])
	}
	require.Contains(t, ops, "Insert", "the program was read")
	require.NotContains(t, ops, "OpenEphemeral")
}
