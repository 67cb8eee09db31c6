package webhooks_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/database/dbtest"
)

// TestEachDeliverySentOnce: with one instance and a receiver that answers
// 2xx, every delivery goes out exactly once, including while the receiver
// is slow and deliveries wait behind each other. (A lease written in local
// time and compared as text on SQLite once made every delivery go twice.)
func TestEachDeliverySentOnce(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			rc := newReceiver(t, func(int, received) answer { return answer{status: 202, delay: 30 * time.Millisecond} })
			h := register(t, env, map[string]any{"name": "once", "url": rc.URL, "resource": "items"})
			var batch []map[string]any
			for i := range 60 {
				batch = append(batch, map[string]any{"key": fmt.Sprint("once", i), "n": i})
			}
			require.Equal(t, http.StatusCreated, env.Admin("POST", "/v1/items", batch).Status)
			for i := range 10 {
				create(t, env, fmt.Sprint("single", i), i)
			}
			waitStatuses(t, env, h["id"].(string), 70, "succeeded", 30*time.Second)
			time.Sleep(300 * time.Millisecond)
			seen := map[string]int{}
			for _, r := range rc.requests() {
				seen[r.Header.Get("webhook-id")]++
			}
			require.Len(t, seen, 70)
			for id, n := range seen {
				require.Equal(t, 1, n, "webhook-id %s sent %d times", id, n)
			}
		})
	}
}

// TestChangesStopWhatIsClaimed: pausing, deleting or a 410 stops the
// deliveries this instance already holds claimed; only those in flight
// at the change may still arrive.
func TestChangesStopWhatIsClaimed(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		for _, how := range []string{"pause", "delete", "gone"} {
			t.Run(string(kind)+"/"+how, func(t *testing.T) {
				t.Parallel()
				env := start(t, kind)
				rc := newReceiver(t, func(n int, r received) answer {
					if how == "gone" && n >= 6 {
						return answer{status: http.StatusGone, delay: 50 * time.Millisecond}
					}
					return answer{status: 200, delay: 50 * time.Millisecond}
				})
				h := register(t, env, map[string]any{"name": "stop-" + how, "url": rc.URL, "resource": "items"})
				id := h["id"].(string)
				// Warm the lane up so that it claims ahead.
				for i := range 3 {
					create(t, env, fmt.Sprint("warm", i), i)
				}
				rc.waitRequests(t, 3, 10*time.Second)
				var batch []map[string]any
				for i := range 200 {
					batch = append(batch, map[string]any{"key": fmt.Sprint("c", i), "n": i})
				}
				require.Equal(t, http.StatusCreated, env.Admin("POST", "/v1/items", batch).Status)
				rc.waitRequests(t, 6, 10*time.Second)
				switch how {
				case "pause":
					require.Equal(t, http.StatusOK, env.Admin("PATCH", "/v1/_webhooks/"+id, map[string]any{"paused": true}).Status)
				case "delete":
					require.Equal(t, http.StatusNoContent, env.Admin("DELETE", "/v1/_webhooks/"+id, nil).Status)
				case "gone":
					require.Eventually(t, func() bool { return env.Admin("GET", "/v1/_webhooks/"+id, nil).JSON()["enabled"] == false },
						10*time.Second, 5*time.Millisecond)
				}
				at := len(rc.requests())
				time.Sleep(time.Second)
				after := len(rc.requests()) - at
				require.LessOrEqual(t, after, 16, "only attempts in flight at the change may still arrive, not the claimed backlog")
				t.Logf("%s: %d requests after the change", how, after)
				if how == "delete" {
					return
				}
				ds := deliveries(t, env, id, "&status=pending")
				require.Greater(t, len(ds), 150, "the rest waits in the log")
			})
		}
	}
}

// TestBadIDsAndNullsAreClientErrors: ids that are not UUIDs, NUL
// characters and nulls get 4xx on both engines, never 5xx.
func TestBadIDsAndNullsAreClientErrors(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			rc := newReceiver(t, nil)
			h := register(t, env, map[string]any{"name": "n", "url": rc.URL, "resource": "items"})
			id := h["id"].(string)
			for _, p := range []string{"/v1/_webhooks/%00", "/v1/_webhooks/x%00y/deliveries", "/v1/_webhooks/" + id + "%00"} {
				require.Equal(t, http.StatusNotFound, env.Admin("GET", p, nil).Status, p)
			}
			require.Equal(t, http.StatusNotFound, env.Admin("DELETE", "/v1/_webhooks/%00", nil).Status)
			require.Equal(t, http.StatusNotFound, env.Admin("PATCH", "/v1/_webhooks/%00", map[string]any{"paused": true}).Status)
			for _, body := range []string{`{"name":"a\u0000b","url":"http://example.com","resource":"items"}`,
				`{"name":"a","url":"http://example.com","resource":"items","auth":{"type":"basic","username":"u","password":"p\u0000"}}`} {
				r := env.Admin("POST", "/v1/_webhooks", body)
				require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s", r.Body)
			}
			r := env.Admin("PATCH", "/v1/_webhooks/"+id, `{"name":"x\u0000"}`)
			require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s", r.Body)
			r = env.Admin("PATCH", "/v1/_webhooks/"+id, `{"enabled":null}`)
			require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s", r.Body)
			r = env.Admin("POST", "/v1/_webhooks/"+id+"/invoke", `{"resourceId":"a\u0000"}`)
			require.Equal(t, http.StatusNotFound, r.Status, "%s", r.Body)

			// A disabled webhook takes no test or invoke: nothing would be sent.
			require.Equal(t, http.StatusOK, env.Admin("PATCH", "/v1/_webhooks/"+id, map[string]any{"enabled": false}).Status)
			row := create(t, env, "d", 1)
			require.Equal(t, http.StatusConflict, env.Admin("POST", "/v1/_webhooks/"+id+"/test", nil).Status)
			require.Equal(t, http.StatusConflict, env.Admin("POST", "/v1/_webhooks/"+id+"/invoke", map[string]any{"resourceId": row}).Status)
		})
	}
}

// TestRateLimitNeverOutlivesTheLease: a rate limit slower than the lease
// allows does not make a delivery go out twice.
func TestRateLimitNeverOutlivesTheLease(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			rc := newReceiver(t, nil)
			h := register(t, env, map[string]any{"name": "slowrate", "url": rc.URL, "resource": "items", "rateLimit": 2,
				"retry": map[string]any{"timeout": "100ms"}})
			for i := range 8 {
				create(t, env, fmt.Sprint("rl", i), i)
			}
			waitStatuses(t, env, h["id"].(string), 8, "succeeded", 30*time.Second)
			seen := map[string]int{}
			for _, r := range rc.requests() {
				seen[r.Header.Get("webhook-id")]++
			}
			require.Len(t, seen, 8)
			for id, n := range seen {
				require.Equal(t, 1, n, "webhook-id %s sent %d times", id, n)
			}
		})
	}
}
