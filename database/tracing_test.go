package database_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/herald-dev/herald/database"
)

// TestTraceMakesChildSpans: every statement run with a request's span in
// its context gets a database span under it; statements without one get
// none.
func TestTraceMakesChildSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	db, err := database.Open(context.Background(), database.Config{URL: filepath.Join(t.TempDir(), "t.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, database.Trace(db.Write, db.Kind, tp))

	require.NoError(t, db.Write.Exec("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT)").Error)
	require.Empty(t, exp.GetSpans(), "no request span, no database span")

	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	require.NoError(t, db.Write.WithContext(ctx).Table("things").Create(map[string]any{"name": "a"}).Error)
	var n int64
	require.NoError(t, db.Write.WithContext(ctx).Raw("SELECT COUNT(*) FROM things").Scan(&n).Error)
	parent.End()

	var dbSpans []sdktrace.ReadOnlySpan
	for _, s := range exp.GetSpans().Snapshots() {
		if s.Name() != "request" {
			dbSpans = append(dbSpans, s)
		}
	}
	require.Len(t, dbSpans, 2)
	for _, s := range dbSpans {
		require.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID())
		require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), "%s is a child of the request span", s.Name())
	}
	require.Equal(t, "db.create", dbSpans[0].Name())
	require.Equal(t, "db.row", dbSpans[1].Name()) // Raw(...).Scan runs the row callbacks
	attrs := map[string]string{}
	for _, kv := range dbSpans[0].Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	require.Equal(t, "things", attrs["db.collection.name"])
	require.Contains(t, attrs["db.query.text"], "INSERT INTO")
}
