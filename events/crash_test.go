package events_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
)

// TestKillNineLosesNoEvent runs the herald binary, SIGKILLs it while
// clients are creating records as fast as they can, restarts it on the
// same database and checks that every acknowledged write has exactly one
// event, that no event exists without its row, and that the relay
// dispatches whatever the killed process had not.
func TestKillNineLosesNoEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the kill -9 test in -short mode: it builds and runs the herald binary")
	}
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
			vars := []string{"HERALD_DATABASE_URL=" + dbURL, "HERALD_SCHEMA=" + schema, "HERALD_ADMIN_KEY=" + apptest.AdminKey}

			// Rounds of start, write, kill -9: at least three, and more (up
			// to eight) until the last kill leaves undispatched events, so
			// that the final restart has a backlog to dispatch. Whether the
			// relay is behind at a kill is luck; this makes it likely.
			var acked []string
			var undispatched int64
			for round := 0; round < 8 && (round < 3 || undispatched == 0); round++ {
				h := apptest.Run(t, bin, dir, vars)
				a, cutOff := createUntilKilled(t, h, round, 1000)
				acked = append(acked, a...)
				undispatched = countUndispatched(t, dbURL)
				t.Logf("round %d: %d creates acknowledged, %d cut off by the kill, %d events undispatched at the kill",
					round, len(a), cutOff, undispatched)
			}
			if undispatched <= 0 {
				t.Logf("the relay was not (known to be) behind at the last kill: catching up after the restart may not have been exercised")
			}

			second := apptest.Run(t, bin, dir, vars)
			env := &apptest.Env{T: t, Server: &httptest.Server{URL: second.Base}}

			all := eventsAfter(t, env, 0)
			require.NotEmpty(t, all.Events)
			byRow := map[string]int{}
			eventIDs := map[string]bool{}
			gaps := 0
			for i, e := range all.Events {
				checkEnvelope(t, all.Raw[i], e)
				require.Equal(t, "items.created", e.EventType)
				if i > 0 {
					require.Greater(t, e.ID, all.Events[i-1].ID, "ids increase")
					gaps += int(e.ID - all.Events[i-1].ID - 1)
				}
				require.False(t, eventIDs[e.EventID], "eventId %s twice", e.EventID)
				eventIDs[e.EventID] = true
				byRow[e.ResourceID]++
			}
			t.Logf("%d events, ids %d..%d, %d gaps", len(all.Events), all.Events[0].ID, all.Events[len(all.Events)-1].ID, gaps)
			for _, id := range acked {
				require.Equal(t, 1, byRow[id], "acknowledged create %s must have exactly one created event", id)
			}
			rows := listIDs(t, env)
			require.Len(t, byRow, len(rows), "one created event per stored row")
			for _, id := range rows {
				require.Equal(t, 1, byRow[id], "stored row %s must have exactly one created event", id)
			}

			// The restarted relay dispatches what the killed one had not.
			waitUntil(t, 30*time.Second, func() bool {
				for _, e := range eventsAfter(t, env, 0).Events {
					if e.DispatchedAt == nil {
						return false
					}
				}
				return true
			}, "every event dispatched after the restart")

			// Positions go on after the restart.
			resp := admin(t, env, "POST", "/v1/items", `{"key":"after-restart","writer":99,"n":0}`)
			require.Equal(t, http.StatusCreated, resp.Status, "%s", resp.Body)
			next := eventsAfter(t, env, all.Events[len(all.Events)-1].ID).Events
			require.Len(t, next, 1)
			require.Equal(t, resp.JSON()["id"], next[0].ResourceID)
			waitDispatched(t, env, next[0].EventID)

			// SIGTERM is a clean stop (SPEC section 9).
			require.NoError(t, second.Cmd.Process.Signal(syscall.SIGTERM))
			select {
			case <-second.Exited:
				require.NoError(t, second.Err, "exit after SIGTERM; log:\n%s", second.Log())
			case <-time.After(30 * time.Second):
				t.Fatalf("herald did not exit within 30s of SIGTERM; log:\n%s", second.Log())
			}
		})
	}
}

