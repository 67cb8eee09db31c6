package resources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/events"
)

// traceBundle is a started writer on SQLite with the events hook and
// plugin, as app wires them, whose statements are traced into exp.
type traceBundle struct {
	w   *writer
	exp *tracetest.InMemoryExporter
	tp  *sdktrace.TracerProvider
}

func setupTrace(t *testing.T) *traceBundle {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, database.Config{URL: filepath.Join(t.TempDir(), "h.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, database.Migrate(ctx, db.Write, db.Kind, events.Migrations()))
	require.NoError(t, db.Write.Exec(`CREATE TABLE things (id text PRIMARY KEY)`).Error)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	require.NoError(t, database.Trace(db.Write, db.Kind, tp))
	decode := func(table string, raw map[string]any) (map[string]any, bool, error) {
		return raw, table == "things", nil
	}
	require.NoError(t, db.Write.Use(events.NewPlugin(events.SQLite, decode, nil)))
	hook := func(tx *gorm.DB) (*gorm.DB, func() error) {
		run, buf := events.Buffered(tx, events.SQLite)
		return run, func() error { return buf.Flush(run) }
	}
	w := newWriter(db.Write, 64, 1, 10*time.Second, []TxHook{hook}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.start()
	t.Cleanup(w.stop)
	return &traceBundle{w: w, exp: exp, tp: tp}
}

// batch queues the ops behind a write that holds the loop until all of
// them are queued, in order, so that they run as one batch. Each op runs
// under a request span of its own ("request 0", ...) made by start, unless
// start is nil. It returns each op's answer.
func (b *traceBundle) batch(t *testing.T, start startFunc, ops ...func(tx *gorm.DB) error) []error {
	t.Helper()
	release, running := make(chan struct{}), make(chan struct{})
	blocker := make(chan error, 1)
	go func() {
		blocker <- b.w.do(context.Background(), func(*gorm.DB) error {
			close(running)
			<-release
			return nil
		}, false)
	}()
	<-running
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i, fn := range ops {
		ctx := context.Background()
		var span trace.Span
		if start != nil {
			ctx, span = start(ctx, fmt.Sprintf("request %d", i))
		}
		wg.Go(func() {
			errs[i] = b.w.do(ctx, fn, false)
			if span != nil {
				span.End()
			}
		})
		waitFor(t, func() bool { return len(b.w.ops) == i+1 }, "op %d queued", i)
	}
	close(release)
	require.NoError(t, <-blocker)
	wg.Wait()
	return errs
}

// waitFor polls cond until it holds, failing after 10 seconds.
func waitFor(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: "+msg, args...)
		}
		time.Sleep(time.Millisecond)
	}
}

func insertThing(id string) func(tx *gorm.DB) error {
	return func(tx *gorm.DB) error { return tx.Table("things").Create(map[string]any{"id": id}).Error }
}

// spanIndex looks spans up by name and by parent.
type spanIndex struct{ spans []sdktrace.ReadOnlySpan }

func (x spanIndex) named(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range x.spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func (x spanIndex) children(parent sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range x.named(name) {
		if s.Parent().SpanID() == parent.SpanContext().SpanID() {
			out = append(out, s)
		}
	}
	return out
}

func (x spanIndex) child(t *testing.T, parent sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	c := x.children(parent, name)
	require.Len(t, c, 1, "%s under %s", name, parent.Name())
	return c[0]
}

func linked(s sdktrace.ReadOnlySpan) []trace.SpanID {
	var out []trace.SpanID
	for _, l := range s.Links() {
		out = append(out, l.SpanContext.SpanID())
	}
	return out
}

// TestWriteSpansShowTheBatch: three requests whose writes share one
// transaction each see their time in the queue, their own statements and
// their wait for the batch's outcome; one batch span, in the first
// request's trace, links to all three and holds the events flush and the
// COMMIT. The requests give up (their contexts end) while the batch runs:
// the batch's context is not theirs, so it commits all the same.
func TestWriteSpansShowTheBatch(t *testing.T) {
	t.Parallel()
	b := setupTrace(t)
	tracer := b.tp.Tracer("test")
	const n = 3
	var cancels []context.CancelFunc
	ops := make([]func(*gorm.DB) error, n)
	for i := range n {
		ops[i] = insertThing(fmt.Sprint("t", i))
	}
	last := ops[n-1]
	ops[n-1] = func(tx *gorm.DB) error {
		for _, c := range cancels {
			c()
		}
		return last(tx)
	}
	// Each request's context is cancellable; batch builds its span on it.
	cancellable := func(ctx context.Context, name string) (context.Context, trace.Span) {
		ctx, c := context.WithCancel(ctx)
		cancels = append(cancels, c)
		return tracer.Start(ctx, name)
	}
	for _, err := range b.batch(t, cancellable, ops...) {
		require.NoError(t, err)
	}

	x := spanIndex{b.exp.GetSpans().Snapshots()}
	batches := x.named("herald.write.batch")
	require.Len(t, batches, 1, "one transaction, one batch span")
	batch := batches[0]
	require.Contains(t, batch.Attributes(), attribute.Int("herald.write.batch.size", n))
	require.Equal(t, codes.Unset, batch.Status().Code)
	flush := x.child(t, batch, "herald.events.flush")
	require.Contains(t, flush.Attributes(), attribute.Int("herald.events.count", n))
	x.child(t, flush, "INSERT herald_events")
	commit := x.child(t, batch, "COMMIT")
	require.Contains(t, commit.Attributes(), attribute.String("db.system.name", "sqlite"))
	require.False(t, commit.StartTime().Before(flush.EndTime()), "COMMIT follows the flush")

	var writes []trace.SpanID
	for i := range n {
		req := x.named(fmt.Sprintf("request %d", i))
		require.Len(t, req, 1)
		write := x.child(t, req[0], "herald.write")
		writes = append(writes, write.SpanContext().SpanID())
		queue := x.child(t, write, "herald.write.queue")
		op := x.child(t, write, "herald.write.op")
		wait := x.child(t, write, "herald.write.commit")
		x.child(t, op, "INSERT things")
		require.False(t, op.StartTime().Before(queue.EndTime()), "request %d: the op runs after its queue wait", i)
		require.False(t, wait.StartTime().Before(op.EndTime()), "request %d: the commit wait follows the op", i)
		require.False(t, wait.EndTime().Before(commit.EndTime()), "request %d: the wait ends with the COMMIT", i)
		require.Equal(t, []trace.SpanID{batch.SpanContext().SpanID()}, linked(wait), "request %d: its wait names the batch", i)
		require.Contains(t, wait.Attributes(), attribute.Int("herald.write.batch.size", n))
		require.Equal(t, codes.Unset, write.Status().Code)
	}
	require.Equal(t, writes, linked(batch), "the batch links every request's write, in batch order")
	require.Equal(t, writes[0], batch.Parent().SpanID(), "the batch is in the first request's trace")
}

// startFunc starts a request's span.
type startFunc func(ctx context.Context, name string) (context.Context, trace.Span)

func starter(tracer trace.Tracer) startFunc {
	return func(ctx context.Context, name string) (context.Context, trace.Span) { return tracer.Start(ctx, name) }
}

// TestWriteSpansWhenAnOpFails: the failing op's write span carries its
// error; the batch's first attempt is rolled back (its span too) and the
// second commits without it. An op that ran in the first attempt shows
// both attempts; one that had not run yet waited in the queue until the
// second.
func TestWriteSpansWhenAnOpFails(t *testing.T) {
	t.Parallel()
	b := setupTrace(t)
	boom := errors.New("boom")
	errs := b.batch(t, starter(b.tp.Tracer("test")), insertThing("a"), func(*gorm.DB) error { return boom }, insertThing("c"))
	require.NoError(t, errs[0])
	require.ErrorIs(t, errs[1], boom)
	require.NoError(t, errs[2])

	x := spanIndex{b.exp.GetSpans().Snapshots()}
	batches := x.named("herald.write.batch")
	require.Len(t, batches, 2, "two attempts")
	slices.SortFunc(batches, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	require.Equal(t, codes.Error, batches[0].Status().Code)
	require.Contains(t, batches[1].Attributes(), attribute.Int("herald.write.batch.size", 2))
	require.Equal(t, codes.Unset, batches[1].Status().Code)

	write := func(i int) sdktrace.ReadOnlySpan {
		return x.child(t, x.named(fmt.Sprintf("request %d", i))[0], "herald.write")
	}
	failed := write(1)
	require.Equal(t, codes.Error, failed.Status().Code)
	require.Empty(t, x.children(failed, "herald.write.commit"), "a failed op waits for no commit")

	first := write(0)
	ops := x.children(first, "herald.write.op")
	require.Len(t, ops, 2, "the first op ran in both attempts")
	waits := x.children(first, "herald.write.commit")
	require.Len(t, waits, 2)
	slices.SortFunc(waits, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	require.Len(t, waits[0].Events(), 1)
	require.Equal(t, "rolled back", waits[0].Events()[0].Name)
	require.Equal(t, []trace.SpanID{batches[1].SpanContext().SpanID()}, linked(waits[1]))

	third := write(2)
	require.Len(t, x.children(third, "herald.write.op"), 1, "the third op ran only in the second attempt")
	queue := x.child(t, third, "herald.write.queue")
	require.False(t, queue.EndTime().Before(batches[1].StartTime()), "it waited until the second attempt")
}

// TestWriteNotTracedWhenNotRecording: requests whose spans are not
// recording (not sampled) make no write spans at all, and write as usual.
func TestWriteNotTracedWhenNotRecording(t *testing.T) {
	t.Parallel()
	b := setupTrace(t)
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())).Tracer("test")
	for _, err := range b.batch(t, starter(never), insertThing("a"), insertThing("b")) {
		require.NoError(t, err)
	}
	for _, err := range b.batch(t, nil, insertThing("c")) {
		require.NoError(t, err)
	}
	require.Empty(t, b.exp.GetSpans())
}
