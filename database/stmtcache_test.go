package database

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func openSQLite(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), Config{URL: filepath.Join(t.TempDir(), "t.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NotNil(t, db.stmts, "the SQLite read pool has a statement cache")
	return db
}

// TestReadsRunPrepared: a read through GORM's read handle is prepared once
// and its statement kept for the next read of the same text, from any
// goroutine; a schema change (a column added, the table rebuilt) needs
// nothing; a statement that does not prepare fails as it would by text.
func TestReadsRunPrepared(t *testing.T) {
	db := openSQLite(t)
	require.NoError(t, db.Write.Exec(`CREATE TABLE things (id TEXT PRIMARY KEY, name TEXT, at DATETIME)`).Error)
	require.NoError(t, db.Write.Exec(`INSERT INTO things VALUES ('a', 'one', '2026-12-02 10:00:00.5+00:00')`).Error)
	const q = `SELECT * FROM things WHERE id = ?`
	read := func() map[string]any {
		var rows []map[string]any
		require.NoError(t, db.Read.Raw(q, "a").Scan(&rows).Error)
		require.Len(t, rows, 1)
		return rows[0]
	}
	row := read()
	require.Equal(t, "one", row["name"])
	require.Contains(t, db.stmts.stmts, q, "the read's statement is kept")
	first := db.stmts.stmts[q]

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				var rows []map[string]any
				if err := db.Read.Raw(q, "a").Scan(&rows).Error; err != nil || len(rows) != 1 {
					t.Error(err, rows)
				}
			}
		})
	}
	wg.Wait()
	require.Same(t, first, db.stmts.stmts[q], "reused, not prepared again")

	// A column added: the kept statement (SELECT *) reads it.
	require.NoError(t, db.Write.Exec(`ALTER TABLE things ADD COLUMN n INTEGER DEFAULT 7`).Error)
	require.EqualValues(t, 7, read()["n"])
	// The table rebuilt under the same name, as a schema change does.
	for _, ddl := range []string{
		`CREATE TABLE things_new (id TEXT PRIMARY KEY, name TEXT, at DATETIME, n INTEGER, m TEXT DEFAULT 'x')`,
		`INSERT INTO things_new (id, name, at, n) SELECT id, name, at, n FROM things`,
		`DROP TABLE things`,
		`ALTER TABLE things_new RENAME TO things`,
	} {
		require.NoError(t, db.Write.Exec(ddl).Error)
	}
	row = read()
	require.Equal(t, "x", row["m"])
	require.Equal(t, "one", row["name"])
	require.Same(t, first, db.stmts.stmts[q])

	// The table gone: the same error as by text, and nothing kept broken.
	require.NoError(t, db.Write.Exec(`DROP TABLE things`).Error)
	var rows []map[string]any
	err := db.Read.Raw(q, "a").Scan(&rows).Error
	require.ErrorContains(t, err, "no such table")
	err = db.Read.Raw(`SELECT * FROM nothing_here`).Scan(&rows).Error
	require.ErrorContains(t, err, "no such table")
	require.NotContains(t, db.stmts.stmts, `SELECT * FROM nothing_here`, "a statement that did not prepare is not kept")
}

// TestStmtCacheIsBounded: past maxCachedStmts texts, statements run by
// their text and still answer.
func TestStmtCacheIsBounded(t *testing.T) {
	db := openSQLite(t)
	for i := range maxCachedStmts + 10 {
		var n int64
		require.NoError(t, db.Read.Raw(fmt.Sprintf("SELECT %d", i)).Scan(&n).Error)
		require.EqualValues(t, i, n)
	}
	require.Len(t, db.stmts.stmts, maxCachedStmts)
}
