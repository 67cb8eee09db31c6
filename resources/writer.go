package resources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/herald-dev/herald/database"
)

// ErrStopped is returned for writes submitted after Stop.
var ErrStopped = errors.New("resources: store is stopped")

// writeOp is one request's unit of work: it runs inside a transaction shared
// with other requests' ops (group commit) and must leave nothing behind in
// Go state that a re-run would not overwrite, because a batch that meets a
// failure is rolled back and re-run without the failing op.
type writeOp struct {
	ctx  context.Context
	fn   func(tx *gorm.DB) error
	done chan error
	// alone ops get a transaction of their own (background jobs whose
	// reads must not see, or be seen by, other ops' uncommitted rows).
	alone bool
	// state is opQueued until a loop takes the op (opRunning) or its
	// request gives up waiting first (opAbandoned: it never runs).
	state atomic.Int32
	// trace holds the op's spans; nil when the request's span is not
	// recording (then the op costs no tracing at all).
	trace *opTrace
}

const (
	opQueued int32 = iota
	opRunning
	opAbandoned
)

// claim marks op as the loop's to run; false when its request gave up.
func (op *writeOp) claim() bool {
	return op.state.CompareAndSwap(opQueued, opRunning) || op.state.Load() == opRunning
}

// writer is the group-commit write path. Concurrent writes queue up while
// the previous transaction commits, and the next transaction runs all of
// them and commits once: more than one write per fsync is what lets Herald
// outrun one-transaction-per-request stores. Each op's failure is isolated:
// when op k fails, the batch is rolled back, op k gets its error (the
// outcome it would have had running alone after ops 0..k-1), and the batch
// runs again without it. Writes are therefore serialisable in batch order.
type writer struct {
	db       *gorm.DB
	maxBatch int
	loops    int
	timeout  time.Duration
	hooks    []TxHook
	onCommit func()
	log      *slog.Logger

	ops      chan *writeOp
	tracers  tracerCache
	dbSystem string // db.system.name of the COMMIT spans
	mu       sync.RWMutex
	stopping chan struct{}
	wg       sync.WaitGroup
	started  bool
}

// TxHook wraps every write transaction: it may return a derived handle
// for the ops to run on, and a function to run before COMMIT (the events
// package buffers events on the handle and flushes them there). Hooks
// compose: each wraps the handle the previous one returned, and their
// beforeCommit functions run in reverse order, so the first hook's (the
// event flush, which must come last) runs last.
type TxHook func(tx *gorm.DB) (wrapped *gorm.DB, beforeCommit func() error)

func newWriter(db *gorm.DB, maxBatch, loops int, timeout time.Duration, hooks []TxHook, onCommit func(), log *slog.Logger) *writer {
	return &writer{db: db, maxBatch: maxBatch, loops: loops, timeout: timeout, hooks: hooks, onCommit: onCommit, log: log,
		ops: make(chan *writeOp, 4*maxBatch), dbSystem: database.SystemName(database.Kind(db.Dialector.Name()))}
}

// start launches the loop; safe to call twice.
func (w *writer) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return
	}
	w.started = true
	w.stopping = make(chan struct{})
	for range w.loops {
		w.wg.Add(1)
		go w.loop(w.stopping)
	}
}

// stop finishes queued ops and waits for the loop; safe to call twice.
func (w *writer) stop() {
	w.mu.Lock()
	if !w.started {
		w.mu.Unlock()
		return
	}
	w.started = false
	close(w.stopping)
	w.mu.Unlock()
	w.wg.Wait()
}

// do runs fn in the next batch and waits for its outcome. The op's GORM
// handle carries ctx's values (the request's principal and trace) but not
// its cancellation: a client that hangs up must not abort other requests'
// shared transaction. Its deadline does bound the op's statements (an op
// past it fails alone, and the batch goes on without it). A request whose
// context ends while its op still waits in the queue gets ctx's error at
// once, and the op never runs; once running, do waits for its outcome.
//
// When ctx's span is recording, the op is traced (see opTrace): ctx then
// carries the op's herald.write span down to its statements.
func (w *writer) do(ctx context.Context, fn func(tx *gorm.DB) error, alone bool) error {
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan error, 1), alone: alone}
	if parent := trace.SpanFromContext(ctx); parent.IsRecording() {
		op.ctx, op.trace = startOpTrace(ctx, w.tracers.get(parent.TracerProvider()), alone)
	}
	err := w.submit(ctx, op)
	// Whatever the outcome, the loop is done with the op's spans: it
	// answered (done happens after its last use), never took the op, or
	// the op was never queued.
	op.trace.finish(err)
	return err
}

