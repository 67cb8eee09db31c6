package webhooks_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/database/dbtest"
)

// TestFormatsAndSignatures registers one webhook per format, writes
// through the API, and checks each delivery byte for byte against the
// event log, its headers, and its signature with the reference library.
func TestFormatsAndSignatures(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			rcv := map[string]*receiver{}
			hooks := map[string]map[string]any{}
			for _, f := range []string{"event", "hasura", "ids"} {
				rcv[f] = newReceiver(t, nil)
				hooks[f] = register(t, env, map[string]any{"name": "fmt-" + f, "url": rcv[f].URL + "/in", "resource": "items",
					"format": f, "headers": map[string]string{"X-Tenant": "acme"}})
				require.True(t, strings.HasPrefix(hooks[f]["secret"].(string), "whsec_"))
			}
			// One transaction touching two rows, then an update and a delete.
			r := env.Admin("POST", "/v1/items", []map[string]any{{"key": "a", "n": 1}, {"key": "b", "n": 2}})
			require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
			var created struct {
				Data []map[string]any `json:"data"`
			}
			require.NoError(t, json.Unmarshal(r.Body, &created))
			a, b := created.Data[0]["id"].(string), created.Data[1]["id"].(string)
			patch(t, env, a, map[string]any{"n": 10})
			require.Equal(t, http.StatusNoContent, env.Admin("DELETE", "/v1/items/"+b, nil).Status)
			env.Admin("POST", "/v1/tags", map[string]any{"label": "not for items hooks"})

			// event: the event of the log plus webhookId, signed.
			got := rcv["event"].waitRequests(t, 4, 10*time.Second)
			time.Sleep(200 * time.Millisecond)
			evs := auditEvents(t, env, "&resource=items")
			require.Len(t, evs, 4)
			require.Len(t, rcv["event"].requests(), 4, "one delivery per event, nothing for tags")
			slices.SortFunc(got, func(x, y received) int {
				return strings.Compare(x.Header.Get("webhook-id"), y.Header.Get("webhook-id"))
			})
			for i, req := range got {
				ev := evs[i]
				require.Equal(t, ev["eventId"], req.Header.Get("webhook-id"))
				verify(t, hooks["event"]["secret"].(string), req)
				require.Equal(t, "application/json", req.Header.Get("Content-Type"))
				require.Equal(t, "Herald/dev", req.Header.Get("User-Agent"))
				require.Equal(t, ev["eventType"], req.Header.Get("X-Herald-Event-Type"))
				require.Equal(t, "1", req.Header.Get("X-Herald-Attempt"))
				require.NotEmpty(t, req.Header.Get("X-Herald-Delivery-Id"))
				require.Equal(t, "acme", req.Header.Get("X-Tenant"))
				tc := ev["traceContext"].(map[string]any)
				tp := req.Header.Get("traceparent")
				// Sampled, as the write's trace was, whether or not this
				// process records spans.
				require.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`, tp)
				require.Equal(t, tc["traceId"], strings.Split(tp, "-")[1], "traceparent continues the write's trace")
				require.NotEqual(t, tc["spanId"], strings.Split(tp, "-")[2], "each attempt is a client span of its own, a child of the write's")
				want := map[string]any{}
				for k, v := range ev {
					want[k] = v
				}
				want["webhookId"] = hooks["event"]["id"]
				require.Equal(t, want, jsonOf(t, req.Body))
			}

			// hasura: exactly the shape Hasura receivers parse.
			got = rcv["hasura"].waitRequests(t, 4, 10*time.Second)
			slices.SortFunc(got, func(x, y received) int {
				return strings.Compare(x.Header.Get("webhook-id"), y.Header.Get("webhook-id"))
			})
			ops := map[string]string{"items.created": "INSERT", "items.updated": "UPDATE", "items.deleted": "DELETE"}
			for i, req := range got {
				ev := evs[i]
				verify(t, hooks["hasura"]["secret"].(string), req)
				data := ev["data"].(map[string]any)
				tc := ev["traceContext"].(map[string]any)
				want := map[string]any{
					"event": map[string]any{
						"session_variables": map[string]any{"x-hasura-role": "admin"},
						"op":                ops[ev["eventType"].(string)],
						"data":              map[string]any{"old": data["old"], "new": data["new"]},
						"trace_context":     map[string]any{"trace_id": tc["traceId"], "span_id": tc["spanId"]},
					},
					"created_at": ev["createdAt"],
					"id":         ev["eventId"],
					"trigger":    map[string]any{"name": "fmt-hasura"},
					"table":      map[string]any{"schema": "public", "name": "items"},
				}
				require.Equal(t, want, jsonOf(t, req.Body))
			}

			// ids: the two rows of the bulk create in one delivery.
			got = rcv["ids"].waitRequests(t, 3, 10*time.Second)
			time.Sleep(200 * time.Millisecond)
			got = rcv["ids"].requests()
			require.Len(t, got, 3, "bulk create, update, delete")
			var rows [][]string
			for _, req := range got {
				verify(t, hooks["ids"]["secret"].(string), req)
				var p map[string]any
				require.NoError(t, json.Unmarshal(req.Body, &p))
				require.Len(t, p, 2, "exactly hook_id and rows: %s", req.Body)
				require.Equal(t, hooks["ids"]["id"], p["hook_id"])
				var ids []string
				for _, x := range p["rows"].([]any) {
					ids = append(ids, x.(string))
				}
				rows = append(rows, ids)
				require.Equal(t, req.Header.Get("X-Herald-Delivery-Id"), req.Header.Get("webhook-id"),
					"an ids batch is its own message: webhook-id is the delivery id")
			}
			require.ElementsMatch(t, [][]string{{a, b}, {a}, {b}}, rows)

			// The delivery log shows each as succeeded, with its attempt.
			ds := waitStatuses(t, env, hooks["event"]["id"].(string), 4, "succeeded", 10*time.Second)
			for _, d := range ds {
				log := d["attemptLog"].([]any)
				require.Len(t, log, 1)
				at := log[0].(map[string]any)
				require.EqualValues(t, 200, at["statusCode"])
				require.Contains(t, at, "latencyMs")
				require.Nil(t, d["nextAttemptAt"])
			}
		})
	}
}

// TestRetriesAndRetryAfter: 5xx answers are retried with the same bytes
// and webhook-id, Retry-After (seconds and HTTP date) sets the delay, and
// a delivery that exhausts its attempts is dead until redelivered.
func TestRetriesAndRetryAfter(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			flaky := newReceiver(t, func(n int, r received) answer {
				switch n {
				case 0:
					return answer{status: 503, headers: map[string]string{"Retry-After": "1"}, body: "busy"}
				case 1:
					return answer{status: 429, headers: map[string]string{"Retry-After": time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)}}
				case 2:
					return answer{status: 500, headers: map[string]string{"Authorization": "Bearer leaked", "X-Api-Token": "t"}}
				}
				return answer{status: 204}
			})
			h := register(t, env, map[string]any{"name": "flaky", "url": flaky.URL, "resource": "items", "retry": fastRetry})
			create(t, env, "x", 1)
			got := flaky.waitRequests(t, 4, 20*time.Second)
			for i, r := range got {
				require.Equal(t, got[0].Body, r.Body, "identical payload bytes on every attempt")
				require.Equal(t, got[0].Header.Get("webhook-id"), r.Header.Get("webhook-id"))
				require.Equal(t, got[0].Header.Get("X-Herald-Delivery-Id"), r.Header.Get("X-Herald-Delivery-Id"))
				require.Equal(t, i+1, atoi(t, r.Header.Get("X-Herald-Attempt")))
				verify(t, h["secret"].(string), r)
			}
			// maxInterval 200ms caps Retry-After: the retries come fast.
			require.Less(t, got[1].At.Sub(got[0].At), 900*time.Millisecond, "Retry-After is capped at maxInterval")
			ds := waitStatuses(t, env, h["id"].(string), 1, "succeeded", 10*time.Second)
			log := ds[0]["attemptLog"].([]any)
			require.Len(t, log, 4)
			first := log[0].(map[string]any)
			require.EqualValues(t, 503, first["statusCode"])
			require.Equal(t, "busy", first["response"])
			third := log[2].(map[string]any)["responseHeaders"].(map[string]any)
			require.Equal(t, "***", third["Authorization"], "credentials in response headers are masked")
			require.Equal(t, "***", third["X-Api-Token"])

			// Retry-After within maxInterval is obeyed: 1 s, then an HTTP date 2 s on.
			slow := newReceiver(t, func(n int, r received) answer {
				switch n {
				case 0:
					return answer{status: 503, headers: map[string]string{"Retry-After": "1"}}
				case 1:
					return answer{status: 503, headers: map[string]string{"Retry-After": time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)}}
				}
				return answer{status: 200}
			})
			register(t, env, map[string]any{"name": "slow", "url": slow.URL, "resource": "tags",
				"retry": map[string]any{"maxAttempts": 3, "initialInterval": "10ms", "maxInterval": "1m"}})
			env.Admin("POST", "/v1/tags", map[string]any{"label": "t"})
			got = slow.waitRequests(t, 3, 20*time.Second)
			require.GreaterOrEqual(t, got[1].At.Sub(got[0].At), 900*time.Millisecond, "Retry-After: 1")
			require.GreaterOrEqual(t, got[2].At.Sub(got[1].At), 1000*time.Millisecond, "Retry-After as an HTTP date")
		})
	}
}

// TestTimeoutRefusedDeadAndRedeliver: timeouts and refused connections
// are retried; after maxAttempts the delivery is dead, and redeliver
// sends it again with the same bytes.
func TestTimeoutRefusedDeadAndRedeliver(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			hang := newReceiver(t, func(n int, r received) answer {
				if n < 2 {
					return answer{status: 200, delay: 5 * time.Second}
				}
				return answer{status: 200}
			})
			h := register(t, env, map[string]any{"name": "hang", "url": hang.URL, "resource": "items",
				"retry": map[string]any{"maxAttempts": 2, "initialInterval": "50ms", "maxInterval": "100ms", "timeout": "300ms"}})
			// A port nobody listens on: connection refused.
			gone := newReceiver(t, nil)
			url := gone.URL
			gone.Close()
			dead := register(t, env, map[string]any{"name": "refused", "url": url, "resource": "items",
				"retry": map[string]any{"maxAttempts": 3, "initialInterval": "20ms", "maxInterval": "50ms", "timeout": "1s"}})
			create(t, env, "x", 1)

			ds := waitStatuses(t, env, h["id"].(string), 1, "dead", 15*time.Second)
			log := ds[0]["attemptLog"].([]any)
			require.Len(t, log, 2)
			for _, a := range log {
				require.Contains(t, a.(map[string]any)["error"], "timeout")
			}
			ds = waitStatuses(t, env, dead["id"].(string), 1, "dead", 15*time.Second)
			require.Len(t, ds[0]["attemptLog"], 3)
			require.Contains(t, ds[0]["attemptLog"].([]any)[0].(map[string]any)["error"], "refused")
			require.EqualValues(t, 3, ds[0]["attempts"])
			require.Len(t, deliveries(t, env, dead["id"].(string), "&status=dead"), 1)
			require.Empty(t, deliveries(t, env, dead["id"].(string), "&status=succeeded"))

			// Redeliver the timed-out one: the receiver now answers at once.
			before := hang.requests()
			r := env.Admin("POST", "/v1/_deliveries/"+ds[0]["id"].(string)+"/redeliver", nil)
			require.Equal(t, http.StatusAccepted, r.Status, "%s", r.Body)
			hd := deliveries(t, env, h["id"].(string), "")[0]
			r = env.Admin("POST", "/v1/_deliveries/"+hd["id"].(string)+"/redeliver", nil)
			require.Equal(t, http.StatusAccepted, r.Status, "%s", r.Body)
			require.Equal(t, "pending", r.JSON()["status"])
			waitStatuses(t, env, h["id"].(string), 1, "succeeded", 10*time.Second)
			after := hang.requests()
			require.Len(t, after, len(before)+1)
			require.True(t, bytes.Equal(before[0].Body, after[len(after)-1].Body), "redelivery sends the same bytes")
			require.Equal(t, before[0].Header.Get("webhook-id"), after[len(after)-1].Header.Get("webhook-id"))
			require.Equal(t, http.StatusNotFound, env.Admin("POST", "/v1/_deliveries/999999/redeliver", nil).Status)
			require.Equal(t, http.StatusNotFound, env.Admin("POST", "/v1/_deliveries/abc/redeliver", nil).Status)
		})
	}
}
