package webhooks_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/database/dbtest"
)

// TestRegistrationRefusesBadInput: every bad field is named, nothing is
// stored, and both engines answer the same.
func TestRegistrationRefusesBadInput(t *testing.T) {
	cases := []struct {
		name   string
		body   any
		status int
		fields []string
	}{
		{"not json", `{"name":`, 400, nil},
		{"trailing data", `{"name":"a","url":"http://example.com","resource":"items"}}`, 400, nil},
		{"array", `[]`, 400, nil},
		{"nothing", map[string]any{}, 422, []string{"name", "resource", "url"}},
		{"unknown field and types", map[string]any{"name": 3, "url": "http://example.com", "resource": "items", "colour": "red", "ordered": "yes"},
			422, []string{"colour", "name", "ordered"}},
		{"bad values", map[string]any{"name": "x", "url": "ftp://example.com", "resource": "nope", "events": []string{"created", "exploded"},
			"format": "xml", "auth": map[string]any{"type": "magic"}, "retry": map[string]any{"maxAttempts": 0.5, "timeout": "1y"}, "rateLimit": -1},
			422, []string{"auth.type", "events[1]", "format", "rateLimit", "resource", "retry.maxAttempts", "retry.timeout", "url"}},
		{"durations", map[string]any{"name": "x", "url": "http://example.com", "resource": "items",
			"retry": map[string]any{"maxAttempts": 101, "initialInterval": "1h", "maxInterval": "1m", "timeout": "1ms"}},
			422, []string{"retry.maxAttempts", "retry.maxInterval", "retry.timeout"}},
		{"fields of another resource", map[string]any{"name": "x", "url": "http://example.com", "resource": "items", "fields": []string{"n", "label"}},
			422, []string{"fields[1]"}},
		{"fields with *", map[string]any{"name": "x", "url": "http://example.com", "resource": "*", "fields": []string{"n"}},
			422, []string{"fields[0]"}},
		{"reserved and bad headers", map[string]any{"name": "x", "url": "http://example.com", "resource": "items",
			"headers": map[string]string{"Authorization": "x", "webhook-signature": "x", "X-Herald-Attempt": "9", "Bad Name": "x",
				"X-Ok": "fine", "X-Inject": "a\r\nX-Evil: 1", "content-type": "text/plain"}},
			422, []string{"headers.Authorization", "headers.Bad Name", "headers.X-Herald-Attempt", "headers.X-Inject", "headers.content-type", "headers.webhook-signature"}},
		{"auth credentials", map[string]any{"name": "x", "url": "http://example.com", "resource": "items", "auth": map[string]any{"type": "bearer"}},
			422, []string{"auth.token"}},
		{"basic without user", map[string]any{"name": "x", "url": "http://example.com", "resource": "items", "auth": map[string]any{"type": "basic", "password": "p"}},
			422, []string{"auth.username"}},
		{"related and classification unknown, and together", map[string]any{"name": "x", "url": "http://example.com", "resource": "items",
			"related": []string{"tags"}, "classification": map[string]any{"name": "c", "from": "false", "to": "true"}},
			422, []string{"classification.name", "related", "related[0]"}},
		{"credentials in url", map[string]any{"name": "x", "url": "http://u:p@example.com", "resource": "items"}, 422, []string{"url"}},
	}
	answers := map[string][]string{}
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			env := start(t, kind)
			var got []string
			for _, c := range cases {
				r := env.Admin("POST", "/v1/_webhooks", c.body)
				require.Equal(t, c.status, r.Status, "%s: %s", c.name, r.Body)
				require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"), c.name)
				var p struct {
					Errors []struct{ Field, Rule, Message string }
				}
				require.NoError(t, json.Unmarshal(r.Body, &p))
				var fields []string
				for _, e := range p.Errors {
					if !slices.Contains(fields, e.Field) {
						fields = append(fields, e.Field)
					}
					require.NotEmpty(t, e.Message)
				}
				slices.Sort(fields)
				if c.fields != nil {
					require.Equal(t, c.fields, fields, "%s: %s", c.name, r.Body)
				}
				got = append(got, fmt.Sprintf("%s %d %v", c.name, r.Status, fields))
			}
			r := env.Admin("GET", "/v1/_webhooks", nil)
			require.Equal(t, http.StatusOK, r.Status)
			require.JSONEq(t, `{"data":[]}`, string(r.Body), "nothing was stored")
			answers[string(kind)] = got

			// Names are unique; unknown ids are 404; admin only.
			register(t, env, map[string]any{"name": "one", "url": "http://example.com", "resource": "items"})
			r = env.Admin("POST", "/v1/_webhooks", map[string]any{"name": "one", "url": "http://example.com", "resource": "items"})
			require.Equal(t, http.StatusConflict, r.Status, "%s", r.Body)
			for _, p := range []string{"/v1/_webhooks/0192f7a4-6b1e-7c3a-9d7e-2f9a1c0b5e11", "/v1/_webhooks/nope/deliveries"} {
				require.Equal(t, http.StatusNotFound, env.Admin("GET", p, nil).Status, p)
			}
			require.Equal(t, http.StatusUnauthorized, env.Do("GET", "/v1/_webhooks", nil, "").Status)
			require.Equal(t, http.StatusUnauthorized, env.Do("POST", "/v1/_webhooks", map[string]any{}, "").Status)
		})
	}
	if len(answers) == 2 {
		require.Equal(t, answers["sqlite"], answers["postgres"], "the same input gets the same answer on both engines")
	}
}

