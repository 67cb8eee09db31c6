package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
)

// TestMetrics: /metrics serves the event and HTTP measurements, without
// credentials, and counts what happened.
func TestMetrics(t *testing.T) {
	env := apptest.Start(t, database.SQLite, shopSchema)
	for _, sku := range []string{"AAA", "BBB"} {
		r := env.Admin("POST", "/v1/products", `{"sku":"`+sku+`","price":1}`)
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	}
	var body string
	require.Eventually(t, func() bool {
		r := env.Do("GET", "/metrics", nil, "bad-token")
		body = string(r.Body)
		return r.Status == http.StatusOK && strings.Contains(body, `herald_events_recorded_total{type="products.created"} 2`)
	}, 10*time.Second, 50*time.Millisecond, "events counted as dispatched: %s", body)
	for _, want := range []string{
		"herald_outbox_lag_seconds",
		"herald_event_dispatch_latency_seconds_count 2",
		`herald_http_requests_total{method="POST",route="/v1/:resource",status="201"} 2`,
		"herald_http_request_duration_seconds_bucket",
		"go_goroutines",
	} {
		require.Contains(t, body, want)
	}
}
