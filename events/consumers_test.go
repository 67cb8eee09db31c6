package events_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
	"github.com/herald-dev/herald/events"
)

// recorder is a test consumer's memory: the batches it took, and how often
// it refused one (with the ids of each refused batch).
type recorder struct {
	mu      sync.Mutex
	failing bool
	batches [][]events.Event
	refused [][]int64
}

func (r *recorder) consume(_ context.Context, batch []events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		r.refused = append(r.refused, ids(batch))
		return errors.New("consumer is down")
	}
	r.batches = append(r.batches, batch)
	return nil
}

func (r *recorder) setFailing(f bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failing = f
}

// taken is every event the consumer took, in the order it took them.
func (r *recorder) taken() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []events.Event
	for _, b := range r.batches {
		out = append(out, b...)
	}
	return out
}

// sizes are the sizes of the batches the consumer took.
func (r *recorder) sizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int, len(r.batches))
	for i, b := range r.batches {
		out[i] = len(b)
	}
	return out
}

func (r *recorder) refusals() [][]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]int64(nil), r.refused...)
}

// cursorOf reads a consumer's cursor from herald_consumers.
func cursorOf(t *testing.T, env *apptest.Env, name string) int64 {
	t.Helper()
	var pos []int64
	require.NoError(t, env.App.DB().Read.Raw("SELECT position FROM herald_consumers WHERE name = ?", name).Scan(&pos).Error)
	require.Len(t, pos, 1, "cursor %s", name)
	return pos[0]
}

// TestConsumersAreIndependent runs a relay of its own (the app's is
// stopped) with two consumers, one of them down: the healthy one takes
// every event once, in log order, while the failing one's cursor stays put
// and the events stay undispatched; once the failing one recovers it takes
// everything from its cursor, and the healthy one is sent nothing again.
// A relay with one cursor for all its consumers (or that stops at the
// first failing one) fails this test.
func TestConsumersAreIndependent(t *testing.T) {
	const backlog, live, after, batchSize = 15, 12, 3, 7
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, itemsSchema)
			env.App.Relay().Stop()
			createItems := func(prefix string, n int) {
				for i := range n {
					r := admin(t, env, "POST", "/v1/items", fmt.Sprintf(`{"key":"%s%d","writer":0,"n":%d}`, prefix, i, i))
					require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
				}
			}
			// A backlog written before the consumers exist: new cursors
			// start at the dispatch watermark, which the stopped relay left
			// behind these events.
			createItems("backlog-", backlog)

			healthy, failing := &recorder{}, &recorder{failing: true}
			relay := events.NewRelay(events.RelayConfig{BatchSize: batchSize, PollInterval: 20 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, env.App.DB().Read, env.App.Store(),
				events.NewConsumerFunc("failing", failing.consume), events.NewConsumerFunc("healthy", healthy.consume))
			require.NoError(t, relay.Start(context.Background()))
			t.Cleanup(relay.Stop)

			start := cursorOf(t, env, "failing")
			require.Equal(t, start, cursorOf(t, env, "healthy"), "new cursors start together, at the watermark")
			require.Len(t, eventsAfter(t, env, start).Events, backlog, "the backlog lies after the new cursors")

			// More events while the relay runs.
			createItems("live-", live)
			logged := eventsAfter(t, env, start).Events
			require.Len(t, logged, backlog+live)
			last := logged[len(logged)-1].ID

			// The healthy consumer takes everything despite the failing one.
			waitUntil(t, 30*time.Second, func() bool { return len(healthy.taken()) >= len(logged) },
				"the healthy consumer takes every event while the other fails")
			waitUntil(t, 30*time.Second, func() bool { return len(failing.refusals()) >= 3 },
				"the failing consumer is tried again")
			require.Equal(t, ids(logged), ids(healthy.taken()), "the healthy consumer: each event once, in log order")
			for _, n := range healthy.sizes() {
				require.LessOrEqual(t, n, batchSize)
			}
			// The consumer takes a batch before its cursor's advance commits.
			waitUntil(t, 30*time.Second, func() bool { return cursorOf(t, env, "healthy") == last },
				"the healthy consumer's cursor reaches the last event")
			require.Equal(t, start, cursorOf(t, env, "failing"), "a failing consumer's cursor stays where it was")
			for _, f := range failing.refusals() {
				require.Equal(t, ids(logged[:batchSize]), f, "the failing consumer is offered the batch after its own cursor, again")
			}
			for _, e := range eventsAfter(t, env, start).Events {
				require.Nil(t, e.DispatchedAt, "event %d: not dispatched while a consumer has not taken it", e.ID)
			}
			require.Equal(t, ids(logged), ids(healthy.taken()), "nothing sent again to the healthy consumer while the other fails")

			// The failing consumer recovers: it takes the log from its cursor.
			failing.setFailing(false)
			waitUntil(t, 30*time.Second, func() bool { return len(failing.taken()) >= len(logged) },
				"the recovered consumer catches up")
			waitUntil(t, 30*time.Second, func() bool {
				for _, e := range eventsAfter(t, env, start).Events {
					if e.DispatchedAt == nil {
						return false
					}
				}
				return true
			}, "every event dispatched once both consumers took it")
			require.Equal(t, ids(logged), ids(failing.taken()), "the recovered consumer: each event once, in log order, from its cursor")
			require.Equal(t, ids(logged), ids(healthy.taken()), "the healthy consumer is sent nothing again")
			require.Equal(t, last, cursorOf(t, env, "failing"))

			// New events go to both, once.
			createItems("after-", after)
			all := eventsAfter(t, env, start).Events
			require.Len(t, all, backlog+live+after)
			waitUntil(t, 30*time.Second, func() bool {
				return len(failing.taken()) >= len(all) && len(healthy.taken()) >= len(all) &&
					eventsAfter(t, env, start).Events[len(all)-1].DispatchedAt != nil
			}, "both consumers take the new events")
			relay.Stop() // waits for steps in flight: nothing comes after this
			require.Equal(t, ids(all), ids(healthy.taken()))
			require.Equal(t, ids(all), ids(failing.taken()))
			require.Equal(t, all[len(all)-1].ID, cursorOf(t, env, "healthy"))
			require.Equal(t, all[len(all)-1].ID, cursorOf(t, env, "failing"))
		})
	}
}