// TestAdminLifecycle: get hides the secret, PATCH changes only what it is
// sent and re-validates, rotate signs with both secrets for the grace
// period, test pings, invoke sends a manual event, delete removes.
func TestAdminLifecycle(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			rc := newReceiver(t, nil)
			h := register(t, env, map[string]any{"name": "life", "url": rc.URL, "resource": "items", "format": "hasura",
				"retry": fastRetry})
			id, oldSecret := h["id"].(string), h["secret"].(string)
			r := env.Admin("GET", "/v1/_webhooks/"+id, nil)
			require.Equal(t, http.StatusOK, r.Status)
			require.NotContains(t, string(r.Body), "whsec_", "the secret is shown only at creation and rotation")
			got := r.JSON()
			require.Equal(t, []any{"created", "updated", "deleted"}, got["events"])
			require.Equal(t, map[string]any{"maxAttempts": float64(4), "initialInterval": "50ms", "maxInterval": "200ms", "timeout": "2s"}, got["retry"])
			require.Equal(t, true, got["enabled"])

			r = env.Admin("PATCH", "/v1/_webhooks/"+id, map[string]any{"retry": map[string]any{"maxAttempts": 2}, "headers": map[string]string{"X-A": "b"}})
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
			got = r.JSON()
			require.Equal(t, map[string]any{"maxAttempts": float64(2), "initialInterval": "50ms", "maxInterval": "200ms", "timeout": "2s"}, got["retry"])
			require.Equal(t, "hasura", got["format"], "untouched settings stay")
			r = env.Admin("PATCH", "/v1/_webhooks/"+id, map[string]any{"format": "soap", "url": "gopher://x"})
			require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s", r.Body)
			require.Equal(t, "hasura", env.Admin("GET", "/v1/_webhooks/"+id, nil).JSON()["format"], "a refused PATCH changes nothing")

			// A ping is signed and logged.
			r = env.Admin("POST", "/v1/_webhooks/"+id+"/test", nil)
			require.Equal(t, http.StatusAccepted, r.Status, "%s", r.Body)
			ping := rc.waitRequests(t, 1, 10*time.Second)[0]
			verify(t, oldSecret, ping)
			require.Equal(t, "webhook.ping", ping.Header.Get("X-Herald-Event-Type"))
			require.Equal(t, "b", ping.Header.Get("X-A"))
			require.Equal(t, id, jsonOf(t, ping.Body)["webhookId"])

			// Rotation: the new secret is shown once; both signatures go out.
			r = env.Admin("POST", "/v1/_webhooks/"+id+"/rotate-secret", nil)
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
			newSecret := r.JSON()["secret"].(string)
			require.NotEqual(t, oldSecret, newSecret)
			require.True(t, strings.HasPrefix(newSecret, "whsec_"))
			row := create(t, env, "rot", 1)
			got2 := rc.waitRequests(t, 2, 10*time.Second)[1]
			verify(t, newSecret, got2)
			verify(t, oldSecret, got2)
			require.Len(t, strings.Fields(got2.Header.Get("webhook-signature")), 2)

			// Invoke: a manual event of the current row, to this webhook only.
			other := newReceiver(t, nil)
			register(t, env, map[string]any{"name": "bystander", "url": other.URL, "resource": "items"})
			patch(t, env, row, map[string]any{"note": "now"})
			r = env.Admin("POST", "/v1/_webhooks/"+id+"/invoke", map[string]any{"resourceId": row})
			require.Equal(t, http.StatusAccepted, r.Status, "%s", r.Body)
			eventID := r.JSON()["eventId"].(string)
			reqs := rc.waitRequests(t, 4, 10*time.Second)
			// The update's and the manual event's deliveries go out
			// concurrently: there is no global order.
			manual := jsonOf(t, reqs[3].Body)
			if manual["id"] != eventID {
				manual = jsonOf(t, reqs[2].Body)
			}
			require.Equal(t, eventID, manual["id"])
			ev := manual["event"].(map[string]any)
			require.Equal(t, "MANUAL", ev["op"])
			require.Nil(t, ev["data"].(map[string]any)["old"])
			require.Equal(t, "now", ev["data"].(map[string]any)["new"].(map[string]any)["note"])
			r = env.Admin("GET", "/v1/_events/"+eventID, nil)
			require.Equal(t, http.StatusOK, r.Status)
			require.Equal(t, "items.manual", r.JSON()["eventType"], "the manual event is in the log")
			other.waitRequests(t, 1, 10*time.Second)
			time.Sleep(300 * time.Millisecond)
			for _, q := range other.requests() {
				require.NotEqual(t, "items.manual", q.Header.Get("X-Herald-Event-Type"), "a manual event goes to its webhook only")
			}
			require.Equal(t, http.StatusNotFound, env.Admin("POST", "/v1/_webhooks/"+id+"/invoke", map[string]any{"resourceId": "0192f7a4-6b1e-7c3a-9d7e-2f9a1c0b5e11"}).Status)
			require.Equal(t, http.StatusUnprocessableEntity, env.Admin("POST", "/v1/_webhooks/"+id+"/invoke", map[string]any{}).Status)

			// Delete.
			require.Equal(t, http.StatusNoContent, env.Admin("DELETE", "/v1/_webhooks/"+id, nil).Status)
			require.Equal(t, http.StatusNotFound, env.Admin("GET", "/v1/_webhooks/"+id, nil).Status)
			require.Equal(t, http.StatusNotFound, env.Admin("DELETE", "/v1/_webhooks/"+id, nil).Status)
		})
	}
}

