package app_test

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

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

// otlpSpan is what the receiver keeps of a span.
type otlpSpan struct {
	name       string
	id, parent string
	trace      string
	links      []string
	attrs      map[string]string
	start, end uint64
}

// collector is an OTLP/HTTP receiver keeping every span it is sent.
type collector struct {
	mu    sync.Mutex
	spans []otlpSpan
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	if err != nil || r.URL.Path != "/v1/traces" {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := otlpSpan{name: s.GetName(), id: hex.EncodeToString(s.GetSpanId()), parent: hex.EncodeToString(s.GetParentSpanId()),
					trace: hex.EncodeToString(s.GetTraceId()), attrs: map[string]string{}, start: s.GetStartTimeUnixNano(), end: s.GetEndTimeUnixNano()}
				for _, l := range s.GetLinks() {
					sp.links = append(sp.links, hex.EncodeToString(l.GetSpanId()))
				}
				for _, a := range s.GetAttributes() {
					v := a.GetValue()
					switch {
					case v.GetStringValue() != "":
						sp.attrs[a.GetKey()] = v.GetStringValue()
					default:
						sp.attrs[a.GetKey()] = fmt.Sprint(v.GetIntValue())
					}
				}
				c.spans = append(c.spans, sp)
			}
		}
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// only returns the one span named name whose parent is parent ("" for any).
func (c *collector) only(t *testing.T, name, parent string) otlpSpan {
	t.Helper()
	var found []otlpSpan
	for _, s := range c.spans {
		if s.name == name && (parent == "" || s.parent == parent) {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "%s under %s", name, parent)
	return found[0]
}

// TestWriteTraceExported: a create, exported over OTLP/HTTP as configured
// by the OTEL_* variables, arrives as one trace that shows where the write
// spent its time: the request span named by its route, the write's queue
// wait, its own INSERT, its wait for the batch, and the batch with the
// events flush and the COMMIT. The event names the request's span. Not
// parallel: Herald reads OTEL_* from the process environment.
func TestWriteTraceExported(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	t.Cleanup(srv.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_TRACES_SAMPLER", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	env := apptest.Start(t, database.SQLite, tracedSchema)
	r := env.Admin("POST", "/v1/widgets", map[string]any{"name": "traced"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	page := env.Admin("GET", "/v1/_events", nil)
	require.Equal(t, http.StatusOK, page.Status)
	ev := page.JSON()["data"].([]any)[0].(map[string]any)["traceContext"].(map[string]any)
	env.Stop() // flushes the spans

	col.mu.Lock()
	defer col.mu.Unlock()
	server := col.only(t, "POST /v1/:resource", "")
	require.Equal(t, "/v1/:resource", server.attrs["http.route"])
	require.Equal(t, server.trace, ev["traceId"])
	require.Equal(t, server.id, ev["spanId"], "the event names the request's span")
	write := col.only(t, "herald.write", server.id)
	queue := col.only(t, "herald.write.queue", write.id)
	op := col.only(t, "herald.write.op", write.id)
	col.only(t, "INSERT widgets", op.id)
	wait := col.only(t, "herald.write.commit", write.id)
	batch := col.only(t, "herald.write.batch", write.id)
	require.Equal(t, []string{write.id}, batch.links)
	require.Equal(t, []string{batch.id}, wait.links)
	require.NotEmpty(t, batch.attrs["herald.write.batch.size"]) // background writes may share the batch, untraced
	flush := col.only(t, "herald.events.flush", batch.id)
	insert := col.only(t, "INSERT herald_events", flush.id)
	require.Equal(t, "herald_events", insert.attrs["db.collection.name"])
	require.Equal(t, "sqlite", insert.attrs["db.system.name"])
	commit := col.only(t, "COMMIT", batch.id)
	// The children account for the write in order.
	require.LessOrEqual(t, queue.end, op.start)
	require.LessOrEqual(t, op.end, wait.start)
	require.LessOrEqual(t, flush.end, commit.start)
	require.LessOrEqual(t, commit.end, wait.end)
	require.LessOrEqual(t, wait.end, write.end)
	require.LessOrEqual(t, write.end, server.end)
}