// createUntilKilled creates items from several clients as fast as it can,
// SIGKILLs h once at least n creates were acknowledged, and returns the ids
// of the acknowledged creates and how many requests the kill cut off. A
// few clients send bulk creates: their long transactions keep the write
// path busy, so the relay often is behind when the kill comes.
func createUntilKilled(t *testing.T, h *apptest.Process, round, n int) (acked []string, cutOff int) {
	t.Helper()
	const clients, bulkClients, bulkSize = 16, 4, 100
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients + bulkClients}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	var (
		mu     sync.Mutex
		count  atomic.Int64
		killed atomic.Bool
		wg     sync.WaitGroup
	)
	for c := range clients + bulkClients {
		wg.Go(func() {
			for i := 0; ; i++ {
				body := fmt.Sprintf(`{"key":"r%d-c%d-%d","writer":%d,"n":%d}`, round, c, i, c, i)
				if c >= clients {
					items := make([]string, bulkSize)
					for j := range items {
						items[j] = fmt.Sprintf(`{"key":"r%d-c%d-%d-%d","writer":%d,"n":%d}`, round, c, i, j, c, j)
					}
					body = "[" + strings.Join(items, ",") + "]"
				}
				status, _, raw, err := send(client, h.Base, "POST", "/v1/items", body, apptest.AdminKey)
				switch {
				case err != nil && killed.Load():
					mu.Lock()
					cutOff++
					mu.Unlock()
					return
				case err != nil:
					t.Errorf("client %d: create before the kill: %v", c, err)
					return
				case status != http.StatusCreated:
					t.Errorf("client %d: create: status %d: %s", c, status, raw)
					return
				}
				answer := (&apptest.Response{Body: raw}).JSON()
				var ids []string
				if data, ok := answer["data"].([]any); ok {
					for _, rec := range data {
						ids = append(ids, rec.(map[string]any)["id"].(string))
					}
				} else {
					ids = append(ids, answer["id"].(string))
				}
				mu.Lock()
				acked = append(acked, ids...)
				mu.Unlock()
				count.Add(int64(len(ids)))
			}
		})
	}
	defer func() { // on every path, the clients end with the process
		killed.Store(true)
		_ = h.Cmd.Process.Kill()
		wg.Wait()
	}()
	waitUntil(t, 2*time.Minute, func() bool { return count.Load() >= int64(n) || t.Failed() }, "creates acknowledged")
	require.False(t, t.Failed())
	killed.Store(true)
	require.NoError(t, h.Cmd.Process.Kill())
	<-h.Exited
	var exit *exec.ExitError
	require.True(t, errors.As(h.Err, &exit), "herald should die of SIGKILL: %v", h.Err)
	wg.Wait()
	require.False(t, t.Failed())
	mu.Lock()
	defer mu.Unlock()
	return acked, cutOff
}

// countUndispatched counts, in the killed instance's database, the events
// past the relay's dispatch watermark. It is a diagnostic of how much the
// restart had to catch up, so it reads the internal tables and only logs,
// returning -1, when it cannot.
func countUndispatched(t *testing.T, dbURL string) int64 {
	t.Helper()
	db, err := database.Open(context.Background(), database.Config{URL: dbURL})
	require.NoError(t, err)
	defer db.Close()
	var n int64
	err = db.Read.Raw("SELECT COUNT(*) FROM herald_events WHERE id > (SELECT COALESCE(MAX(id), 0) FROM herald_dispatches)").Scan(&n).Error
	if err != nil {
		t.Logf("cannot count undispatched events: %v", err)
		return -1
	}
	return n
}

// listIDs pages through every item.
func listIDs(t *testing.T, env *apptest.Env) []string {
	t.Helper()
	var ids []string
	for offset := 0; ; offset += 1000 {
		resp := admin(t, env, "GET", fmt.Sprintf("/v1/items?_limit=1000&_offset=%d&fields=id", offset), nil)
		require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
		data := resp.JSON()["data"].([]any)
		for _, row := range data {
			ids = append(ids, row.(map[string]any)["id"].(string))
		}
		if len(data) < 1000 {
			return ids
		}
	}
}

// waitUntil polls cond, in the test's goroutine, until it holds or the
// timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		<-tick.C
	}
}