// TestFieldsAndEventsFilter: updates fire only when a listed field
// changed; events limits the operations.
func TestFieldsAndEventsFilter(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			rc := newReceiver(t, nil)
			register(t, env, map[string]any{"name": "n-only", "url": rc.URL, "resource": "items", "events": []string{"updated"}, "fields": []string{"n"}})
			id := create(t, env, "f", 1)
			patch(t, env, id, map[string]any{"note": "ignored"})
			patch(t, env, id, map[string]any{"n": 2})
			patch(t, env, id, map[string]any{"note": "again"})
			require.Equal(t, http.StatusNoContent, env.Admin("DELETE", "/v1/items/"+id, nil).Status)
			got := rc.waitRequests(t, 1, 10*time.Second)
			time.Sleep(500 * time.Millisecond)
			got = rc.requests()
			require.Len(t, got, 1, "only the update of n")
			data := jsonOf(t, got[0].Body)["data"].(map[string]any)
			require.EqualValues(t, 2, data["new"].(map[string]any)["n"])
		})
	}
}

// TestGoneAndDeadStreakDisable: 410 disables a webhook at once; a
// disabled webhook records nothing until re-enabled, and replay recovers
// the gap. 50 dead deliveries in a row disable too.
func TestGoneAndDeadStreakDisable(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			var mu sync.Mutex
			status := http.StatusGone
			rc := newReceiver(t, func(int, received) answer {
				mu.Lock()
				defer mu.Unlock()
				return answer{status: status}
			})
			h := register(t, env, map[string]any{"name": "gone", "url": rc.URL, "resource": "items", "retry": fastRetry})
			id := h["id"].(string)
			from := time.Now().Add(-time.Second).UTC()
			create(t, env, "g1", 1)
			require.Eventually(t, func() bool { return env.Admin("GET", "/v1/_webhooks/"+id, nil).JSON()["enabled"] == false },
				10*time.Second, 20*time.Millisecond, "410 disables the webhook")
			require.Contains(t, env.Admin("GET", "/v1/_webhooks/"+id, nil).JSON()["disabledReason"], "410")
			n := len(rc.requests())
			create(t, env, "g2", 2)
			create(t, env, "g3", 3)
			time.Sleep(500 * time.Millisecond)
			require.Len(t, deliveries(t, env, id, ""), 1, "a disabled webhook records nothing")
			require.Len(t, rc.requests(), n)

			mu.Lock()
			status = http.StatusOK
			mu.Unlock()
			r := env.Admin("PATCH", "/v1/_webhooks/"+id, map[string]any{"enabled": true})
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
			require.Nil(t, r.JSON()["disabledReason"])
			r = env.Admin("POST", "/v1/_webhooks/"+id+"/replay", map[string]any{"since": from.Format(time.RFC3339Nano)})
			require.Equal(t, http.StatusAccepted, r.Status, "%s", r.Body)
			require.EqualValues(t, 2, r.JSON()["queued"], "the two missed events; the first has its delivery")
			waitStatuses(t, env, id, 3, "succeeded", 10*time.Second)
			r = env.Admin("POST", "/v1/_webhooks/"+id+"/replay", map[string]any{"since": from.Format(time.RFC3339Nano)})
			require.EqualValues(t, 0, r.JSON()["queued"], "replay adds no duplicates")
			require.Equal(t, http.StatusUnprocessableEntity, env.Admin("POST", "/v1/_webhooks/"+id+"/replay", map[string]any{"since": "yesterday"}).Status)

			// A streak of dead deliveries.
			fail := newReceiver(t, func(int, received) answer { return answer{status: 500} })
			s := register(t, env, map[string]any{"name": "streak", "url": fail.URL, "resource": "tags",
				"retry": map[string]any{"maxAttempts": 1, "timeout": "1s"}})
			for i := range 50 {
				r := env.Admin("POST", "/v1/tags", map[string]any{"label": fmt.Sprint(i)})
				require.Equal(t, http.StatusCreated, r.Status)
			}
			require.Eventually(t, func() bool {
				return env.Admin("GET", "/v1/_webhooks/"+s["id"].(string), nil).JSON()["enabled"] == false
			},
				20*time.Second, 50*time.Millisecond, "50 dead in a row disable the webhook")
		})
	}
}

