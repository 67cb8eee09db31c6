package webhooks_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
)

// TestKillNineDeliversEverything runs the herald binary with a webhook to
// a slow receiver, SIGKILLs it while deliveries are both queued and in
// flight, restarts it on the same database and checks that every event of
// the log reaches the receiver and every delivery ends succeeded: queued
// ones are sent by the new process, and those the killed process had
// claimed are taken over once their lease (timeout + 10s) expires.
func TestKillNineDeliversEverything(t *testing.T) {
	const items, writers = 100, 8
	const slow = time.Second // before the kill: deliveries stay in flight
	bin := apptest.Build(t, "..")
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dbURL := filepath.Join(dir, "h.db")
			if kind == database.Postgres {
				dbURL = dbtest.URL(t, kind)
			}
			schema := filepath.Join(dir, "schema.yaml")
			require.NoError(t, os.WriteFile(schema, []byte(itemsSchema), 0o600))
			vars := []string{"HERALD_DATABASE_URL=" + dbURL, "HERALD_SCHEMA=" + schema,
				"HERALD_ADMIN_KEY=" + apptest.AdminKey, "HERALD_WEBHOOK_ALLOW_PRIVATE=true"}

			var killed atomic.Bool
			rcv := newReceiver(t, func(int, received) answer {
				if killed.Load() {
					return answer{status: http.StatusOK, delay: 20 * time.Millisecond}
				}
				return answer{status: http.StatusOK, delay: slow}
			})

			first := apptest.Run(t, bin, dir, vars)
			env, point := proxyTo(t, kind, first.Base)
			h := register(t, env, map[string]any{"name": "crash", "url": rcv.URL, "resource": "items",
				"retry": map[string]any{"maxAttempts": 10, "initialInterval": "100ms", "maxInterval": "500ms", "timeout": "2s"}})

			client := env.Server.Client()
			var wg sync.WaitGroup
			var acked atomic.Int64
			for w := range writers {
				wg.Go(func() {
					for i := w; i < items; i += writers {
						r, err := apptest.Send(client, env.Server.URL, "POST", "/v1/items",
							map[string]any{"key": fmt.Sprintf("k%d", i), "n": i}, apptest.AdminKey)
						if err != nil || r.Status != http.StatusCreated {
							t.Errorf("create %d: %v %+v", i, err, r)
							return
						}
						acked.Add(1)
					}
				})
			}
			wg.Wait()
			require.EqualValues(t, items, acked.Load())

			// Kill while a request is surely in flight: one arrived at the
			// receiver less than half its answer time ago.
			require.Eventually(t, func() bool {
				for _, r := range rcv.requests() {
					if time.Since(r.At) < slow/2 {
						return true
					}
				}
				return false
			}, 30*time.Second, 5*time.Millisecond, "a delivery in flight")
			slowUntil := time.Now()
			killed.Store(true) // from here on the receiver answers fast
			first.Kill(t)
			killedAt := time.Now()

			// In flight at the kill: requests that got the slow answer and
			// were still waiting for it when the process died. Its attempt
			// never came back, so the delivery can only end succeeded if it
			// is sent again.
			before := rcv.requests()
			inFlight := map[string]bool{}
			sentBefore := map[string]bool{}
			for _, r := range before {
				id := r.Header.Get("webhook-id")
				sentBefore[id] = true
				if r.At.Before(slowUntil) && r.At.Add(slow).After(killedAt) {
					inFlight[id] = true
				}
			}
			claimed, unclaimed, undispatched := leftAtKill(t, dbURL)
			t.Logf("at the kill: %d requests received, %d of them in flight; in the database %d deliveries unfinished and claimed, %d unclaimed, %d events not yet dispatched",
				len(before), len(inFlight), claimed, unclaimed, undispatched)
			require.NotEmpty(t, inFlight, "the kill must catch deliveries in flight")
			require.Less(t, len(sentBefore), items, "the kill must leave events not yet sent")

			restart := time.Now()
			second := apptest.Run(t, bin, dir, vars)
			point(second.Base)

			evs := auditEvents(t, env, "&resource=items")
			require.Len(t, evs, items)
			waitStatuses(t, env, h["id"].(string), items, "succeeded", 45*time.Second)

			got := rcv.requests()
			perID := map[string]int{}
			afterRestart := map[string]bool{}
			for _, r := range got {
				id := r.Header.Get("webhook-id")
				perID[id]++
				if r.At.After(restart) {
					afterRestart[id] = true
				}
				verify(t, h["secret"].(string), r)
			}
			for _, e := range evs {
				require.GreaterOrEqual(t, perID[e["eventId"].(string)], 1, "event %v never reached the receiver", e["eventId"])
			}
			require.Len(t, perID, items, "the receiver got only the events of the log")
			for id := range inFlight {
				require.True(t, afterRestart[id], "delivery of event %s, in flight at the kill, is sent again after the restart", id)
			}
			t.Logf("receiver got %d requests for %d events (%d after the restart)", len(got), items, len(got)-len(before))
			second.Kill(t)
		})
	}
}

// proxyTo gives the helpers of this package (register, auditEvents,
// waitStatuses ...) an Env for a herald process: a local server that
// forwards to the process, and a function that points it at another one
// (the restarted process).
func proxyTo(t *testing.T, kind database.Kind, base string) (*apptest.Env, func(base string)) {
	t.Helper()
	var target atomic.Pointer[url.URL]
	point := func(base string) {
		u, err := url.Parse(base)
		require.NoError(t, err)
		target.Store(u)
	}
	point(base)
	tr := &http.Transport{}
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target.Load()) },
		Transport: tr,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	return &apptest.Env{T: t, Server: srv, Kind: kind}, func(base string) {
		tr.CloseIdleConnections() // connections to the old process are dead
		point(base)
	}
}

// leftAtKill reads, in the killed process's database, how many
// deliveries were unfinished and claimed by it, how many were unfinished
// and unclaimed, and how many events the dispatcher had not turned into
// deliveries yet. It is a diagnostic of what the restart had to do.
func leftAtKill(t *testing.T, dbURL string) (claimed, unclaimed, undispatched int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := database.Open(ctx, database.Config{URL: dbURL})
	require.NoError(t, err)
	defer db.Close()
	q := db.Read.WithContext(ctx)
	require.NoError(t, q.Raw(`SELECT COUNT(*) FROM herald_deliveries
  WHERE status IN ('pending', 'retrying') AND claimed_by <> ''`).Scan(&claimed).Error)
	require.NoError(t, q.Raw(`SELECT COUNT(*) FROM herald_deliveries
  WHERE status IN ('pending', 'retrying') AND claimed_by = ''`).Scan(&unclaimed).Error)
	require.NoError(t, q.Raw(`SELECT COUNT(*) FROM herald_events
  WHERE id > (SELECT position FROM herald_consumers WHERE name = 'webhooks')`).Scan(&undispatched).Error)
	return claimed, unclaimed, undispatched
}