// idleRecorder is a recorder that says it is idle while idle is set.
type idleRecorder struct {
	recorder
	idle bool
	asks int
}

func (r *idleRecorder) Name() string { return "idler" }

func (r *idleRecorder) Consume(ctx context.Context, batch []events.Event) (func(*gorm.DB) error, error) {
	return nil, r.consume(ctx, batch)
}

func (r *idleRecorder) Idle(context.Context) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asks++
	return r.idle, nil
}

func (r *idleRecorder) setIdle(v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.idle = v
}

// TestIdleConsumerIsPassedOver: while a consumer says it is idle, the
// relay advances its cursor over the events without handing them over
// (and still marks them dispatched); once it is not, it gets every event
// committed after, in order, and none it was passed over.
func TestIdleConsumerIsPassedOver(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) { testIdleConsumerIsPassedOver(t, kind) })
	}
}

func testIdleConsumerIsPassedOver(t *testing.T, kind database.Kind) {
	env := apptest.Start(t, kind, itemsSchema)
	env.App.Relay().Stop()
	rec := &idleRecorder{idle: true}
	relay := events.NewRelay(events.RelayConfig{PollInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, env.App.DB().Read, env.App.Store(), rec)
	require.NoError(t, relay.Start(context.Background()))
	t.Cleanup(relay.Stop)
	create := func(prefix string, n int) {
		for i := range n {
			r := admin(t, env, "POST", "/v1/items", fmt.Sprintf(`{"key":"%s%d","writer":0,"n":%d}`, prefix, i, i))
			require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		}
	}
	start := cursorOf(t, env, "idler")
	create("idle-", 5)
	passed := eventsAfter(t, env, start).Events
	require.Len(t, passed, 5)
	waitUntil(t, 30*time.Second, func() bool { return cursorOf(t, env, "idler") == passed[4].ID },
		"the idle consumer's cursor passes the events")
	require.Empty(t, rec.taken(), "an idle consumer is handed nothing")
	rec.mu.Lock()
	require.Positive(t, rec.asks)
	rec.mu.Unlock()
	for _, e := range eventsAfter(t, env, start).Events {
		require.NotNil(t, e.DispatchedAt, "event %d is dispatched: the consumer had nothing to do with it", e.ID)
	}

	rec.setIdle(false)
	create("busy-", 4)
	all := eventsAfter(t, env, start).Events
	waitUntil(t, 30*time.Second, func() bool { return len(rec.taken()) >= 4 }, "the busy consumer takes the new events")
	require.Equal(t, ids(all[5:]), ids(rec.taken()), "exactly the events after it stopped being idle, in order")
}

// racyIdler turns busy while it answers its first Idle, and an event is
// committed in that moment (a webhook enabled while the relay asks): that
// event is after the batch the relay asked about, so it must be handed
// over. A relay that acted on an answer given before it read the batch's
// positions would pass it over.
type racyIdler struct {
	idleRecorder
	during func()
	fired  atomic.Bool
}

func (r *racyIdler) Idle(ctx context.Context) (bool, error) {
	if r.fired.CompareAndSwap(false, true) {
		r.during()
		r.setIdle(false)
		return true, nil
	}
	return r.idleRecorder.Idle(ctx)
}

func TestIdleIsAskedAfterThePositions(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			env := apptest.Start(t, kind, itemsSchema)
			env.App.Relay().Stop()
			rec := &racyIdler{}
			rec.idle = true
			client := &http.Client{Timeout: 10 * time.Second}
			rec.during = func() {
				st, _, body, err := send(client, env.Server.URL, "POST", "/v1/items", `{"key":"during","writer":0,"n":1}`, apptest.AdminKey)
				if err != nil || st != http.StatusCreated {
					panic(fmt.Sprint(st, string(body), err))
				}
			}
			relay := events.NewRelay(events.RelayConfig{PollInterval: 20 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, env.App.DB().Read, env.App.Store(), rec)
			rec.fired.Store(true) // not while the relay starts
			require.NoError(t, relay.Start(context.Background()))
			t.Cleanup(relay.Stop)
			start := cursorOf(t, env, "idler")
			rec.fired.Store(false)
			r := admin(t, env, "POST", "/v1/items", `{"key":"before","writer":0,"n":0}`)
			require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
			// The relay may ask its first Idle before "before" commits, so
			// the events are found by key, not by position.
			waitUntil(t, 30*time.Second, func() bool { return len(eventsAfter(t, env, start).Events) == 2 },
				"the relay asked Idle, and the write made while it answered committed")
			all := eventsAfter(t, env, start).Events
			var during int64
			for _, e := range all {
				if e.Data.New["key"] == "during" {
					during = e.ID
				}
			}
			require.NotZero(t, during, "the event of the write made while Idle answered")
			waitUntil(t, 30*time.Second, func() bool { return slices.Contains(ids(rec.taken()), during) },
				"the event committed while Idle answered is handed over")
		})
	}
}
