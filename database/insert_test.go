package database_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gorm.io/gorm"

	"github.com/herald-dev/herald/database"
)

// capturer records what Insert hands it.
type capturer struct{ rows []map[string]any }

func (*capturer) Name() string              { return "test:capturer" }
func (*capturer) Initialize(*gorm.DB) error { return nil }
func (c *capturer) Inserted(_ *gorm.DB, table string, row map[string]any) error {
	c.rows = append(c.rows, map[string]any{"table": table, "name": row["name"]})
	return nil
}

// TestInsert: a row is written only inside a transaction, every
// InsertCapturer plugin is handed it, and a traced statement gets its
// span like any other.
func TestInsert(t *testing.T) {
	db, err := database.Open(context.Background(), database.Config{URL: filepath.Join(t.TempDir(), "t.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	require.NoError(t, database.Trace(db.Write, db.Kind, tp))
	c := &capturer{}
	require.NoError(t, db.Write.Use(c))
	require.NoError(t, db.Write.Exec("CREATE TABLE things (id TEXT PRIMARY KEY, name TEXT, n REAL)").Error)
	count := func() (n int64) {
		require.NoError(t, db.Read.Raw("SELECT COUNT(*) FROM things").Scan(&n).Error)
		return n
	}
	cols := []string{"id", "name", "n"}

	err = database.Insert(db.Write, "things", cols, map[string]any{"id": "a", "name": "outside", "n": 1.5})
	require.ErrorContains(t, err, "must run in a transaction")
	require.Zero(t, count())
	require.Empty(t, c.rows)

	require.NoError(t, db.Write.Transaction(func(tx *gorm.DB) error {
		return database.Insert(tx, "things", cols, map[string]any{"id": "b", "name": `it's "quoted"`, "n": 2.5})
	}))
	require.EqualValues(t, 1, count())
	require.Equal(t, []map[string]any{{"table": "things", "name": `it's "quoted"`}}, c.rows)
	require.Empty(t, exp.GetSpans(), "no recording span: no database span")

	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	require.NoError(t, db.Write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return database.Insert(tx, "things", cols, map[string]any{"id": "c", "name": "traced", "n": nil})
	}))
	parent.End()
	var names []string
	for _, s := range exp.GetSpans() {
		names = append(names, s.Name)
	}
	require.Contains(t, names, "INSERT things")
	require.EqualValues(t, 2, count())

	err = db.Write.Transaction(func(tx *gorm.DB) error {
		return database.Insert(tx, "things", cols, map[string]any{"id": "b", "name": "again", "n": 0.0})
	})
	require.ErrorContains(t, err, "UNIQUE constraint failed: things.id", "the driver's error, for the caller to map")
	require.Len(t, c.rows, 2, "a failed insert is not captured")
}
