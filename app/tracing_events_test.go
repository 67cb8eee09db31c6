package app_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
)

const tracedSchema = `
resources:
  - name: widgets
    fields:
      - {name: name, type: string, required: true}
`

// TestEventsCarryTraceIDsWhenNotSampled: with a sampler that records
// nothing (OTEL_TRACES_SAMPLER=always_off) and no exporter, every event
// still names its request's trace and span, and a caller's traceparent
// (not sampled either) still ties the event to the caller's trace. Not
// parallel: Herald reads OTEL_* from the process environment.
func TestEventsCarryTraceIDsWhenNotSampled(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	env := apptest.Start(t, database.SQLite, tracedSchema)

	const callerTrace, callerSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	r := env.Admin("POST", "/v1/widgets", map[string]any{"name": "plain"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	r = env.Do("POST", "/v1/widgets", map[string]any{"name": "called"}, apptest.AdminKey,
		"traceparent", "00-"+callerTrace+"-"+callerSpan+"-00")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)

	page := env.Admin("GET", "/v1/_events", nil)
	require.Equal(t, http.StatusOK, page.Status, "%s", page.Body)
	data, _ := page.JSON()["data"].([]any)
	require.Len(t, data, 2)
	var spans []string
	for i, raw := range data {
		tc := raw.(map[string]any)["traceContext"].(map[string]any)
		require.Regexp(t, `^[0-9a-f]{32}$`, tc["traceId"], "event %d", i)
		require.NotEqual(t, "00000000000000000000000000000000", tc["traceId"], "event %d", i)
		require.Regexp(t, `^[0-9a-f]{16}$`, tc["spanId"], "event %d", i)
		require.NotEqual(t, "0000000000000000", tc["spanId"], "event %d", i)
		spans = append(spans, tc["spanId"].(string))
	}
	require.NotEqual(t, spans[0], spans[1], "each request has a span of its own")
	called := data[1].(map[string]any)["traceContext"].(map[string]any)
	require.Equal(t, callerTrace, called["traceId"])
	require.Equal(t, callerSpan, called["parentSpanId"])
	require.NotEqual(t, callerSpan, called["spanId"])
}
