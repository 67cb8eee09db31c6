package events_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
	"github.com/herald-dev/herald/events"
)

const itemsSchema = `
resources:
  - name: items
    fields:
      - {name: key, type: string, required: true, unique: true}
      - {name: writer, type: integer, required: true}
      - {name: n, type: integer, required: true}
`

// outcome is what one writer was told.
type outcome struct {
	created []string       // ids of the 201 answers
	updated map[string]int // id -> effective PATCHes answered 200
}

// TestConcurrentWritersAndTailingReader has many writers commit events
// while a reader tails the log with after=N. Positions must grow in commit
// order: a later-committed event with a smaller id would be skipped by the
// tail and show up missing at the end.
func TestConcurrentWritersAndTailingReader(t *testing.T) {
	const writers, creates = 16, 40
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, itemsSchema)
			// On PostgreSQL a second instance writes to the same database,
			// so write transactions really overlap and positions are only
			// in commit order thanks to the position lock. (One instance
			// commits one group at a time.)
			bases := []string{env.Server.URL}
			if kind == database.Postgres {
				bases = append(bases, apptest.StartConfig(t, kind, env.Config).Server.URL)
			}
			start := lastEventID(t, env)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * writers}, Timeout: time.Minute}
			defer client.CloseIdleConnections()

			outcomes := make([]outcome, writers)
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() { outcomes[w] = write(t, client, bases[w%len(bases)], w, creates) })
			}
			defer wg.Wait() // if the reader fails, the writers still end before the test
			writersDone := make(chan struct{})
			go func() { wg.Wait(); close(writersDone) }()

			// Tail the log in this goroutine. Once the writers are done,
			// everything they were answered for is committed, so reading on
			// to an empty page must find all of it.
			var tail []events.Event
			seen := map[string]int64{}
			after, done := start, false
			deadline := time.After(3 * time.Minute)
			poll := time.NewTicker(5 * time.Millisecond)
			defer poll.Stop()
			for {
				p := auditPage(t, env, url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {"200"}})
				for _, e := range p.Events {
					require.Greater(t, e.ID, after, "ids must increase along the tail")
					if prev, dup := seen[e.EventID]; dup {
						t.Fatalf("event %s read twice, at ids %d and %d", e.EventID, prev, e.ID)
					}
					seen[e.EventID] = e.ID
					tail = append(tail, e)
					after = e.ID
				}
				if len(p.Events) > 0 {
					continue
				}
				if done {
					break
				}
				select {
				case <-writersDone:
					done = true
				case <-poll.C:
				case <-deadline:
					t.Fatalf("writers still busy after 3 minutes; the tail read %d events", len(tail))
				}
			}
			expected := countUpdates(outcomes)
			for _, o := range outcomes {
				expected += len(o.created)
			}
			require.Equal(t, writers*creates, expected-countUpdates(outcomes), "every create succeeded")

			// Reading the whole log again finds exactly what the tail saw: no
			// event committed with a position the tail had already passed.
			full := eventsAfter(t, env, start)
			if len(full.Events) != len(tail) {
				var missed []int64
				for _, e := range full.Events {
					if _, ok := seen[e.EventID]; !ok {
						missed = append(missed, e.ID)
					}
				}
				t.Fatalf("the log holds %d events, the tail read %d: events committed behind the tail's position, ids %v",
					len(full.Events), len(tail), missed)
			}
			require.Len(t, tail, expected, "events recorded vs writes answered 2xx")
			for i, e := range full.Events {
				require.Equal(t, tail[i].ID, e.ID)
				require.Equal(t, tail[i].EventID, e.EventID)
				checkEnvelope(t, full.Raw[i], e)
			}

			// Each row's events match what its writer was told, in order.
			byRow := map[string][]events.Event{}
			for _, e := range tail {
				byRow[e.ResourceID] = append(byRow[e.ResourceID], e)
			}
			rows := 0
			for _, o := range outcomes {
				for _, id := range o.created {
					rows++
					evs := byRow[id]
					require.NotEmpty(t, evs, "no event for created row %s", id)
					require.Equal(t, "items.created", evs[0].EventType, "row %s", id)
					require.Len(t, evs, 1+o.updated[id], "row %s: %v", id, types(evs))
					for _, e := range evs[1:] {
						require.Equal(t, "items.updated", e.EventType)
						require.Equal(t, []string{"n", "updated_at"}, e.Data.Changes.Updated)
						require.Equal(t, evs[0].Data.New["n"].(float64)+1000, e.Data.New["n"], "row %s", id)
					}
				}
			}
			require.Len(t, byRow, rows, "events for rows nobody was told were created")
		})
	}
}