// TestPausedThenUnpausedKeepsOrder: a paused webhook records deliveries
// and sends nothing; unpaused, it sends the backlog in commit order per
// row, ordered or not, although the receiver answers after random delays.
func TestPausedThenUnpausedKeepsOrder(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		for _, ordered := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/ordered=%v", kind, ordered), func(t *testing.T) {
				t.Parallel()
				env := start(t, kind)
				rc := newReceiver(t, func(n int, r received) answer {
					return answer{status: 200, delay: time.Duration(n*7%11) * time.Millisecond}
				})
				h := register(t, env, map[string]any{"name": "paused", "url": rc.URL, "resource": "items", "paused": true, "ordered": ordered})
				id := create(t, env, "p", 0)
				other := create(t, env, "q", 0)
				for i := 1; i <= 20; i++ {
					patch(t, env, id, map[string]any{"n": i})
					patch(t, env, other, map[string]any{"n": i})
				}
				require.Eventually(t, func() bool { return len(deliveries(t, env, h["id"].(string), "&status=pending")) == 42 },
					10*time.Second, 20*time.Millisecond)
				time.Sleep(300 * time.Millisecond)
				require.Empty(t, rc.requests(), "a paused webhook sends nothing")
				r := env.Admin("PATCH", "/v1/_webhooks/"+h["id"].(string), map[string]any{"paused": false})
				require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
				got := rc.waitRequests(t, 42, 20*time.Second)
				next := map[string]float64{}
				for _, q := range got {
					body := jsonOf(t, q.Body)
					n := body["data"].(map[string]any)["new"].(map[string]any)["n"].(float64)
					row := body["resourceId"].(string)
					require.Equal(t, next[row], n, "row %s in commit order", row)
					next[row] = n + 1
				}
				// After the backlog, new deliveries flow as usual.
				patch(t, env, id, map[string]any{"n": 21})
				rc.waitRequests(t, 43, 10*time.Second)
			})
		}
	}
}

