package webhooks_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/database/dbtest"
)

// TestRateLimit: rateLimit caps requests per second to the endpoint.
func TestRateLimit(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			rc := newReceiver(t, nil)
			register(t, env, map[string]any{"name": "limited", "url": rc.URL, "resource": "items", "rateLimit": 5})
			var batch []map[string]any
			for i := range 16 {
				batch = append(batch, map[string]any{"key": fmt.Sprint("r", i), "n": i})
			}
			require.Equal(t, http.StatusCreated, env.Admin("POST", "/v1/items", batch).Status)
			got := rc.waitRequests(t, 16, 20*time.Second)
			span := got[len(got)-1].At.Sub(got[0].At)
			// A burst of 5, then 5 a second: the 16th goes out after about 2.2 s.
			require.GreaterOrEqual(t, span, 1800*time.Millisecond, "16 requests at 5/s")
		})
	}
}

// TestShutdownHandsAttemptsBack: stopping the queue cancels the attempt in
// flight and releases its claim without counting it; started again, the
// delivery goes out as attempt 1.
func TestShutdownHandsAttemptsBack(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			rc := newReceiver(t, func(n int, r received) answer {
				if n == 0 {
					return answer{status: 200, delay: time.Minute}
				}
				return answer{status: 200}
			})
			h := register(t, env, map[string]any{"name": "stop", "url": rc.URL, "resource": "items", "retry": map[string]any{"timeout": "2m"}})
			create(t, env, "s", 1)
			rc.waitRequests(t, 1, 10*time.Second)
			stopped := make(chan struct{})
			go func() { env.App.Queue().Stop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(10 * time.Second):
				t.Fatal("Stop did not return while an attempt was in flight")
			}
			d := deliveries(t, env, h["id"].(string), "")[0]
			require.Equal(t, "pending", d["status"])
			require.EqualValues(t, 0, d["attempts"], "a cancelled attempt is not counted")
			require.Empty(t, d["attemptLog"])
			env.App.Queue().Start()
			got := rc.waitRequests(t, 2, 10*time.Second)
			require.Equal(t, "1", got[1].Header.Get("X-Herald-Attempt"))
			waitStatuses(t, env, h["id"].(string), 1, "succeeded", 10*time.Second)
		})
	}
}

// TestMetricsCountDeliveries: /metrics counts attempts by outcome.
func TestMetricsCountDeliveries(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			rc := newReceiver(t, func(n int, r received) answer {
				if r.Header.Get("X-Herald-Attempt") == "1" && jsonOf(t, r.Body)["resourceName"] == "tags" {
					return answer{status: 500}
				}
				return answer{status: 200}
			})
			register(t, env, map[string]any{"name": "m", "url": rc.URL, "resource": "*",
				"retry": map[string]any{"maxAttempts": 2, "initialInterval": "20ms", "maxInterval": "50ms"}})
			for i := range 3 {
				create(t, env, fmt.Sprint("m", i), i)
			}
			require.Equal(t, http.StatusCreated, env.Admin("POST", "/v1/tags", map[string]any{"label": "x"}).Status)
			rc.waitRequests(t, 5, 10*time.Second)
			count := func(body, outcome string) int {
				m := regexp.MustCompile(`herald_webhook_deliveries_total\{outcome="` + outcome + `"\} (\d+)`).FindStringSubmatch(body)
				if m == nil {
					return 0
				}
				n, _ := strconv.Atoi(m[1])
				return n
			}
			var body string
			require.Eventually(t, func() bool {
				body = string(env.Do("GET", "/metrics", nil, "").Body)
				return count(body, "succeeded") == 4 && count(body, "retrying") == 1
			}, 10*time.Second, 50*time.Millisecond, "4 succeeded and 1 retried attempt: %s", body)
			require.Zero(t, count(body, "dead"))
			require.Contains(t, body, "herald_webhook_attempt_duration_seconds_count 5")
			require.Eventually(t, func() bool {
				body = string(env.Do("GET", "/metrics", nil, "").Body)
				return regexp.MustCompile(`herald_consumer_lag_events\{consumer="webhooks"\} 0\n`).MatchString(body)
			}, 10*time.Second, 50*time.Millisecond, "the webhook consumer caught up: lag 0")
		})
	}
}