// submit queues op and waits for its outcome (do's body).
func (w *writer) submit(ctx context.Context, op *writeOp) error {
	// The read lock spans the check and the send, so stop (which takes the
	// write lock) cannot slip between them and leave the op unserved: an
	// op sent before stop is drained by the loops.
	w.mu.RLock()
	if !w.started {
		w.mu.RUnlock()
		return ErrStopped
	}
	select {
	case w.ops <- op:
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	w.mu.RUnlock()
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		if op.state.CompareAndSwap(opQueued, opAbandoned) {
			return ctx.Err()
		}
		return <-op.done
	}
}

func (w *writer) loop(stopping chan struct{}) {
	defer w.wg.Done()
	var carry *writeOp // an alone op met while filling a batch
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-w.ops:
			case <-stopping:
				// Drain what was queued before the stop.
				for {
					select {
					case op := <-w.ops:
						w.run([]*writeOp{op})
					default:
						return
					}
				}
			}
		}
		batch := []*writeOp{first}
	fill:
		for len(batch) < w.maxBatch && !first.alone {
			select {
			case op := <-w.ops:
				if op.alone {
					carry = op
					break fill
				}
				batch = append(batch, op)
			default:
				break fill
			}
		}
		w.run(batch)
	}
}

// run executes a batch, isolating failures as described on writer.
func (w *writer) run(batch []*writeOp) {
	live := batch[:0]
	for _, op := range batch {
		if !op.claim() {
			continue // its request gave up waiting
		}
		live = append(live, op)
	}
	for len(live) > 0 {
		// Before every attempt: an op whose request is past its deadline
		// is answered now (the previous attempt, if any, rolled back).
		kept := live[:0]
		for _, op := range live {
			if err := op.ctx.Err(); err != nil {
				op.done <- err
				continue
			}
			kept = append(kept, op)
		}
		if live = kept; len(live) == 0 {
			return
		}
		failed, err := w.try(live)
		var ce *commitError
		switch {
		case err == nil:
			for _, op := range live {
				op.done <- nil
			}
			if w.onCommit != nil {
				w.onCommit()
			}
			return
		case transient(err):
			// Not any op's fault: the batch met another transaction's
			// locks in the opposite order (a deadlock). Each op alone
			// holds the fewest locks; retry it that way.
			for _, op := range live {
				w.runAlone(op)
			}
			return
		case failed >= 0:
			live[failed].done <- err
			live = slices.Delete(live, failed, failed+1)
		case errors.As(err, &ce):
			// The connection failed during COMMIT: the database may have
			// committed, so re-running could answer 409 for writes that
			// landed. Say so instead.
			for _, op := range live {
				op.done <- fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
			}
			return
		case len(live) == 1:
			live[0].done <- err
			return
		default:
			// The event flush or the commit failed for the batch: run each
			// op alone so that one bad op cannot fail the others.
			for _, op := range live {
				w.run([]*writeOp{op})
			}
			return
		}
	}
}

// maxAttempts bounds the retries of an op that keeps meeting deadlocks.
const maxAttempts = 6

// runAlone runs one op in its own transaction, retrying transient
// failures after a short random pause.
func (w *writer) runAlone(op *writeOp) {
	for attempt := 1; ; attempt++ {
		if err := op.ctx.Err(); err != nil {
			op.done <- err
			return
		}
		_, err := w.try([]*writeOp{op})
		if err == nil {
			op.done <- nil
			if w.onCommit != nil {
				w.onCommit()
			}
			return
		}
		if !transient(err) || attempt == maxAttempts {
			var ce *commitError
			switch {
			case errors.As(err, &ce):
				err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
			case transient(err):
				err = fmt.Errorf("%w: %w", ErrBusy, err)
			}
			op.done <- err
			return
		}
		time.Sleep(time.Duration(attempt) * time.Duration(1+rand.IntN(5)) * time.Millisecond)
	}
}

// ErrOutcomeUnknown means the commit failed in a way that does not say
// whether the write landed (a lost connection); the client should check
// before retrying (503).
var ErrOutcomeUnknown = errors.New("resources: the write may or may not have been saved")

// commitError is a failed COMMIT.
type commitError struct{ err error }

// Error implements error.
func (e *commitError) Error() string { return "resources: commit: " + e.err.Error() }

// Unwrap returns the driver's error.
func (e *commitError) Unwrap() error { return e.err }

// ErrBusy means a write kept meeting other transactions' locks; the client
// may retry (503).
var ErrBusy = errors.New("resources: the database is busy; retry")