// TestOrderedUnderConcurrentWritesWithFlakyReceiver: with ordered: true,
// each row's deliveries arrive in commit order (the first successful
// receipt of each), although the receiver fails a third of the requests
// and writers update rows concurrently.
func TestOrderedUnderConcurrentWritesWithFlakyReceiver(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			rc := newReceiver(t, func(n int, r received) answer {
				if n%3 == 1 {
					return answer{status: 503}
				}
				return answer{status: 200}
			})
			h := register(t, env, map[string]any{"name": "ordered", "url": rc.URL, "resource": "items", "ordered": true,
				"retry": map[string]any{"maxAttempts": 20, "initialInterval": "10ms", "maxInterval": "50ms"}})
			rows := make([]string, 4)
			for i := range rows {
				rows[i] = create(t, env, fmt.Sprintf("o%d", i), 0)
			}
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					for j := 1; j <= 15; j++ {
						r := env.Admin("PATCH", "/v1/items/"+rows[(w+j)%len(rows)], map[string]any{"note": fmt.Sprintf("w%d-%d", w, j)})
						if r.Status != http.StatusOK {
							t.Errorf("PATCH: %d %s", r.Status, r.Body)
						}
					}
				})
			}
			wg.Wait()
			evs := auditEvents(t, env, "&resource=items")
			want := map[string][]string{}
			for _, e := range evs {
				want[e["resourceId"].(string)] = append(want[e["resourceId"].(string)], e["eventId"].(string))
			}
			waitStatuses(t, env, h["id"].(string), len(evs), "succeeded", 60*time.Second)
			got := map[string][]string{}
			seen := map[string]bool{}
			for i, q := range rc.requests() {
				if i%3 == 1 || seen[q.Header.Get("webhook-id")] {
					continue // failed by the receiver, or a retry of a delivered one
				}
				seen[q.Header.Get("webhook-id")] = true
				rid := jsonOf(t, q.Body)["resourceId"].(string)
				got[rid] = append(got[rid], q.Header.Get("webhook-id"))
			}
			require.Equal(t, want, got, "each row's events arrive in commit order")
		})
	}
}

// TestIsolationFromAHangingEndpoint: an endpoint that never answers holds
// only its own slots; another webhook gets hundreds of deliveries promptly.
func TestIsolationFromAHangingEndpoint(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			hang := newReceiver(t, func(int, received) answer { return answer{status: 200, delay: time.Minute} })
			fast := newReceiver(t, nil)
			register(t, env, map[string]any{"name": "hang", "url": hang.URL, "resource": "items", "retry": map[string]any{"timeout": "30s"}})
			register(t, env, map[string]any{"name": "fast", "url": fast.URL, "resource": "items"})
			const n = 300
			r := env.Admin("POST", "/v1/items", func() []map[string]any {
				var out []map[string]any
				for i := range n {
					out = append(out, map[string]any{"key": fmt.Sprint("iso", i), "n": i})
				}
				return out
			}())
			require.Equal(t, http.StatusCreated, r.Status)
			began := time.Now()
			fast.waitRequests(t, n, 15*time.Second)
			t.Logf("%d deliveries to the healthy endpoint in %v while the other hangs", n, time.Since(began))
			require.LessOrEqual(t, len(hang.requests()), 16, "a hanging endpoint holds at most its concurrency")
		})
	}
}

// TestSSRF: internal targets are refused at registration unless allowed.
func TestSSRF(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			env := start(t, kind, func(c *app.Config) { c.WebhookAllowPrivate = false })
			for _, u := range []string{"http://127.0.0.1:9/x", "http://localhost:8080/", "http://[::1]/", "http://10.1.2.3/",
				"http://192.168.0.1/", "http://172.16.5.4/", "http://169.254.169.254/latest/meta-data", "http://100.64.0.1/",
				"http://0.0.0.0/", "http://[fd00:ec2::254]/", "http://[::ffff:127.0.0.1]/", "http://224.0.0.1/", "file:///etc/passwd",
				"ftp://example.com/"} {
				r := env.Admin("POST", "/v1/_webhooks", map[string]any{"name": "s", "url": u, "resource": "items"})
				require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s: %s", u, r.Body)
				require.Contains(t, string(r.Body), `"field":"url"`, u)
			}
			r := env.Admin("POST", "/v1/_webhooks", map[string]any{"name": "s", "url": "https://203.0.113.10/hook", "resource": "items"})
			require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		})
	}
}