func countUpdates(outcomes []outcome) int {
	n := 0
	for _, o := range outcomes {
		for _, k := range o.updated {
			n += k
		}
	}
	return n
}

// write is one writer: creates, with a PATCH of every fifth record, a
// PATCH that changes nothing after it, and a create that breaks the unique
// key every tenth. It reports with t.Errorf, which is safe from a
// goroutine, and stops at the first surprise.
func write(t *testing.T, client *http.Client, base string, w, creates int) outcome {
	o := outcome{updated: map[string]int{}}
	req := func(method, path, body string, want int) (map[string]any, bool) {
		status, _, raw, err := send(client, base, method, path, body, apptest.AdminKey)
		if err != nil || status != want {
			t.Errorf("writer %d: %s %s: status %d (want %d), err %v, body %s", w, method, path, status, want, err, raw)
			return nil, false
		}
		return (&apptest.Response{Body: raw}).JSON(), true
	}
	for i := range creates {
		rec, ok := req("POST", "/v1/items", fmt.Sprintf(`{"key":"w%d-%d","writer":%d,"n":%d}`, w, i, w, i), http.StatusCreated)
		if !ok {
			return o
		}
		id := rec["id"].(string)
		o.created = append(o.created, id)
		if i%5 == 0 {
			patch := fmt.Sprintf(`{"n":%d}`, i+1000)
			if _, ok := req("PATCH", "/v1/items/"+id, patch, http.StatusOK); !ok {
				return o
			}
			o.updated[id]++
			if _, ok := req("PATCH", "/v1/items/"+id, patch, http.StatusOK); !ok {
				return o
			}
		}
		if i%10 == 9 {
			if _, ok := req("POST", "/v1/items", fmt.Sprintf(`{"key":"w%d-0","writer":%d,"n":0}`, w, w), http.StatusConflict); !ok {
				return o
			}
		}
	}
	return o
}

// TestRelayDeliversInOrderAtLeastOnce runs a relay of its own (the app's is
// stopped, so nothing competes) with a consumer that fails its first
// calls: events stay undispatched until a batch is consumed, a failed
// batch comes again, and consumers see every event in log order.
func TestRelayDeliversInOrderAtLeastOnce(t *testing.T) {
	const items, batchSize, failures = 30, 7, 3
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, itemsSchema)
			env.App.Relay().Stop()
			start := lastEventID(t, env)
			for i := range items {
				resp := admin(t, env, "POST", "/v1/items", fmt.Sprintf(`{"key":"k%d","writer":0,"n":%d}`, i, i))
				require.Equal(t, http.StatusCreated, resp.Status, "%s", resp.Body)
			}
			logged := eventsAfter(t, env, start).Events
			require.Len(t, logged, items)
			for _, e := range logged {
				require.Nil(t, e.DispatchedAt, "nothing dispatches while the relay is stopped")
			}

			var (
				mu      sync.Mutex
				calls   int
				failed  [][]int64
				batches [][]events.Event
			)
			consumer := events.NewConsumerFunc("test", func(ctx context.Context, batch []events.Event) error {
				mu.Lock()
				defer mu.Unlock()
				calls++
				if calls <= failures {
					failed = append(failed, ids(batch))
					return errors.New("consumer is down")
				}
				batches = append(batches, batch)
				return nil
			})
			relay := events.NewRelay(events.RelayConfig{BatchSize: batchSize, PollInterval: 20 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, env.App.DB().Read, env.App.Store(), consumer)
			require.NoError(t, relay.Start(context.Background()))
			require.NoError(t, relay.Start(context.Background())) // safe twice
			t.Cleanup(relay.Stop)

			waitUntil(t, 30*time.Second, func() bool {
				for _, e := range eventsAfter(t, env, start).Events {
					if e.DispatchedAt == nil {
						return false
					}
				}
				return true
			}, "every event dispatched by the test's relay")
			relay.Stop()
			relay.Stop() // safe twice

			mu.Lock()
			defer mu.Unlock()
			require.Len(t, failed, failures)
			for _, f := range failed {
				require.Equal(t, ids(logged[:batchSize]), f, "a failed batch comes again, from the oldest undispatched event")
			}
			var delivered []events.Event
			for _, b := range batches {
				require.LessOrEqual(t, len(b), batchSize)
				delivered = append(delivered, b...)
			}
			require.Equal(t, ids(logged), ids(delivered), "each event once after the failures, in log order")
			dispatched := eventsAfter(t, env, start).Events
			for i, e := range delivered {
				require.Equal(t, logged[i].EventID, e.EventID)
				require.Equal(t, logged[i].Data, e.Data)
				require.NotNil(t, e.DispatchedAt)
				require.True(t, e.DispatchedAt.Equal(*dispatched[i].DispatchedAt), "consumers see the dispatchedAt the log records")
			}
		})
	}
}

