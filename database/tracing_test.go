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
// its context gets a database span under it, named by operation and table
// as the OpenTelemetry database conventions say; statements without one,
// or under a span that is not sampled, get none.
func TestTraceMakesChildSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	db, err := database.Open(context.Background(), database.Config{URL: filepath.Join(t.TempDir(), "t.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, database.Trace(db.Write, db.Kind, tp))

	require.NoError(t, db.Write.Exec("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT)").Error)
	require.Empty(t, exp.GetSpans(), "no request span, no database span")

	unsampled := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	ctx, quiet := unsampled.Tracer("test").Start(context.Background(), "request")
	require.True(t, quiet.SpanContext().IsValid())
	require.NoError(t, db.Write.WithContext(ctx).Table("things").Create(map[string]any{"name": "a"}).Error)
	quiet.End()
	require.Empty(t, exp.GetSpans(), "a span that is not recording gets no children")

	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	require.NoError(t, db.Write.WithContext(ctx).Table("things").Create(map[string]any{"name": "a"}).Error)
	var n int64
	require.NoError(t, db.Write.WithContext(ctx).Raw("SELECT COUNT(*) FROM things").Scan(&n).Error)
	require.NoError(t, db.Write.WithContext(ctx).Exec(`UPDATE "things" SET name = 'x' WHERE id = ?`, 1).Error)
	var names []string
	require.NoError(t, db.Write.WithContext(ctx).Table("things").Pluck("name", &names).Error)
	parent.End()

	var dbSpans []sdktrace.ReadOnlySpan
	for _, s := range exp.GetSpans().Snapshots() {
		if s.Name() != "request" {
			dbSpans = append(dbSpans, s)
		}
	}
	require.Len(t, dbSpans, 4)
	for _, s := range dbSpans {
		require.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID())
		require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), "%s is a child of the request span", s.Name())
	}
	want := []struct{ name, op, table string }{
		{"INSERT things", "INSERT", "things"},
		{"SELECT things", "SELECT", "things"}, // raw: parsed from the SQL
		{"UPDATE things", "UPDATE", "things"}, // raw, quoted identifier
		{"SELECT things", "SELECT", "things"}, // a query callback
	}
	for i, w := range want {
		attrs := map[string]string{}
		for _, kv := range dbSpans[i].Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		require.Equal(t, w.name, dbSpans[i].Name())
		require.Equal(t, w.op, attrs["db.operation.name"], w.name)
		require.Equal(t, w.table, attrs["db.collection.name"], w.name)
		require.Equal(t, "sqlite", attrs["db.system.name"], w.name)
	}
	attrs := map[string]string{}
	for _, kv := range dbSpans[0].Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	require.Contains(t, attrs["db.query.text"], "INSERT INTO")
}

func TestSystemName(t *testing.T) {
	require.Equal(t, "postgresql", database.SystemName(database.Postgres))
	require.Equal(t, "sqlite", database.SystemName(database.SQLite))
}