// transient tells whether err is a PostgreSQL deadlock or serialisation
// failure: the transaction can simply run again.
func transient(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// try runs the ops in one transaction under the writer's timeout. It
// returns the index of the op that failed and its error, or -1 and the
// error of the flush or commit (a *commitError when the connection failed
// during COMMIT, so the outcome is unknown).
//
// When an op is traced, the attempt is the herald.write.batch span (see
// opTrace), and the transaction's context carries it: the statements of the
// hooks' beforeCommit functions (the events flush) and the COMMIT are its
// children.
func (w *writer) try(ops []*writeOp) (failed int, err error) {
	bctx, batch := w.startBatch(ops)
	ctx, cancel := context.WithTimeout(bctx, w.timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var tx *gorm.DB
	failed = -1
	ran := 0 // ops[:ran] have run in this attempt, without error
	defer func() {
		if p := recover(); p != nil {
			if tx != nil {
				tx.Rollback()
			}
			w.log.Error("resources: write panicked", "panic", p)
			err = fmt.Errorf("resources: write panicked: %v", p)
		}
		if err != nil {
			// ops[ran] failed, or panicked with its op span open.
			for _, op := range ops[:min(ran+1, len(ops))] {
				op.trace.rolledBack(err)
			}
		}
		endSpan(batch, err)
	}()
	tx = w.db.WithContext(ctx).Begin()
	if tx.Error != nil {
		return -1, fmt.Errorf("resources: begin: %w", tx.Error)
	}
	run := tx
	befores := make([]func() error, len(w.hooks))
	for i, h := range w.hooks {
		run, befores[i] = h(run)
	}
	for i, op := range ops {
		failed = i
		// The op's statements carry its request's values (principal,
		// trace) and the batch's deadline, not the request's cancellation.
		opDeadline := deadline
		if d, ok := op.ctx.Deadline(); ok && d.Before(opDeadline) {
			opDeadline = d
		}
		opCtx, opCancel := context.WithDeadline(context.WithoutCancel(op.ctx), opDeadline)
		opCtx = op.trace.startOp(opCtx)
		err := op.fn(run.WithContext(opCtx))
		opCancel()
		if err != nil {
			op.trace.endOp(err, batch, 0)
			tx.Rollback()
			return i, err
		}
		op.trace.endOp(nil, batch, len(ops))
		ran = i + 1
	}
	failed = -1
	for i := len(befores) - 1; i >= 0; i-- {
		if err := befores[i](); err != nil {
			tx.Rollback()
			return -1, fmt.Errorf("resources: before commit: %w", err)
		}
	}
	commit := w.startCommit(ctx, batch)
	err = tx.Commit().Error
	endSpan(commit, err)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			// The server answered: it certainly rolled back.
			return -1, fmt.Errorf("resources: commit: %w", err)
		}
		return -1, &commitError{err}
	}
	return -1, nil
}

// opTrace is the spans of one traced op: its request's span was recording
// when it called do. A write then shows in the request's trace as
//
//	herald.write              do: from the call to the answer
//	  herald.write.queue      until the op's statements start: the queue,
//	                          and the ops that run before it in its batch
//	  herald.write.op         the op's own statements (one per attempt)
//	    INSERT products
//	  herald.write.commit     from them to the batch's outcome: the ops after
//	                          it, the events flush, the position lock and
//	                          COMMIT; linked to the batch span, with the
//	                          batch's size
//
// and each attempt of a batch that holds a traced op is one span, in the
// trace of its first traced op, linked to every traced op's herald.write:
//
//	herald.write.batch
//	  herald.events.flush
//	    herald.events.position_lock   (PostgreSQL)
//	    INSERT herald_events
//	  COMMIT
//
// do's goroutine uses the fields until the op is queued and once it has
// its answer; the loop that runs the op uses them in between. All methods
// accept a nil *opTrace (an op that is not traced) and then do nothing.
type opTrace struct {
	tracer trace.Tracer
	ctx    context.Context // carries span
	span   trace.Span      // herald.write
	queue  trace.Span      // herald.write.queue, open until the op first runs
	op     trace.Span      // herald.write.op of the running attempt
	commit trace.Span      // herald.write.commit of the running attempt
	tries  int
}

const writeTracer = "github.com/herald-dev/herald/resources"

