package webhooks_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
)

// TestMain runs the suite in a time zone west of UTC: SQLite compares
// times as text, so a time written in local time would compare wrong (a
// lease looked expired at once and deliveries went out twice).
func TestMain(m *testing.M) {
	time.Local = time.FixedZone("UTC-5", -5*60*60)
	dbtest.Main(m)
}

const itemsSchema = `
resources:
  - name: items
    fields:
      - {name: key, type: string, required: true, unique: true}
      - {name: n, type: integer, filterable: true}
      - {name: note, type: string}
  - name: tags
    fields:
      - {name: label, type: string, required: true}
`

// start runs Herald on a fresh database of kind, with private webhook
// targets allowed (the receivers listen on loopback).
func start(t *testing.T, kind database.Kind, modify ...func(*app.Config)) *apptest.Env {
	t.Helper()
	return apptest.Start(t, kind, itemsSchema, append([]func(*app.Config){func(c *app.Config) { c.WebhookAllowPrivate = true }}, modify...)...)
}

// received is one request a receiver got.
type received struct {
	Header http.Header
	Body   []byte
	At     time.Time
}

// answer is what a receiver answers to its n-th request (0-based).
type answer struct {
	status  int
	headers map[string]string
	delay   time.Duration
	body    string
}

// receiver is a real HTTP endpoint that records every request.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(n int, r received) answer
	stop   chan struct{}
}

// newReceiver starts a receiver; answer nil means 200 to everything.
func newReceiver(t *testing.T, answers func(n int, r received) answer) *receiver {
	t.Helper()
	rc := &receiver{answer: answers, stop: make(chan struct{})}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := received{Header: r.Header.Clone(), Body: body, At: time.Now()}
		rc.mu.Lock()
		n := len(rc.got)
		rc.got = append(rc.got, rec)
		rc.mu.Unlock()
		a := answer{status: http.StatusOK}
		if rc.answer != nil {
			a = rc.answer(n, rec)
		}
		if a.delay > 0 {
			select {
			case <-time.After(a.delay):
			case <-rc.stop:
			case <-r.Context().Done():
			}
		}
		for k, v := range a.headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(func() {
		close(rc.stop)
		rc.Server.Close()
	})
	return rc
}

// requests returns a copy of what the receiver got so far.
func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// waitRequests waits until the receiver got at least n requests.
func (rc *receiver) waitRequests(t *testing.T, n int, within time.Duration) []received {
	t.Helper()
	var got []received
	require.Eventually(t, func() bool { got = rc.requests(); return len(got) >= n },
		within, 10*time.Millisecond, "receiver %s: want %d requests", rc.URL, n)
	return got
}

// fastRetry is a retry policy for tests: attempts follow each other within
// a fraction of a second.
var fastRetry = map[string]any{"maxAttempts": 4, "initialInterval": "50ms", "maxInterval": "200ms", "timeout": "2s"}

// register creates a webhook and returns its view (with the secret).
func register(t *testing.T, env *apptest.Env, spec map[string]any) map[string]any {
	t.Helper()
	r := env.Admin("POST", "/v1/_webhooks", spec)
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	v := r.JSON()
	require.Equal(t, "/v1/_webhooks/"+v["id"].(string), r.Header.Get("Location"))
	return v
}

// create adds an item and returns its id.
func create(t *testing.T, env *apptest.Env, key string, n int) string {
	t.Helper()
	r := env.Admin("POST", "/v1/items", map[string]any{"key": key, "n": n})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	return r.JSON()["id"].(string)
}

func patch(t *testing.T, env *apptest.Env, id string, body map[string]any) {
	t.Helper()
	r := env.Admin("PATCH", "/v1/items/"+id, body)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
}

// deliveries reads a webhook's delivery log (newest first).
func deliveries(t *testing.T, env *apptest.Env, hookID, query string) []map[string]any {
	t.Helper()
	r := env.Admin("GET", "/v1/_webhooks/"+hookID+"/deliveries?limit=1000"+query, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var page struct {
		Data []map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &page))
	return page.Data
}

// waitStatuses waits until the webhook has n deliveries, all in status.
func waitStatuses(t *testing.T, env *apptest.Env, hookID string, n int, status string, within time.Duration) []map[string]any {
	t.Helper()
	var ds []map[string]any
	require.Eventually(t, func() bool {
		ds = deliveries(t, env, hookID, "")
		if len(ds) != n {
			return false
		}
		for _, d := range ds {
			if d["status"] != status {
				return false
			}
		}
		return true
	}, within, 20*time.Millisecond, "want %d deliveries %s", n, status)
	return ds
}

// verify checks a request's Standard Webhooks signature with the
// reference library.
func verify(t *testing.T, secret string, r received) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	require.NoError(t, wh.Verify(r.Body, r.Header), "signature of %s", r.Header.Get("webhook-id"))
}

// auditEvents returns the audit log's events, oldest first, raw.
func auditEvents(t *testing.T, env *apptest.Env, query string) []map[string]any {
	t.Helper()
	r := env.Admin("GET", "/v1/_events?limit=1000"+query, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var page struct {
		Data []map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &page))
	return page.Data
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	require.NoError(t, err, "%q", s)
	return n
}

func jsonOf(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m), "%s", b)
	return m
}

func name(t *testing.T) string { return fmt.Sprintf("hook-%d", time.Now().UnixNano()) }
