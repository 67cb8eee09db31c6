package webhooks_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
)

// sentBy reads, from an instance's /metrics, how many delivery attempts
// its queue made that succeeded. Each instance has its own registry, so
// this tells which instance sent what, which the receiver cannot.
func sentBy(t *testing.T, env *apptest.Env) int {
	t.Helper()
	r := env.Do("GET", "/metrics", nil, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	const prefix = `herald_webhook_deliveries_total{outcome="succeeded"} `
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, "%q", sc.Text())
			return int(f)
		}
	}
	require.NoError(t, sc.Err())
	return 0 // no attempt yet: the counter has no series
}

// TestTwoInstancesNoDuplicates runs two Herald instances on one PostgreSQL
// database, both with their relay and delivery queue, and creates records
// through both at once. Every event is delivered exactly once: the
// instances' claims never overlap. Each instance's own metrics show that
// both sent. An ordered webhook's deliveries are never taken at insertion,
// only by claims, so there both instances' claim queries race for the same
// rows (this case fails without SKIP LOCKED). In the last case instance
// A's queue stops halfway and B delivers the rest, including what A had
// claimed or in flight.
func TestTwoInstancesNoDuplicates(t *testing.T) {
	const items, writers = 300, 8
	cases := []struct {
		name    string
		delay   time.Duration // per request at the receiver
		ordered bool          // deliveries are only ever taken by claims, never at insertion
		stopA   bool
	}{
		{name: "fast receiver"},
		{name: "slow receiver", delay: 20 * time.Millisecond},
		{name: "ordered, slow receiver", delay: 20 * time.Millisecond, ordered: true},
		{name: "slow receiver, A stops halfway", delay: 20 * time.Millisecond, stopA: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := start(t, database.Postgres)
			b := apptest.StartConfig(t, database.Postgres, a.Config)
			rcv := newReceiver(t, func(int, received) answer { return answer{status: http.StatusOK, delay: tc.delay} })
			h := register(t, a, map[string]any{"name": "two-instances", "url": rcv.URL, "resource": "items", "ordered": tc.ordered,
				"retry": map[string]any{"maxAttempts": 4, "initialInterval": "50ms", "maxInterval": "200ms", "timeout": "10s"}})
			hookID := h["id"].(string)

			// Writers create through both instances' HTTP servers at once.
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: writers}, Timeout: time.Minute}
			defer client.CloseIdleConnections()
			bases := []string{a.Server.URL, b.Server.URL}
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := w; i < items; i += writers {
						r, err := apptest.Send(client, bases[i%2], "POST", "/v1/items",
							map[string]any{"key": fmt.Sprintf("k%d", i), "n": i}, apptest.AdminKey)
						if err != nil || r.Status != http.StatusCreated {
							t.Errorf("create %d: %v %+v", i, err, r)
							return
						}
					}
				})
			}
			defer wg.Wait() // on a failure below, the writers still end before the test
			var aAtStop, bAtStop int
			if tc.stopA {
				rcv.waitRequests(t, items/2, 60*time.Second)
				a.App.Queue().Stop() // hands its attempts in flight back to the queue
				aAtStop, bAtStop = sentBy(t, a), sentBy(t, b)
				t.Logf("instance A's queue stopped after %d requests: A had sent %d, B %d", len(rcv.requests()), aAtStop, bAtStop)
			}
			wg.Wait()
			require.False(t, t.Failed())

			evs := auditEvents(t, a, "&resource=items")
			require.Len(t, evs, items, "one event per create")
			ds := waitStatuses(t, a, hookID, items, "succeeded", 60*time.Second)
			for _, d := range ds {
				require.EqualValues(t, 1, d["attempts"], "delivery %v", d["id"])
				require.Len(t, d["attemptLog"], 1, "delivery %v", d["id"])
			}
			sentA, sentB := sentBy(t, a), sentBy(t, b)
			got := rcv.requests()
			t.Logf("receiver got %d requests; instance A sent %d, B %d", len(got), sentA, sentB)

			perID := map[string]int{}
			for _, r := range got {
				perID[r.Header.Get("webhook-id")]++
				verify(t, h["secret"].(string), r)
			}
			for _, e := range evs {
				require.GreaterOrEqual(t, perID[e["eventId"].(string)], 1, "event %v never reached the receiver", e["eventId"])
			}
			require.Len(t, perID, items, "the receiver got only the events of the log")
			if !tc.stopA {
				for id, n := range perID {
					require.Equal(t, 1, n, "webhook-id %s received %d times", id, n)
				}
				require.Len(t, got, items)
				require.Equal(t, items, sentA+sentB, "one attempt per delivery, counted by the instance that made it")
				if tc.delay > 0 {
					require.Positive(t, sentA, "instance A sent deliveries")
					require.Positive(t, sentB, "instance B sent deliveries")
				}
				return
			}
			// A sent some, then nothing after its stop; B sent the rest. A
			// request A had in flight at the stop may have reached the
			// receiver before it was handed back and sent again by B: at
			// least once allows that, and only for those (at most A's
			// per-webhook concurrency, 16).
			require.Equal(t, items, sentA+sentB, "one successful attempt per delivery, counted by the instance that made it")
			require.Positive(t, aAtStop, "instance A sent deliveries before its stop")
			require.Equal(t, aAtStop, sentA, "a stopped queue sends nothing")
			require.Greater(t, sentB, bAtStop, "instance B sent after A stopped")
			require.Equal(t, items-sentA, sentB, "instance B finished the rest")
			dups := 0
			for _, n := range perID {
				require.LessOrEqual(t, n, 2)
				dups += n - 1
			}
			require.Equal(t, len(got)-items, dups)
			require.LessOrEqual(t, dups, 16, "only the attempts in flight at A's stop may come twice")
		})
	}
}