// startOpTrace starts the op's herald.write span, a child of ctx's, and
// its queue span.
func startOpTrace(ctx context.Context, tracer trace.Tracer, alone bool) (context.Context, *opTrace) {
	t := &opTrace{tracer: tracer}
	var opts []trace.SpanStartOption
	if alone {
		opts = append(opts, trace.WithAttributes(attribute.Bool("herald.write.alone", true)))
	}
	t.ctx, t.span = tracer.Start(ctx, "herald.write", opts...)
	_, t.queue = tracer.Start(t.ctx, "herald.write.queue")
	return t.ctx, t
}

// startOp ends the queue span and starts the attempt's op span; ctx (the
// op's statement context) gets it as parent.
func (t *opTrace) startOp(ctx context.Context) context.Context {
	if t == nil {
		return ctx
	}
	if t.queue != nil {
		t.queue.End()
		t.queue = nil
	}
	t.tries++
	ctx, t.op = t.tracer.Start(ctx, "herald.write.op", trace.WithAttributes(attribute.Int("herald.write.attempt", t.tries)))
	return ctx
}

// endOp ends the op span; when the op succeeded, its wait for the
// batch's outcome begins (the commit span, linked to batch).
func (t *opTrace) endOp(err error, batch trace.Span, size int) {
	if t == nil {
		return
	}
	endSpan(t.op, err)
	t.op = nil
	if err != nil {
		return
	}
	opts := []trace.SpanStartOption{trace.WithAttributes(attribute.Int("herald.write.batch.size", size))}
	if batch != nil {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: batch.SpanContext()}))
	}
	_, t.commit = t.tracer.Start(t.ctx, "herald.write.commit", opts...)
}

// rolledBack ends the spans of an attempt that failed after the op ran
// (another op failed, or the flush or the commit did): the batch runs
// again, or the op alone, or the op is answered.
func (t *opTrace) rolledBack(err error) {
	if t == nil {
		return
	}
	if t.op != nil { // the op panicked
		endSpan(t.op, err)
		t.op = nil
	}
	if t.commit != nil {
		t.commit.AddEvent("rolled back", trace.WithAttributes(attribute.String("error", err.Error())))
		t.commit.End()
		t.commit = nil
	}
}

// finish ends the spans still open once the op is answered err.
func (t *opTrace) finish(err error) {
	if t == nil {
		return
	}
	for _, s := range []trace.Span{t.queue, t.op, t.commit} {
		if s != nil {
			s.End()
		}
	}
	endSpan(t.span, err)
}

// startBatch starts the span of one attempt at ops, when any is traced,
// and returns the context for its transaction. The span's parent is the
// first traced op's herald.write, but the context carries nothing else of
// that request: its cancellation must not end the others' transaction,
// nor its session variables reach their events.
func (w *writer) startBatch(ops []*writeOp) (context.Context, trace.Span) {
	var first *opTrace
	n := 0
	for _, op := range ops {
		if op.trace != nil {
			if first == nil {
				first = op.trace
			}
			n++
		}
	}
	if first == nil {
		return context.Background(), nil
	}
	links := make([]trace.Link, 0, n)
	for _, op := range ops {
		if op.trace != nil {
			links = append(links, trace.Link{SpanContext: op.trace.span.SpanContext()})
		}
	}
	return first.tracer.Start(trace.ContextWithSpan(context.Background(), first.span), "herald.write.batch",
		trace.WithLinks(links...), trace.WithAttributes(attribute.Int("herald.write.batch.size", len(ops))))
}

// startCommit starts the COMMIT span of a traced batch (GORM runs no
// callbacks for it, so the database package does not see it).
func (w *writer) startCommit(ctx context.Context, batch trace.Span) trace.Span {
	if batch == nil {
		return nil
	}
	_, span := w.tracers.get(batch.TracerProvider()).Start(ctx, "COMMIT", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", w.dbSystem), attribute.String("db.operation.name", "COMMIT")))
	return span
}

// endSpan ends span, recording err when there is one; span may be nil.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "write failed")
	}
	span.End()
}

// tracerCache holds the tracer of the provider seen last. The store is not
// configured with a provider: an op's comes with its request's span. Asking
// a provider for a tracer takes a lock, too much for every write.
type tracerCache struct{ last atomic.Pointer[tracerEntry] }

type tracerEntry struct {
	tp     trace.TracerProvider
	tracer trace.Tracer
}

func (c *tracerCache) get(tp trace.TracerProvider) trace.Tracer {
	// Only comparable providers are kept, so == below cannot panic: a
	// provider of another type compares unequal without looking further.
	if e := c.last.Load(); e != nil && e.tp == tp {
		return e.tracer
	}
	t := tp.Tracer(writeTracer)
	if reflect.TypeOf(tp).Comparable() {
		c.last.Store(&tracerEntry{tp, t})
	}
	return t
}
