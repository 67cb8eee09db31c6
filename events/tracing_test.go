package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
	"github.com/herald-dev/herald/events"
)

// TestFlushSpans: flushing a transaction's events under a recording span
// shows as herald.events.flush with the INSERT under it, and on PostgreSQL
// the wait for the position lock as a span of its own, as long as the
// lock was held elsewhere. Under a span that is not recording there are
// none, and the events are written all the same.
func TestFlushSpans(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := database.Open(ctx, database.Config{URL: dbtest.URL(t, kind)})
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			require.NoError(t, database.Migrate(ctx, db.Write, kind, events.Migrations()))
			require.NoError(t, db.Write.Exec(`CREATE TABLE things (id text PRIMARY KEY, name text)`).Error)
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			require.NoError(t, database.Trace(db.Write, kind, tp))
			dialect := events.SQLite
			if kind == database.Postgres {
				dialect = events.Postgres
			}
			decode := func(table string, raw map[string]any) (map[string]any, bool, error) {
				return raw, table == "things", nil
			}
			require.NoError(t, db.Write.Use(events.NewPlugin(dialect, decode, nil)))

			write := func(ctx context.Context, id string) {
				tx := db.Write.WithContext(ctx).Begin()
				require.NoError(t, tx.Error)
				run, buf := events.Buffered(tx, dialect)
				require.NoError(t, run.Table("things").Create(map[string]any{"id": id, "name": "x"}).Error)
				require.NoError(t, buf.Flush(run))
				require.NoError(t, tx.Commit().Error)
			}

			// Not recording: no spans, the event is written.
			quiet, span := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())).
				Tracer("test").Start(ctx, "batch")
			write(quiet, "a")
			span.End()
			require.Empty(t, exp.GetSpans())
			var n int64
			require.NoError(t, db.Write.Raw(`SELECT count(*) FROM herald_events`).Scan(&n).Error)
			require.EqualValues(t, 1, n)

			// Recording, with the position lock held elsewhere for a while
			// on PostgreSQL.
			const hold = 300 * time.Millisecond
			if kind == database.Postgres {
				other := db.Write.Begin()
				require.NoError(t, other.Error)
				require.NoError(t, other.Exec(`SELECT pg_advisory_xact_lock(?)`, 0x68706f73).Error)
				time.AfterFunc(hold, func() { other.Commit() })
			}
			traced, batch := tp.Tracer("test").Start(ctx, "batch")
			write(traced, "b")
			batch.End()

			byName := map[string]sdktrace.ReadOnlySpan{}
			for _, s := range exp.GetSpans().Snapshots() {
				byName[s.Name()] = s
			}
			flush := byName["herald.events.flush"]
			require.NotNil(t, flush, "spans: %v", keys(byName))
			require.Equal(t, batch.SpanContext().SpanID(), flush.Parent().SpanID())
			require.Contains(t, flush.Attributes(), attribute.Int("herald.events.count", 1))
			insert := byName["INSERT herald_events"]
			require.NotNil(t, insert, "spans: %v", keys(byName))
			require.Equal(t, flush.SpanContext().SpanID(), insert.Parent().SpanID())
			require.NotNil(t, byName["INSERT things"], "the row's own INSERT is the batch's child")
			require.Equal(t, batch.SpanContext().SpanID(), byName["INSERT things"].Parent().SpanID())

			lock, locked := byName["herald.events.position_lock"]
			if kind == database.SQLite {
				require.False(t, locked, "SQLite has no position lock")
				return
			}
			require.True(t, locked, "spans: %v", keys(byName))
			require.Equal(t, flush.SpanContext().SpanID(), lock.Parent().SpanID())
			waited := lock.EndTime().Sub(lock.StartTime())
			require.Greater(t, waited, hold/2, "the span shows the wait for the lock held elsewhere")
			require.LessOrEqual(t, waited, insert.EndTime().Sub(lock.StartTime()), "the wait is part of the statement")
			require.NoError(t, db.Write.Raw(`SELECT count(*) FROM herald_events`).Scan(&n).Error)
			require.EqualValues(t, 2, n)
		})
	}
}

func keys(m map[string]sdktrace.ReadOnlySpan) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