// TestPerRowEventsFollowCommitOrder has many writers, through two
// instances on PostgreSQL, PATCH a few hot rows at once. Read in position
// order, each row's events must chain: every update's old value is the
// previous event's new value. Positions that are not in commit order (for
// example taken from transaction ids, when the transaction with the smaller
// id waits for a row lock held by a later one that commits first) break the
// chain, and a consumer applying the events would end with a stale row.
func TestPerRowEventsFollowCommitOrder(t *testing.T) {
	const rows, writers, patches = 4, 16, 30
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, itemsSchema)
			bases := []string{env.Server.URL}
			if kind == database.Postgres {
				bases = append(bases, apptest.StartConfig(t, kind, env.Config).Server.URL)
			}
			ids := make([]string, rows)
			for i := range ids {
				r := admin(t, env, "POST", "/v1/items", map[string]any{"key": fmt.Sprintf("hot-%d", i), "writer": 0, "n": 0})
				require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
				ids[i] = r.JSON()["id"].(string)
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * writers}, Timeout: time.Minute}
			defer client.CloseIdleConnections()
			var next sync.Mutex
			counter := 0
			answered := make([]int, writers)
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for j := range patches {
						next.Lock()
						counter++
						n := counter
						next.Unlock()
						status, _, body, err := send(client, bases[(w+j)%len(bases)], "PATCH", "/v1/items/"+ids[(w+j)%rows],
							map[string]any{"n": n, "writer": w}, apptest.AdminKey)
						if err != nil || status != http.StatusOK {
							t.Errorf("PATCH: %d %v %s", status, err, body)
							return
						}
						answered[w]++
					}
				})
			}
			wg.Wait()
			total := 0
			for _, a := range answered {
				total += a
			}
			all := eventsAfter(t, env, 0)
			last := map[string]any{} // row id -> n of its newest event so far
			updates := 0
			for _, e := range all.Events {
				switch e.EventType {
				case "items.created":
					last[e.ResourceID] = e.Data.New["n"]
				case "items.updated":
					updates++
					require.Equal(t, last[e.ResourceID], e.Data.Old["n"],
						"event %d of row %s does not follow the row's previous event: positions are not in commit order", e.ID, e.ResourceID)
					last[e.ResourceID] = e.Data.New["n"]
				}
			}
			require.Equal(t, total, updates, "one updated event per answered PATCH")
			for _, id := range ids {
				r := admin(t, env, "GET", "/v1/items/"+id, nil)
				require.Equal(t, last[id], r.JSON()["n"], "the last event of row %s is its current value", id)
			}
		})
	}
}
