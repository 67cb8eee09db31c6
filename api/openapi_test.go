package api_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dev/herald/api"
	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/auth"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/resources"
	"github.com/herald-dev/herald/webhooks"
)

const openAPIPath = "../openapi.yaml"

const openAPIAdminKey = "test-admin-key"

// openAPIServer builds a server without a store, with every optional route
// (/metrics) switched on. verifier may be nil.
func openAPIServer(t *testing.T, ready func(context.Context) error, verifier api.TokenVerifier) *api.Server {
	t.Helper()
	srv, err := api.New(api.Config{
		AdminKeyHash: sha256.Sum256([]byte(openAPIAdminKey)), MaxBody: 16, Ready: ready,
		Metrics: prometheus.NewRegistry(), Verifier: verifier,
		Console: fstest.MapFS{"index.html": {Data: []byte("<!doctype html>")}},
	}, nil, nil)
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	return srv
}

// liveOperations returns the server's routes as OpenAPI path -> sorted
// methods, leaving out echo's internal routes.
func liveOperations(srv *api.Server) map[string][]string {
	ops := map[string][]string{}
	for _, r := range srv.Routes() {
		method, path := r[0], r[1]
		if path == "/_/*" {
			path = "/_/" // the console's page; its files are described there
		}
		if strings.HasPrefix(method, "echo_") || strings.HasSuffix(path, "/*") || path == "*" || path == "/_" {
			continue
		}
		segs := strings.Split(path, "/")
		for i, seg := range segs {
			if name, ok := strings.CutPrefix(seg, ":"); ok {
				segs[i] = "{" + name + "}"
			}
		}
		path = strings.Join(segs, "/")
		if !slices.Contains(ops[path], method) {
			ops[path] = append(ops[path], method)
		}
	}
	for path := range ops {
		slices.Sort(ops[path])
	}
	return ops
}

// loadOpenAPI loads and validates openapi.yaml, failing the test when it is
// not a valid OpenAPI 3.1 document (examples included).
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(openAPIPath)
	if err != nil {
		t.Fatalf("load %s: %v", openAPIPath, err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("validate %s: %v", openAPIPath, err)
	}
	return doc
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)

	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	if doc.Info == nil || !strings.Contains(doc.Info.Description, "/v1/_openapi") {
		t.Errorf("info.description should point to GET /v1/_openapi for per-resource schemas")
	}

	// The document and the live router must list the same operations.
	got := map[string][]string{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			got[path] = append(got[path], method)
		}
		slices.Sort(got[path])
	}
	live := liveOperations(openAPIServer(t, nil, nil))
	if len(live) == 0 {
		t.Fatal("Server.Routes lists no routes")
	}
	for path, want := range live {
		if !slices.Equal(got[path], want) {
			t.Errorf("path %s: documented operations %v, served %v", path, got[path], want)
		}
	}
	for path, methods := range got {
		if _, ok := live[path]; !ok {
			t.Errorf("path %s %v is documented but not served", path, methods)
		}
	}
	// HEAD is served as GET (rewritten before routing): no route, no
	// operation, but the document says so.
	if !strings.Contains(doc.Info.Description, "`HEAD` works wherever `GET` does") {
		t.Errorf("info.description should say that HEAD works wherever GET does")
	}

	// The generic filters pseudo-parameter must serialise as price__gte=5,
	// not filters[price__gte]=5, and point to the runtime document.
	filters := doc.Components.Parameters["Filters"]
	if filters == nil {
		t.Fatal("components.parameters.Filters is missing")
	}
	f := filters.Value
	if f.In != "query" || f.Style != "form" || f.Explode == nil || !*f.Explode ||
		f.Schema == nil || !f.Schema.Value.Type.Is("object") {
		t.Errorf("Filters: in %q, style %q, explode %v: want an exploded form-style query object", f.In, f.Style, f.Explode)
	}
	if !strings.Contains(f.Description, "/v1/_openapi") {
		t.Errorf("Filters: the description should say that GET /v1/_openapi declares the real parameters")
	}
}

// TestOpenAPIResponsesCarryRequestIDAndProblems checks two promises that hold
// for every route: each answer has X-Request-ID and X-Correlation-ID, and
// each error answer is application/problem+json.
func TestOpenAPIResponsesCarryRequestIDAndProblems(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	problem := doc.Components.Schemas["Problem"]
	if problem == nil {
		t.Fatal("components.schemas.Problem is missing")
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Responses == nil || op.Responses.Len() == 0 {
				t.Errorf("%s %s: no responses", method, path)
				continue
			}
			for status, ref := range op.Responses.Map() {
				where := method + " " + path + " " + status
				resp := ref.Value
				if resp.Headers["X-Request-ID"] == nil {
					t.Errorf("%s: no X-Request-ID header", where)
				}
				if resp.Headers["X-Correlation-ID"] == nil {
					t.Errorf("%s: no X-Correlation-ID header", where)
				}
				if status != "default" && status < "400" {
					continue
				}
				mt := resp.Content.Get("application/problem+json")
				if mt == nil || mt.Schema == nil || mt.Schema.Value != problem.Value {
					t.Errorf("%s: error answer is not an application/problem+json Problem", where)
				}
			}
		}
	}
}

// TestOpenAPISchemasMatchGoTypes validates what the Go types really marshal
// to against the document's component schemas, so the two cannot drift.
func TestOpenAPISchemasMatchGoTypes(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)

	demo, err := os.ReadFile("../herald.yaml")
	if err != nil {
		t.Fatalf("read demo schema: %v", err)
	}
	schema, err := resources.ParseSchema(demo)
	if err != nil {
		t.Fatalf("parse demo schema: %v", err)
	}
	next := "eyJ2IjpbXX0"
	id := "0192f7a4-6b1e-7c3a-9d7e-2f9a1c0b5e11"
	row := resources.Row{
		"id": id, "name": "Ada", "created_at": "2026-11-22T10:15:30.123456Z",
		"updated_at": "2026-11-22T10:15:30.123456Z", "deleted_at": nil,
		"expand": map[string]any{"customer_id": nil},
	}

	// Events as the audit API and history answer them: a create not yet
	// dispatched, a dispatched update with a full trace context, and a
	// delete as a reader's history shows it (userId null, fields dropped).
	at := time.Date(2026, 11, 22, 10, 15, 30, 123456000, time.UTC)
	dispatched := at.Add(1525 * time.Microsecond)
	eventNext := "1042"
	created := events.Event{ID: 1041, EventID: id, EventType: "customers.created", ResourceName: "customers",
		ResourceID: id, CreatedAt: at,
		Data: events.Data{New: map[string]any{"id": id, "name": "Ada"}, Changes: events.Changes{
			Added: []string{"id", "name"}, Updated: []string{}, Removed: []string{}}},
		SessionVariables: map[string]any{"role": "admin", "ip": "203.0.113.9", "userAgent": "curl/8.5"},
		TraceContext:     events.TraceContext{RequestID: id, CorrelationID: id}}
	updated := events.Event{ID: 1042, EventID: id, EventType: "customers.updated", ResourceName: "customers",
		ResourceID: id, CreatedAt: at, DispatchedAt: &dispatched,
		Data: events.Data{Old: map[string]any{"id": id, "name": "Ada"}, New: map[string]any{"id": id, "name": "Ada King"},
			Changes: events.Changes{Added: []string{}, Updated: []string{"name"}, Removed: []string{}}},
		SessionVariables: map[string]any{"userId": "u-1", "role": "user", "tenant": 7},
		TraceContext: events.TraceContext{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
			ParentSpanID: "b7ad6b7169203331", RequestID: id, CorrelationID: "c-1"}}
	deleted := events.Event{ID: 9_007_199_254_740_993, EventID: id, EventType: "customers.deleted", ResourceName: "customers",
		ResourceID: id, CreatedAt: at, DispatchedAt: &dispatched,
		Data: events.Data{Old: map[string]any{"name": "Ada King"}, Changes: events.Changes{
			Added: []string{}, Updated: []string{}, Removed: []string{"name"}}},
		SessionVariables: map[string]any{"userId": nil, "role": "admin"}}
	yes := true
	classified := events.Event{ID: 1043, EventID: id, EventType: "customers.classified", ResourceName: "customers",
		ResourceID: id, CreatedAt: at, DispatchedAt: &dispatched,
		Data: events.Data{Old: map[string]any{"id": id, "name": "Ada"}, New: map[string]any{"id": id, "name": "Ada"},
			Changes:        events.Changes{Added: []string{}, Updated: []string{}, Removed: []string{}},
			Classification: &events.Transition{Name: "is_adult", To: &yes}},
		SessionVariables: map[string]any{"role": "system"}}

	// Webhooks as the admin API answers them: a new one with its secret,
	// and one Herald disabled, with basic auth. Durations are printed by
	// time.Duration, as the service does.
	hookID := "0192f7a4-7d2c-7a10-8e3b-5c1d2e3f4a5b"
	retry := webhooks.Retry{MaxAttempts: 8, InitialInterval: (5 * time.Second).String(),
		MaxInterval: time.Hour.String(), Timeout: (1500 * time.Millisecond).String()}
	hook := webhooks.View{ID: hookID, Name: "crm-sync", URL: "https://crm.example.com/hooks/herald", Resource: "contracts",
		Events: []string{"created", "updated", "deleted"}, Fields: []string{"status"}, Related: []string{"orders"},
		Format: webhooks.FormatEvent,
		Auth:   webhooks.AuthView{Type: webhooks.AuthHMAC}, Headers: map[string]string{"X-Tenant": "acme"}, Retry: retry,
		RateLimit: 2.5, Enabled: true, CreatedAt: at, UpdatedAt: at,
		Secret: "whsec_q4Hn5fqcG6lSU0cyG5UKqdQE2HR9l2YlOaZdV2jQTXI="}
	disabled := webhooks.View{ID: hookID, Name: "ids", URL: "http://10.0.0.5:8080/in", Resource: "*",
		Events: []string{"created"}, Fields: []string{}, Related: []string{}, Format: webhooks.FormatIDs,
		Auth: webhooks.AuthView{Type: webhooks.AuthBasic, Username: "herald"}, Headers: map[string]string{}, Retry: retry,
		Ordered: true, Paused: true, DisabledReason: "the endpoint answered 410 Gone", CreatedAt: at, UpdatedAt: dispatched}

	// Deliveries: a queued ping, and a dead one whose attempts got an
	// answer, then none.
	ping := webhooks.DeliveryView{ID: "4812", WebhookID: hookID, EventID: id, EventType: "webhook.ping",
		Status: webhooks.StatusPending, NextAttemptAt: &at, CreatedAt: at, UpdatedAt: at, AttemptLog: []webhooks.Attempt{},
		Payload: json.RawMessage(`{"type":"webhook.ping","webhookId":"` + hookID + `","timestamp":"2026-11-22T10:15:30.123456Z"}`)}
	dead := webhooks.DeliveryView{ID: "4811", WebhookID: hookID, EventID: id, EventType: "customers.updated",
		ResourceName: "customers", ResourceID: id, Status: webhooks.StatusDead, Attempts: 2, CreatedAt: at, UpdatedAt: dispatched,
		AttemptLog: []webhooks.Attempt{
			{Attempt: 1, At: at, StatusCode: 503, LatencyMS: 12.345, Response: "busy",
				ResponseHeaders: map[string]string{"Retry-After": "3", "Set-Cookie": "***"}},
			{Attempt: 2, At: dispatched, LatencyMS: 30000, Error: "context deadline exceeded"},
		},
		Payload: json.RawMessage(`{"hook_id":"` + hookID + `","rows":["` + id + `"]}`)}
	deliveryNext := "4811"
	deliveries := webhooks.DeliveryPage{Data: []webhooks.DeliveryView{ping, dead}}
	deliveries.Meta.Next = &deliveryNext

	cases := []struct {
		schema string
		value  any
	}{
		{"RegistrySchema", schema},
		{"RegistrySchema", &resources.Schema{}},
		{"ApplyResult", &resources.ApplyResult{Applied: true, Version: 2, Changes: []resources.Change{
			{Op: "addField", Resource: "customers", Field: "email"},
			{Op: "dropResource", Resource: "legacy", Destructive: true},
			{Op: "alterClassification", Resource: "customers", Field: "is_adult", Detail: "expression changed"},
		}}},
		{"RecordList", &resources.ListResult{Data: []resources.Row{row},
			Meta: resources.ListMeta{Limit: 50, Total: 1, Next: &next}}},
		{"RecordList", &resources.ListResult{Data: []resources.Row{}, Meta: resources.ListMeta{Limit: 50}}},
		{"Record", row},
		{"RecordBatch", map[string]any{"data": []resources.Row{row}}},
		{"Event", created},
		{"Event", updated},
		{"Event", deleted},
		{"Event", classified},
		{"Webhook", webhooks.View{ID: hookID, Name: "adults", URL: "https://crm.example.com/hooks/adults", Resource: "customers",
			Events: []string{"created", "updated", "deleted"}, Fields: []string{}, Related: []string{},
			Classification: &webhooks.ClassificationFilter{Name: "is_adult", From: "false", To: "true"},
			Format:         webhooks.FormatHasura, Auth: webhooks.AuthView{Type: webhooks.AuthNone}, Headers: map[string]string{},
			Retry: retry, Enabled: true, CreatedAt: at, UpdatedAt: at}},
		{"EventPage", &events.Page{Data: []events.Event{created, updated, deleted}, Meta: events.PageMeta{Next: &eventNext}}},
		{"EventPage", &events.Page{Data: []events.Event{}}},
		{"Webhook", hook},
		{"Webhook", disabled},
		{"WebhookList", map[string]any{"data": []webhooks.View{hook, disabled}}},
		{"WebhookList", map[string]any{"data": []webhooks.View{}}},
		{"Delivery", ping},
		{"Delivery", dead},
		{"DeliveryPage", &deliveries},
		{"DeliveryPage", &webhooks.DeliveryPage{Data: []webhooks.DeliveryView{}}},
		{"InvokeResult", &webhooks.InvokeResult{EventID: id}},
		{"ReplayResult", &webhooks.ReplayResult{Queued: 3}},
		{"Problem", &api.Problem{Type: "https://herald.dev/problems/validation", Title: "Invalid record",
			Status: 422, Detail: "one or more fields are invalid", Instance: "/v1/customers", RequestID: id,
			Errors: []resources.Problem{{Field: "email", Rule: "email", Message: "must be an email address"}}}},
	}
	for _, tc := range cases {
		ref := doc.Components.Schemas[tc.schema]
		if ref == nil {
			t.Fatalf("components.schemas.%s is missing", tc.schema)
		}
		b, err := json.Marshal(tc.value)
		if err != nil {
			t.Fatalf("marshal %T: %v", tc.value, err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("unmarshal %T: %v", tc.value, err)
		}
		if err := ref.Value.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
			t.Errorf("%T does not match %s: %v\n%s", tc.value, tc.schema, err, b)
		}
	}

	// The schema component must reject what ParseSchema rejects as unknown.
	bad := map[string]any{"resources": []any{}, "resourcez": []any{}}
	if err := doc.Components.Schemas["RegistrySchema"].Value.VisitJSON(bad, openapi3.EnableJSONSchema2020()); err == nil {
		t.Errorf("RegistrySchema accepts an unknown top-level key")
	}
}

// TestOpenAPIEventStreamExamples checks the text/event-stream examples
// frame by frame: the retry hint first, and each event's data exactly what
// the events.Event type encodes (as the stream sends it), matching the
// Event schema, with its id and type on the id: and event: lines.
func TestOpenAPIEventStreamExamples(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	resp := doc.Components.Responses["EventStream"]
	if resp == nil || resp.Value.Content.Get("text/event-stream") == nil {
		t.Fatal("components.responses.EventStream has no text/event-stream content")
	}
	mt := resp.Value.Content.Get("text/event-stream")
	if len(mt.Examples) == 0 {
		t.Fatal("EventStream has no examples")
	}
	schema := doc.Components.Schemas["Event"].Value
	for name, ex := range mt.Examples {
		text, ok := ex.Value.Value.(string)
		if !ok || !strings.HasSuffix(text, "\n\n") {
			t.Errorf("%s: not a string of blocks ending with a blank line", name)
			continue
		}
		blocks := strings.Split(strings.TrimSuffix(text, "\n\n"), "\n\n")
		if blocks[0] != "retry: 2000" {
			t.Errorf("%s: first block %q, want the retry hint", name, blocks[0])
		}
		for _, block := range blocks[1:] {
			f := map[string]string{}
			for _, line := range strings.Split(block, "\n") {
				if strings.HasPrefix(line, ":") {
					continue // a comment
				}
				k, v, ok := strings.Cut(line, ": ")
				if !ok || f[k] != "" {
					t.Errorf("%s: bad line %q", name, line)
				}
				f[k] = v
			}
			switch {
			case f["event"] == "reset":
				var reset map[string]string
				if err := json.Unmarshal([]byte(f["data"]), &reset); err != nil || len(reset) != 2 ||
					reset["lastEventId"] == "" || reset["removedThrough"] == "" || f["id"] != "" {
					t.Errorf("%s: bad reset frame %q", name, block)
				}
			case f["data"] != "":
				var e events.Event
				if err := json.Unmarshal([]byte(f["data"]), &e); err != nil {
					t.Errorf("%s: data is not an event: %v", name, err)
					continue
				}
				b, _ := json.Marshal(&e)
				if string(b) != f["data"] {
					t.Errorf("%s: data is not as the stream encodes it:\n got %s\nwant %s", name, f["data"], b)
				}
				var v any
				_ = json.Unmarshal(b, &v)
				if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
					t.Errorf("%s: data does not match Event: %v", name, err)
				}
				if f["id"] != fmt.Sprint(e.ID) || f["event"] != e.EventType {
					t.Errorf("%s: id %q, event %q for event %d of type %s", name, f["id"], f["event"], e.ID, e.EventType)
				}
			case f["retry"] == "" && block != ": keep-alive":
				t.Errorf("%s: unexpected block %q", name, block)
			}
		}
	}
}

// TestOpenAPILiveResponses sends requests that the server answers before it
// needs a store and validates the real answers against the document.
func TestOpenAPILiveResponses(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	const adminKey = openAPIAdminKey
	ready := openAPIServer(t, nil, openAPIVerifier{})
	notReady := openAPIServer(t, func(context.Context) error { return errors.New("database down") }, nil)

	cases := []struct {
		name   string
		srv    http.Handler
		method string
		path   string
		auth   string
		ctype  string
		body   string
		status int
	}{
		{"healthz", ready, http.MethodGet, "/healthz", "", "", "", http.StatusOK},
		{"readyz", ready, http.MethodGet, "/readyz", "", "", "", http.StatusOK},
		{"readyz not ready", notReady, http.MethodGet, "/readyz", "", "", "", http.StatusServiceUnavailable},
		{"registry without key", ready, http.MethodGet, "/v1/_registry", "", "", "", http.StatusUnauthorized},
		{"list with bad token", ready, http.MethodGet, "/v1/customers", "Bearer nope", "", "", http.StatusUnauthorized},
		{"import too large", ready, http.MethodPost, "/v1/_registry/import", "Bearer " + adminKey,
			"application/yaml", "resources: [{name: customers, fields: []}]", http.StatusRequestEntityTooLarge},
		{"metrics", ready, http.MethodGet, "/metrics", "", "", "", http.StatusOK},
		{"list with keys unavailable", ready, http.MethodGet, "/v1/customers", "Bearer keys-down", "", "", http.StatusServiceUnavailable},
		{"events without key", ready, http.MethodGet, "/v1/_events", "", "", "", http.StatusUnauthorized},
		{"events as a user", ready, http.MethodGet, "/v1/_events?type=created", "Bearer user", "", "", http.StatusForbidden},
		{"events with bad limit", ready, http.MethodGet, "/v1/_events?limit=1001", "Bearer " + adminKey, "", "", http.StatusBadRequest},
		{"events with bad since", ready, http.MethodGet, "/v1/_events?since=yesterday", "Bearer " + adminKey, "", "", http.StatusBadRequest},
		{"event as a user", ready, http.MethodGet, "/v1/_events/0192f7a4-6b1e-7c3a-9d7e-2f9a1c0b5e11", "Bearer user", "", "", http.StatusForbidden},
		{"webhooks without key", ready, http.MethodGet, "/v1/_webhooks", "", "", "", http.StatusUnauthorized},
		{"webhook as a user", ready, http.MethodPatch, "/v1/_webhooks/0192f7a4-7d2c-7a10-8e3b-5c1d2e3f4a5b", "Bearer user",
			"application/json", `{"paused": true}`, http.StatusForbidden},
		{"deliveries as a user", ready, http.MethodGet, "/v1/_webhooks/0192f7a4-7d2c-7a10-8e3b-5c1d2e3f4a5b/deliveries?status=dead",
			"Bearer user", "", "", http.StatusForbidden},
		{"redeliver without key", ready, http.MethodPost, "/v1/_deliveries/4812/redeliver", "", "", "", http.StatusUnauthorized},
		{"history with bad token", ready, http.MethodGet, "/v1/customers/0192f7a4-6b1e-7c3a-9d7e-2f9a1c0b5e11/history", "Bearer nope", "", "", http.StatusUnauthorized},
		// Streams: only answers given before the store or the hub is needed.
		{"stream with bad token", ready, http.MethodGet, "/v1/customers/stream", "Bearer nope", "", "", http.StatusUnauthorized},
		{"stream with bad access_token", ready, http.MethodGet, "/v1/customers/stream?access_token=nope", "", "", "", http.StatusUnauthorized},
		{"stream with unknown parameter", ready, http.MethodGet, "/v1/customers/stream?colour=red", "", "", "", http.StatusBadRequest},
		{"events stream without key", ready, http.MethodGet, "/v1/_events/stream", "", "", "", http.StatusUnauthorized},
		{"events stream as a user", ready, http.MethodGet, "/v1/_events/stream?access_token=user", "", "", "", http.StatusForbidden},
		{"events stream with unknown parameter", ready, http.MethodGet, "/v1/_events/stream?type=created", "Bearer " + adminKey, "", "", http.StatusBadRequest},
		{"events stream with bad lastEventId", ready, http.MethodGet, "/v1/_events/stream?lastEventId=-1", "Bearer " + adminKey, "", "", http.StatusBadRequest},
		{"events stream without a hub", ready, http.MethodGet, "/v1/_events/stream?types=orders.created,deleted", "Bearer " + adminKey, "", "", http.StatusServiceUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "http://localhost:8080"+tc.path, strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			rec := httptest.NewRecorder()
			tc.srv.ServeHTTP(rec, req)
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, body)
			}

			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("find route: %v", err)
			}
			// Fixed paths (/v1/_events...) must not be taken for resources.
			if strings.HasPrefix(tc.path, "/v1/_") && strings.Contains(route.Path, "{resource}") {
				t.Fatalf("%s matched %s", tc.path, route.Path)
			}
			// Nor /stream for an id.
			if strings.HasSuffix(req.URL.Path, "/stream") && !strings.HasSuffix(route.Path, "/stream") {
				t.Fatalf("%s matched %s", tc.path, route.Path)
			}
			in := &openapi3filter.ResponseValidationInput{
				RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
				Status:                 res.StatusCode,
				Header:                 res.Header,
				Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
			}
			in.SetBodyBytes(body)
			if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
				t.Errorf("answer does not match openapi.yaml: %v\n%s", err, body)
			}
		})
	}
}

// openAPIVerifier accepts the token "user" as role user, fails "keys-down"
// as a JWKS outage, and rejects anything else.
type openAPIVerifier struct{}

func (openAPIVerifier) Verify(_ context.Context, token string) (*auth.Principal, error) {
	switch token {
	case "user":
		return &auth.Principal{UserID: "u-1", Role: "user"}, nil
	case "keys-down":
		return nil, fmt.Errorf("jwks: %w", auth.ErrKeysUnavailable)
	}
	return nil, errors.New("invalid token")
}

// openAPILiveSchema is the schema of TestOpenAPILiveStore. products has a
// json field named data, so that a record can look like a bulk answer's
// envelope; users read and create products but see only sku and price (not
// even id); the public role reads customers' names.
const openAPILiveSchema = `
resources:
  - name: customers
    softDelete: true
    fields:
      - {name: name, type: string, required: true, sortable: true, filterable: true}
      - {name: email, type: string, required: true, unique: true, validations: [{rule: email}]}
      - {name: tier, type: enum, enumValues: [free, pro], default: free, filterable: true}
  - name: products
    fields:
      - {name: sku, type: string, required: true, unique: true}
      - {name: price, type: number, required: true, sortable: true, filterable: true, validations: [{rule: min, value: 0}]}
      - {name: data, type: json}
  - name: orders
    fields:
      - {name: customer_id, type: relation, required: true, relation: {resource: customers, onDelete: restrict}}
      - {name: quantity, type: integer, required: true, validations: [{rule: min, value: 1}]}
permissions:
  - {resource: products, role: user, action: read, fields: [sku, price]}
  - {resource: products, role: user, action: create, fields: [sku, price]}
  - {resource: customers, role: public, action: read, fields: [name]}
`

// uuidFormat validates `format: uuid` by RFC 9562, which admits the
// UUIDv7 Herald generates; kin-openapi's RFC 4122 pattern refuses versions
// 6 to 8. It is passed per validation, not registered globally, so that
// parallel tests share no mutable state.
var uuidFormat = openapi3.WithStringFormatValidator("uuid",
	openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562))

// openAPIChecker validates live answers against openapi.yaml and counts
// those it validated, by operation and by status, so that the test can
// prove the validator ran on every documented operation.
type openAPIChecker struct {
	doc       *openapi3.T
	router    routers.Router
	validated map[string]int // "GET /v1/{resource}/{id}" -> answers validated
	statuses  map[int]int    // status -> answers validated
	frames    int            // stream frames validated against Event
	total     int
}

func newOpenAPIChecker(t *testing.T, doc *openapi3.T) *openAPIChecker {
	t.Helper()
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return &openAPIChecker{doc: doc, router: router, validated: map[string]int{}, statuses: map[int]int{}}
}

// check validates one answer to method target (path and query, as sent)
// against the document and returns the operation it matched. The status
// must be documented for the operation (not only caught by `default`).
// HEAD answers are checked as GET answers without a body; 304 answers,
// which kin-openapi does not validate, get their documented headers
// checked here.
func (c *openAPIChecker) check(method, target string, status int, header http.Header, body []byte) (string, error) {
	req := httptest.NewRequest(method, "http://localhost:8080"+target, nil)
	head := method == http.MethodHead
	if head {
		req.Method = http.MethodGet // HEAD is served as GET, and documented so
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		return "", fmt.Errorf("find route: %w", err)
	}
	op := req.Method + " " + route.Path
	ref := route.Operation.Responses.Status(status)
	if ref == nil {
		return op, fmt.Errorf("status %d is not documented for %s", status, op)
	}
	if (head || status == http.StatusNotModified) && len(body) != 0 {
		return op, fmt.Errorf("a %s answer with status %d has a body of %d bytes", method, status, len(body))
	}
	vopts := []openapi3.SchemaValidationOption{uuidFormat, openapi3.EnableJSONSchema2020()}
	if status == http.StatusNotModified {
		if len(ref.Value.Content) != 0 {
			return op, fmt.Errorf("the document gives a 304 of %s a body", op)
		}
		for name, h := range ref.Value.Headers {
			v := header.Get(name)
			if v == "" {
				if h.Value.Required {
					return op, fmt.Errorf("304: no %s header", name)
				}
				continue
			}
			if err := h.Value.Schema.Value.VisitJSON(v, vopts...); err != nil {
				return op, fmt.Errorf("304: header %s: %w", name, err)
			}
		}
		return op, nil
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{uuidFormat}}
	if ct := header.Get("Content-Type"); head || strings.HasPrefix(ct, "text/event-stream") || strings.HasPrefix(ct, "text/html") {
		// No body, an endless stream whose frames are checked apart, or
		// the console's page (a string: kin-openapi decodes no HTML).
		opts.ExcludeResponseBody = true
		if !head && ref.Value.Content.Get(ct) == nil {
			return op, fmt.Errorf("content type %q is not documented", ct)
		}
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                opts,
	}
	in.SetBodyBytes(body)
	return op, openapi3filter.ValidateResponse(context.Background(), in)
}

// record checks an answer and counts it when it matches the document.
func (c *openAPIChecker) record(t *testing.T, method, target string, r *apptest.Response) {
	t.Helper()
	op, err := c.check(method, target, r.Status, r.Header, r.Body)
	if err != nil {
		t.Errorf("%s %s answered %d, which does not match openapi.yaml (%s): %v\n%s", method, target, r.Status, op, err, r.Body)
		return
	}
	c.validated[op]++
	c.statuses[r.Status]++
	c.total++
}

// send sends a request to env and checks the answer against the document.
// hdr are header name, value pairs; a Content-Type of "" sends none (a
// body is otherwise sent as application/json).
func (c *openAPIChecker) send(t *testing.T, env *apptest.Env, method, target, token, body string, hdr ...string) *apptest.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, env.Server.URL+target, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	raw, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: read the answer: %v", method, target, err)
	}
	r := &apptest.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	c.record(t, method, target, r)
	return r
}

// do is send that also requires the status.
func (c *openAPIChecker) do(t *testing.T, env *apptest.Env, want int, method, target, token, body string, hdr ...string) *apptest.Response {
	t.Helper()
	r := c.send(t, env, method, target, token, body, hdr...)
	if r.Status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, target, r.Status, want, r.Body)
	}
	return r
}

// stream opens an event stream, reads it up to its first event frame and
// hangs up. It checks the answer's headers against the document, the retry
// hint first, and the frame's data against the Event schema.
func (c *openAPIChecker) stream(t *testing.T, env *apptest.Env, target, token string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.Server.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: status %d: %s", target, resp.StatusCode, body)
	}
	c.record(t, http.MethodGet, target, &apptest.Response{Status: resp.StatusCode, Header: resp.Header})
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var lines []string
	var data, id string
	for data == "" && sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			id = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			data = v
		}
	}
	if data == "" {
		t.Fatalf("GET %s: no event frame (%v): %q", target, sc.Err(), lines)
	}
	if lines[0] != "retry: 2000" {
		t.Errorf("GET %s: first line %q, want the retry hint", target, lines[0])
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("GET %s: data is not JSON: %v", target, err)
	}
	if v["id"] != id {
		t.Errorf("GET %s: frame id %q, event id %v", target, id, v["id"])
	}
	schema := c.doc.Components.Schemas["Event"].Value
	if err := schema.VisitJSON(v, uuidFormat, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
		t.Errorf("GET %s: frame data does not match Event: %v\n%s", target, err, data)
		return
	}
	c.frames++
}

// TestOpenAPILiveStore runs a real Herald on SQLite (store, events,
// webhook deliveries to a local receiver) and validates the answers of
// every documented operation against openapi.yaml, successes and errors
// alike, with kin-openapi's openapi3filter.ValidateResponse. It ends by
// checking that every documented operation had answers validated (so a
// route the test forgot, or one the router matched wrongly, fails it) and
// that deliberately wrong answers are refused (so a validator that accepts
// everything fails it too).
func TestOpenAPILiveStore(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	c := newOpenAPIChecker(t, doc)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)
	env := apptest.Start(t, database.SQLite, openAPILiveSchema, func(cfg *app.Config) {
		cfg.JWTSecret = jwtSecret
		cfg.WebhookAllowPrivate = true
		cfg.MaxBody = 16 << 10
	})
	admin := apptest.AdminKey
	user := signHS256(t, jwtSecret, jwt.MapClaims{"sub": userU1, "role": "user"})
	do := func(t *testing.T, want int, method, target, token, body string, hdr ...string) *apptest.Response {
		t.Helper()
		return c.do(t, env, want, method, target, token, body, hdr...)
	}
	idOf := func(t *testing.T, r *apptest.Response) string {
		t.Helper()
		id, _ := r.JSON()["id"].(string)
		if id == "" {
			t.Fatalf("no id in %s", r.Body)
		}
		return id
	}
	strongTag := regexp.MustCompile(`^"[!#-~]*"$`)
	etag := func(t *testing.T, r *apptest.Response) string {
		t.Helper()
		tag := r.Header.Get("ETag")
		if !strongTag.MatchString(tag) {
			t.Fatalf("ETag %q is not a strong entity tag", tag)
		}
		return tag
	}
	// The fixtures the sub-cases share.
	var ada, bob, mug, order, hook, delivery, eventID string
	var mugTag string
	const missing = "01900000-0000-7000-8000-000000000000"
	big := `{"sku":"BIG","price":1,"data":"` + strings.Repeat("x", 20<<10) + `"}`

	t.Run("operations", func(t *testing.T) {
		do(t, 200, "GET", "/healthz", "", "")
		do(t, 200, "HEAD", "/healthz", "", "")
		do(t, 400, "GET", "/healthz?a=%zz", "", "")
		do(t, 200, "GET", "/readyz", "", "")
		do(t, 200, "GET", "/metrics", "", "")
		do(t, 200, "GET", "/metrics", "nope", "") // probes and metrics ignore credentials
		do(t, 200, "GET", "/_/", "", "")
		do(t, 200, "GET", "/_/", "nope", "") // the console's files too
		do(t, 200, "HEAD", "/_/", "", "")
	})

	t.Run("records", func(t *testing.T) {
		r := do(t, 201, "POST", "/v1/customers", admin, `{"name":"Ada","email":"ada@example.com"}`)
		ada = idOf(t, r)
		if r.Header.Get("Location") != "/v1/customers/"+ada {
			t.Errorf("Location %q", r.Header.Get("Location"))
		}
		etag(t, r)
		// No Content-Type: read as JSON.
		bob = idOf(t, do(t, 201, "POST", "/v1/customers", admin, `{"name":"Bob","email":"bob@example.com","tier":"pro"}`,
			"Content-Type", ""))
		// A record whose json field named data holds an array is a record.
		r = do(t, 201, "POST", "/v1/products", admin, `{"sku":"MUG","price":9.5,"data":[1,2]}`,
			"Content-Type", "application/json; charset=utf-8")
		mug, mugTag = idOf(t, r), etag(t, r)
		// +json types are JSON.
		order = idOf(t, do(t, 201, "POST", "/v1/orders", admin, `{"customer_id":"`+ada+`","quantity":2}`,
			"Content-Type", "application/vnd.herald+json"))
		// A bulk create answers {"data": [...]} in the body's order.
		r = do(t, 201, "POST", "/v1/products", admin, `[{"sku":"AAA","price":1,"data":[{"x":1}]},{"sku":"BBB","price":2}]`)
		var batch struct{ Data []map[string]any }
		if err := json.Unmarshal(r.Body, &batch); err != nil || len(batch.Data) != 2 ||
			batch.Data[0]["sku"] != "AAA" || batch.Data[1]["sku"] != "BBB" {
			t.Errorf("bulk answer %s", r.Body)
		}
		if r.Header.Get("Location") != "" {
			t.Errorf("a bulk create answered Location %q", r.Header.Get("Location"))
		}
		// A user reads sku and price, and the system columns every role reads.
		r = do(t, 201, "POST", "/v1/products", user, `{"sku":"USR","price":3}`)
		if m := r.JSON(); len(m) != 5 || m["id"] == nil || m["data"] != nil {
			t.Errorf("the user's answer is not its projection: %s", r.Body)
		}
		do(t, 201, "POST", "/v1/products", user, `[{"sku":"US1","price":3},{"sku":"US2","price":4}]`)

		// Reads, conditional reads and HEAD.
		r = do(t, 200, "GET", "/v1/products/"+mug, admin, "")
		if etag(t, r) != mugTag {
			t.Errorf("GET ETag %s, create answered %s", r.Header.Get("ETag"), mugTag)
		}
		h := do(t, 200, "HEAD", "/v1/products/"+mug, admin, "")
		if h.Header.Get("ETag") != mugTag || h.Header.Get("Content-Type") != r.Header.Get("Content-Type") {
			t.Errorf("HEAD headers %v, GET %v", h.Header, r.Header)
		}
		r = do(t, 304, "GET", "/v1/products/"+mug, admin, "", "If-None-Match", mugTag)
		if r.Header.Get("ETag") != mugTag {
			t.Errorf("304 ETag %q, want %s", r.Header.Get("ETag"), mugTag)
		}
		do(t, 304, "GET", "/v1/products/"+mug, admin, "", "If-None-Match", `"other", `+mugTag)
		do(t, 304, "GET", "/v1/products/"+mug, admin, "", "If-None-Match", "*")
		do(t, 200, "GET", "/v1/products/"+mug, admin, "", "If-None-Match", `"other"`)
		do(t, 200, "GET", "/v1/products/"+mug+"?fields=sku", user, "")
		plain := etag(t, do(t, 200, "GET", "/v1/orders/"+order, admin, ""))
		included := etag(t, do(t, 200, "GET", "/v1/orders/"+order+"?include=customer_id", admin, ""))
		if plain == included {
			t.Errorf("the ETag with include= is the plain record's, %s", plain)
		}
		do(t, 304, "GET", "/v1/orders/"+order+"?include=customer_id", admin, "", "If-None-Match", included)
		do(t, 200, "GET", "/v1/products?price__gte=1&_sort=-price&_limit=2", admin, "")
		do(t, 200, "HEAD", "/v1/products?price__gte=1", admin, "")
		do(t, 200, "GET", "/v1/customers?include=", "", "") // public reads names
		do(t, 200, "GET", "/v1/products", user, "")
		// The filters pseudo-parameter is sent exploded: filters[...] is not a parameter.
		do(t, 400, "GET", "/v1/products?filters%5Bprice__gte%5D=1", admin, "")
		do(t, 400, "GET", "/v1/products?price__near=1", admin, "")
		do(t, 400, "GET", "/v1/products?_sort=sku", admin, "")
		do(t, 401, "GET", "/v1/products", "nope", "")
		do(t, 401, "GET", "/v1/products/"+mug, "nope", "")
		do(t, 403, "GET", "/v1/customers", user, "")
		do(t, 403, "GET", "/v1/customers/"+ada, user, "")
		do(t, 404, "GET", "/v1/nothing", admin, "")
		do(t, 404, "GET", "/v1/products/"+missing, admin, "")
		do(t, 400, "GET", "/v1/products/"+mug+"?fields=nope", admin, "")

		// Conditional writes.
		do(t, 412, "PATCH", "/v1/products/"+mug, admin, `{"price":10}`, "If-Match", `"nope"`)
		do(t, 412, "PATCH", "/v1/orders/"+order, admin, `{"quantity":3}`, "If-Match", included)
		if r := do(t, 200, "GET", "/v1/products/"+mug, admin, ""); etag(t, r) != mugTag || r.JSON()["price"] != 9.5 {
			t.Errorf("a 412 changed the record: %s %s", r.Header.Get("ETag"), r.Body)
		}
		r = do(t, 200, "PATCH", "/v1/products/"+mug, admin, `{"price":10}`,
			"If-Match", `"other", `+mugTag, "Content-Type", "application/merge-patch+json")
		if tag := etag(t, r); tag == mugTag {
			t.Errorf("the ETag did not change with the record")
		}
		do(t, 412, "PUT", "/v1/products/"+mug, admin, `{"sku":"MUG","price":11}`, "If-Match", mugTag)
		r = do(t, 200, "PUT", "/v1/products/"+mug, admin, `{"sku":"MUG","price":11,"data":[3]}`, "If-Match", "*")
		mugTag = etag(t, r)
		do(t, 200, "PATCH", "/v1/products/"+mug, admin, `{"price":11}`) // changes nothing
		tmp := idOf(t, do(t, 201, "POST", "/v1/products", admin, `{"sku":"TMP","price":1}`))
		do(t, 412, "DELETE", "/v1/products/"+tmp, admin, "", "If-Match", mugTag)
		tmpTag := etag(t, do(t, 200, "GET", "/v1/products/"+tmp, admin, ""))
		do(t, 204, "DELETE", "/v1/products/"+tmp, admin, "", "If-Match", tmpTag)
		do(t, 404, "DELETE", "/v1/products/"+tmp, admin, "")

		// Bodies that are not JSON.
		do(t, 415, "POST", "/v1/products", admin, `{"sku":"TXT","price":1}`, "Content-Type", "text/plain")
		do(t, 415, "POST", "/v1/products", admin, `sku=TXT&price=1`, "Content-Type", "application/x-www-form-urlencoded")
		do(t, 415, "PATCH", "/v1/products/"+mug, admin, `{"price":12}`, "Content-Type", "text/xml")
		do(t, 415, "PUT", "/v1/products/"+mug, admin, `{"sku":"MUG","price":12}`, "Content-Type", "application/yaml")

		// Other errors of the writes.
		do(t, 400, "POST", "/v1/products", admin, `{"sku":`)
		do(t, 400, "PATCH", "/v1/products/"+mug, admin, `{"price":1} {}`)
		do(t, 400, "PUT", "/v1/products/"+mug, admin, `[`)
		do(t, 401, "POST", "/v1/products", "nope", `{"sku":"NOP","price":1}`)
		do(t, 401, "PATCH", "/v1/products/"+mug, "nope", `{"price":1}`)
		do(t, 401, "PUT", "/v1/products/"+mug, "nope", `{"sku":"MUG","price":1}`)
		do(t, 401, "DELETE", "/v1/products/"+mug, "nope", "")
		do(t, 403, "POST", "/v1/customers", user, `{"name":"Eve","email":"eve@example.com"}`)
		do(t, 403, "PATCH", "/v1/products/"+mug, user, `{"price":1}`)
		do(t, 403, "PUT", "/v1/products/"+mug, user, `{"sku":"MUG","price":1}`)
		do(t, 403, "DELETE", "/v1/products/"+mug, user, "")
		do(t, 403, "DELETE", "/v1/customers/"+bob+"?hard=true", user, "")
		do(t, 404, "POST", "/v1/nothing", admin, `{}`)
		do(t, 404, "PATCH", "/v1/products/"+missing, admin, `{"price":1}`)
		do(t, 404, "PUT", "/v1/products/"+missing, admin, `{"sku":"NEW","price":1}`)
		do(t, 409, "POST", "/v1/products", admin, `{"sku":"MUG","price":1}`)
		do(t, 409, "PATCH", "/v1/products/"+mug, admin, `{"sku":"AAA"}`)
		do(t, 409, "PUT", "/v1/products/"+mug, admin, `{"sku":"AAA","price":1}`)
		do(t, 409, "DELETE", "/v1/customers/"+ada, admin, "") // orders restrict
		do(t, 413, "POST", "/v1/products", admin, big)
		do(t, 413, "PATCH", "/v1/products/"+mug, admin, big)
		do(t, 413, "PUT", "/v1/products/"+mug, admin, big)
		do(t, 422, "POST", "/v1/products", admin, `{"sku":"NEG","price":-1,"colour":"red"}`)
		do(t, 422, "POST", "/v1/products", admin, `[{"sku":"OK1","price":1},{"price":"x"}]`)
		do(t, 422, "PATCH", "/v1/products/"+mug, admin, `{"price":"cheap"}`)
		do(t, 422, "PUT", "/v1/products/"+mug, admin, `{"price":1}`)
		do(t, 422, "POST", "/v1/orders", admin, `{"customer_id":"`+missing+`","quantity":1}`)

		// History.
		do(t, 200, "GET", "/v1/products/"+mug+"/history?limit=2", admin, "")
		do(t, 200, "GET", "/v1/products/"+mug+"/history", user, "")
		do(t, 200, "HEAD", "/v1/products/"+mug+"/history", admin, "")
		do(t, 400, "GET", "/v1/products/"+mug+"/history?before=x", admin, "")
		do(t, 401, "GET", "/v1/products/"+mug+"/history", "nope", "")
		do(t, 403, "GET", "/v1/customers/"+ada+"/history", user, "")
		do(t, 404, "GET", "/v1/products/"+missing+"/history", user, "")
	})

	t.Run("registry", func(t *testing.T) {
		r := do(t, 200, "GET", "/v1/_registry", admin, "", "Accept", "application/json")
		exported := string(r.Body)
		do(t, 200, "GET", "/v1/_registry", admin, "")
		do(t, 200, "HEAD", "/v1/_registry", admin, "")
		do(t, 401, "GET", "/v1/_registry", "", "")
		do(t, 403, "GET", "/v1/_registry", user, "")
		do(t, 200, "POST", "/v1/_registry/import?dryRun=true", admin, exported)
		for _, ct := range []string{"application/yaml", "application/x-yaml", "text/yaml"} {
			do(t, 200, "POST", "/v1/_registry/import?dryRun=true", admin, openAPILiveSchema, "Content-Type", ct)
		}
		do(t, 200, "POST", "/v1/_registry/import?dryRun=true", admin, openAPILiveSchema, "Content-Type", "")
		do(t, 415, "POST", "/v1/_registry/import?dryRun=true", admin, openAPILiveSchema, "Content-Type", "text/plain")
		do(t, 400, "POST", "/v1/_registry/import?dryRun=true;x", admin, openAPILiveSchema)
		do(t, 401, "POST", "/v1/_registry/import", "", openAPILiveSchema)
		do(t, 403, "POST", "/v1/_registry/import", user, openAPILiveSchema)
		withoutOrders := openAPILiveSchema[:strings.Index(openAPILiveSchema, "  - name: orders")] +
			openAPILiveSchema[strings.Index(openAPILiveSchema, "permissions:"):]
		do(t, 409, "POST", "/v1/_registry/import?dryRun=true", admin, withoutOrders, "Content-Type", "application/yaml")
		do(t, 413, "POST", "/v1/_registry/import?dryRun=true", admin, big)
		do(t, 422, "POST", "/v1/_registry/import?dryRun=true", admin, "resources: [{name: Bad, fields: []}]",
			"Content-Type", "application/yaml")
	})

	t.Run("events", func(t *testing.T) {
		r := do(t, 200, "GET", "/v1/_events?resource=products&limit=5", admin, "")
		var page struct{ Data []map[string]any }
		if err := json.Unmarshal(r.Body, &page); err != nil || len(page.Data) == 0 {
			t.Fatalf("no events: %s", r.Body)
		}
		eventID, _ = page.Data[0]["eventId"].(string)
		do(t, 200, "GET", "/v1/_events?after=1&type=updated", admin, "")
		do(t, 200, "HEAD", "/v1/_events", admin, "")
		do(t, 400, "GET", "/v1/_events?since=yesterday", admin, "")
		do(t, 401, "GET", "/v1/_events", "", "")
		do(t, 403, "GET", "/v1/_events", user, "")
		do(t, 200, "GET", "/v1/_events/"+eventID, admin, "")
		do(t, 200, "GET", "/v1/_events/"+strings.ToUpper(eventID), admin, "")
		do(t, 400, "GET", "/v1/_events/"+eventID+"?a=%zz", admin, "")
		do(t, 401, "GET", "/v1/_events/"+eventID, "", "")
		do(t, 403, "GET", "/v1/_events/"+eventID, user, "")
		do(t, 404, "GET", "/v1/_events/"+missing, admin, "")

		c.stream(t, env, "/v1/_events/stream?lastEventId=0&resources=products", admin)
		c.stream(t, env, "/v1/products/stream?lastEventId=0", admin)
		c.stream(t, env, "/v1/products/stream?lastEventId=0&fields=price&access_token="+user, "")
		do(t, 400, "GET", "/v1/_events/stream?colour=red", admin, "")
		do(t, 401, "GET", "/v1/_events/stream", "", "")
		do(t, 403, "GET", "/v1/_events/stream", user, "")
		do(t, 400, "GET", "/v1/products/stream?events=exploded", admin, "")
		do(t, 401, "GET", "/v1/products/stream", "nope", "")
		do(t, 403, "GET", "/v1/customers/stream", user, "")
		do(t, 404, "GET", "/v1/nothing/stream", admin, "")
	})

	t.Run("webhooks", func(t *testing.T) {
		body := `{"name":"crm","url":"` + receiver.URL + `/hook","resource":"products","events":["created","updated"]}`
		r := do(t, 201, "POST", "/v1/_webhooks", admin, body)
		hook = idOf(t, r)
		if s, _ := r.JSON()["secret"].(string); !strings.HasPrefix(s, "whsec_") {
			t.Errorf("no secret in %s", r.Body)
		}
		do(t, 409, "POST", "/v1/_webhooks", admin, body)
		do(t, 422, "POST", "/v1/_webhooks", admin, `{"name":"x","url":"ftp://example.com","resource":"products"}`)
		do(t, 415, "POST", "/v1/_webhooks", admin, body, "Content-Type", "text/plain")
		do(t, 400, "POST", "/v1/_webhooks", admin, `{"name":`)
		do(t, 401, "POST", "/v1/_webhooks", "", body)
		do(t, 403, "POST", "/v1/_webhooks", user, body)
		do(t, 413, "POST", "/v1/_webhooks", admin, big)
		do(t, 200, "GET", "/v1/_webhooks", admin, "")
		do(t, 200, "HEAD", "/v1/_webhooks", admin, "")
		do(t, 401, "GET", "/v1/_webhooks", "", "")
		do(t, 403, "GET", "/v1/_webhooks", user, "")

		do(t, 200, "GET", "/v1/_webhooks/"+hook, admin, "")
		do(t, 401, "GET", "/v1/_webhooks/"+hook, "", "")
		do(t, 403, "GET", "/v1/_webhooks/"+hook, user, "")
		do(t, 404, "GET", "/v1/_webhooks/"+missing, admin, "")
		do(t, 200, "PATCH", "/v1/_webhooks/"+hook, admin, `{"retry":{"maxAttempts":3}}`)
		do(t, 415, "PATCH", "/v1/_webhooks/"+hook, admin, `{"paused":true}`, "Content-Type", "text/plain")
		do(t, 400, "PATCH", "/v1/_webhooks/"+hook, admin, `{"paused":`)
		do(t, 401, "PATCH", "/v1/_webhooks/"+hook, "", `{"paused":true}`)
		do(t, 403, "PATCH", "/v1/_webhooks/"+hook, user, `{"paused":true}`)
		do(t, 404, "PATCH", "/v1/_webhooks/"+missing, admin, `{"paused":true}`)
		do(t, 413, "PATCH", "/v1/_webhooks/"+hook, admin, big)
		do(t, 422, "PATCH", "/v1/_webhooks/"+hook, admin, `{"events":["exploded"]}`)
		do(t, 201, "POST", "/v1/_webhooks", admin, `{"name":"other","url":"`+receiver.URL+`/other","resource":"*"}`)
		do(t, 409, "PATCH", "/v1/_webhooks/"+hook, admin, `{"name":"other"}`)

		r = do(t, 200, "POST", "/v1/_webhooks/"+hook+"/rotate-secret", admin, "")
		if s, _ := r.JSON()["secret"].(string); !strings.HasPrefix(s, "whsec_") {
			t.Errorf("no secret in %s", r.Body)
		}
		do(t, 401, "POST", "/v1/_webhooks/"+hook+"/rotate-secret", "", "")
		do(t, 403, "POST", "/v1/_webhooks/"+hook+"/rotate-secret", user, "")
		do(t, 404, "POST", "/v1/_webhooks/"+missing+"/rotate-secret", admin, "")

		delivery = idOf(t, do(t, 202, "POST", "/v1/_webhooks/"+hook+"/test", admin, ""))
		do(t, 401, "POST", "/v1/_webhooks/"+hook+"/test", "", "")
		do(t, 403, "POST", "/v1/_webhooks/"+hook+"/test", user, "")
		do(t, 404, "POST", "/v1/_webhooks/"+missing+"/test", admin, "")

		r = do(t, 202, "POST", "/v1/_webhooks/"+hook+"/invoke", admin, `{"resourceId":"`+mug+`"}`)
		if id, _ := r.JSON()["eventId"].(string); id == "" {
			t.Errorf("no eventId in %s", r.Body)
		} else {
			do(t, 200, "GET", "/v1/_events/"+id, admin, "")
		}
		do(t, 400, "POST", "/v1/_webhooks/"+hook+"/invoke", admin, `{`)
		do(t, 401, "POST", "/v1/_webhooks/"+hook+"/invoke", "", `{"resourceId":"`+mug+`"}`)
		do(t, 403, "POST", "/v1/_webhooks/"+hook+"/invoke", user, `{"resourceId":"`+mug+`"}`)
		do(t, 404, "POST", "/v1/_webhooks/"+hook+"/invoke", admin, `{"resourceId":"`+missing+`"}`)
		do(t, 413, "POST", "/v1/_webhooks/"+hook+"/invoke", admin, big)
		do(t, 415, "POST", "/v1/_webhooks/"+hook+"/invoke", admin, `{"resourceId":"`+mug+`"}`, "Content-Type", "text/plain")
		do(t, 422, "POST", "/v1/_webhooks/"+hook+"/invoke", admin, `{}`)

		do(t, 202, "POST", "/v1/_webhooks/"+hook+"/replay", admin, `{"since":"2020-01-01T00:00:00Z"}`)
		do(t, 400, "POST", "/v1/_webhooks/"+hook+"/replay", admin, `{"since":`)
		do(t, 401, "POST", "/v1/_webhooks/"+hook+"/replay", "", `{"since":"2020-01-01T00:00:00Z"}`)
		do(t, 403, "POST", "/v1/_webhooks/"+hook+"/replay", user, `{"since":"2020-01-01T00:00:00Z"}`)
		do(t, 404, "POST", "/v1/_webhooks/"+missing+"/replay", admin, `{"since":"2020-01-01T00:00:00Z"}`)
		do(t, 413, "POST", "/v1/_webhooks/"+hook+"/replay", admin, big)
		do(t, 415, "POST", "/v1/_webhooks/"+hook+"/replay", admin, `{"since":"2020-01-01T00:00:00Z"}`,
			"Content-Type", "application/xml")
		do(t, 422, "POST", "/v1/_webhooks/"+hook+"/replay", admin, `{"since":"yesterday"}`)

		// The ping reaches the receiver; then it can be sent again.
		deadline := time.Now().Add(15 * time.Second)
		for {
			r := do(t, 200, "GET", "/v1/_webhooks/"+hook+"/deliveries?status=succeeded&limit=100", admin, "")
			if strings.Contains(string(r.Body), `"id":"`+delivery+`"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the ping was not delivered: %s", r.Body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		do(t, 200, "GET", "/v1/_webhooks/"+hook+"/deliveries", admin, "")
		do(t, 200, "HEAD", "/v1/_webhooks/"+hook+"/deliveries", admin, "")
		do(t, 400, "GET", "/v1/_webhooks/"+hook+"/deliveries?status=bogus", admin, "")
		do(t, 401, "GET", "/v1/_webhooks/"+hook+"/deliveries", "", "")
		do(t, 403, "GET", "/v1/_webhooks/"+hook+"/deliveries", user, "")
		do(t, 404, "GET", "/v1/_webhooks/"+missing+"/deliveries", admin, "")
		for {
			r := c.send(t, env, "POST", "/v1/_deliveries/"+delivery+"/redeliver", admin, "")
			if r.Status == http.StatusAccepted {
				break
			}
			if r.Status != http.StatusConflict || time.Now().After(deadline) {
				t.Fatalf("redeliver: %d %s", r.Status, r.Body)
			}
			time.Sleep(20 * time.Millisecond)
		}
		do(t, 400, "POST", "/v1/_deliveries/"+delivery+"/redeliver?a=%zz", admin, "")
		do(t, 401, "POST", "/v1/_deliveries/"+delivery+"/redeliver", "", "")
		do(t, 403, "POST", "/v1/_deliveries/"+delivery+"/redeliver", user, "")
		do(t, 404, "POST", "/v1/_deliveries/999999999/redeliver", admin, "")

		// A disabled webhook takes no pings or invocations.
		do(t, 200, "PATCH", "/v1/_webhooks/"+hook, admin, `{"enabled":false}`)
		do(t, 409, "POST", "/v1/_webhooks/"+hook+"/test", admin, "")
		do(t, 409, "POST", "/v1/_webhooks/"+hook+"/invoke", admin, `{"resourceId":"`+mug+`"}`)

		do(t, 401, "DELETE", "/v1/_webhooks/"+hook, "", "")
		do(t, 403, "DELETE", "/v1/_webhooks/"+hook, user, "")
		do(t, 204, "DELETE", "/v1/_webhooks/"+hook, admin, "")
		do(t, 404, "DELETE", "/v1/_webhooks/"+hook, admin, "")
	})

	t.Run("runtime document", func(t *testing.T) {
		load := func(t *testing.T, r *apptest.Response) *openapi3.T {
			t.Helper()
			loader := openapi3.NewLoader()
			rt, err := loader.LoadFromData(r.Body)
			if err != nil {
				t.Fatalf("the runtime document does not load: %v", err)
			}
			if err := rt.Validate(context.Background()); err != nil {
				t.Errorf("the runtime document is not valid OpenAPI: %v", err)
			}
			if !strings.HasPrefix(rt.OpenAPI, "3.1.") {
				t.Errorf("openapi %q, want 3.1.x", rt.OpenAPI)
			}
			if rt.Paths.Len() == 0 {
				t.Fatalf("the runtime document has no paths")
			}
			return rt
		}
		// resource checks the paths and schemas of one resource: the four
		// paths when the role may use it, and the schemas of what it may do
		// (read, create, update); nothing of it otherwise.
		resource := func(t *testing.T, rt *openapi3.T, name string, read, create, update bool) {
			t.Helper()
			for _, p := range []string{"/v1/" + name, "/v1/" + name + "/{id}", "/v1/" + name + "/{id}/history", "/v1/" + name + "/stream"} {
				if got := rt.Paths.Value(p) != nil; got != read {
					t.Errorf("path %s described: %v, want %v", p, got, read)
				}
			}
			for s, want := range map[string]bool{name: read, name + ".create": create, name + ".update": update, name + ".replace": update} {
				if got := rt.Components != nil && rt.Components.Schemas[s] != nil; got != want {
					t.Errorf("schema %s present: %v, want %v", s, got, want)
				}
			}
		}

		r := do(t, 200, "GET", "/v1/_openapi", "", "")
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type %q, want JSON by default", ct)
		}
		rt := load(t, r)
		if rt.Paths.Value("/healthz") == nil || rt.Paths.Value("/v1/_openapi") == nil {
			t.Errorf("the runtime document lacks the fixed endpoints")
		}
		resource(t, rt, "customers", true, false, false) // public reads customers
		resource(t, rt, "products", false, false, false)

		r = do(t, 200, "GET", "/v1/_openapi", user, "", "Accept", "application/yaml")
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/yaml") {
			t.Errorf("Content-Type %q, want YAML when asked", ct)
		}
		rt = load(t, r)
		resource(t, rt, "products", true, true, false) // users read and create products
		resource(t, rt, "customers", false, false, false)

		rt = load(t, do(t, 200, "GET", "/v1/_openapi", admin, ""))
		resource(t, rt, "orders", true, true, true)
		list := rt.Paths.Value("/v1/products")
		if list == nil || list.Get == nil {
			t.Fatal("no GET /v1/products in the admin's document")
		}
		var gte, sort *openapi3.Parameter
		for _, p := range append(list.Parameters, list.Get.Parameters...) {
			if p.Value == nil {
				continue
			}
			switch p.Value.Name {
			case "price__gte":
				gte = p.Value
			case "_sort":
				sort = p.Value
			}
		}
		if gte == nil || gte.In != "query" {
			t.Errorf("GET /v1/products declares no query parameter price__gte")
		}
		if raw, _ := json.Marshal(sort); sort == nil || !strings.Contains(string(raw), "price") {
			t.Errorf("GET /v1/products: _sort %s does not name the sortable field price", raw)
		}
		do(t, 200, "HEAD", "/v1/_openapi", "", "")
		do(t, 400, "GET", "/v1/_openapi?a=%zz", "", "")
		do(t, 401, "GET", "/v1/_openapi", "nope", "")

		// Real records match the runtime document's per-resource schemas,
		// as the admin and as a user (whose records are projected) read them.
		ra := newOpenAPIChecker(t, rt)
		ra.do(t, env, 200, "GET", "/v1/products/"+mug, admin, "")
		ra.do(t, env, 200, "GET", "/v1/products?price__gte=1&_sort=-price", admin, "")
		ra.do(t, env, 200, "GET", "/v1/orders/"+order+"?include=customer_id", admin, "")
		ra.do(t, env, 200, "GET", "/v1/customers?include=", admin, "")
		ra.do(t, env, 201, "POST", "/v1/products", admin, `{"sku":"RT1","price":1,"data":{"a":[1]}}`)
		ra.do(t, env, 201, "POST", "/v1/products", admin, `[{"sku":"RT2","price":2},{"sku":"RT3","price":3,"data":[]}]`)
		ra.do(t, env, 200, "PATCH", "/v1/products/"+mug, admin, `{"price":12}`)
		ra.do(t, env, 200, "GET", "/v1/products/"+mug+"/history", admin, "")
		ra.do(t, env, 422, "POST", "/v1/products", admin, `{"price":-1}`)
		ru := newOpenAPIChecker(t, load(t, do(t, 200, "GET", "/v1/_openapi", user, "")))
		ru.do(t, env, 200, "GET", "/v1/products?price__gte=1", user, "")
		ru.do(t, env, 200, "GET", "/v1/products/"+mug, user, "")
		ru.do(t, env, 201, "POST", "/v1/products", user, `{"sku":"RT4","price":4}`)
		h := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"r-1"}, "X-Correlation-Id": {"r-1"},
			"Etag": {`"1a"`}}
		wrong := `{"id":"` + mug + `","sku":"MUG","price":"cheap","created_at":"2026-11-22T10:15:30Z","updated_at":"2026-11-22T10:15:30Z"}`
		if _, err := ra.check("GET", "/v1/products/"+mug, 200, h, []byte(wrong)); err == nil {
			t.Errorf("the runtime document accepts a product whose price is a string")
		}
		if ra.total+ru.total != 12 {
			t.Errorf("%d answers validated against the runtime documents, want 12", ra.total+ru.total)
		}
	})

	t.Run("wrong answers fail", func(t *testing.T) {
		bad := func(name, method, target string, status int, header http.Header, body string) {
			t.Helper()
			if _, err := c.check(method, target, status, header, []byte(body)); err == nil {
				t.Errorf("%s: the validator accepts it", name)
			}
		}
		ok := func(name, method, target string, status int, header http.Header, body string) {
			t.Helper()
			if _, err := c.check(method, target, status, header, []byte(body)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		hdr := func(kv ...string) http.Header {
			h := http.Header{"X-Request-Id": {"r-1"}, "X-Correlation-Id": {"r-1"}}
			for i := 0; i+1 < len(kv); i += 2 {
				h.Set(kv[i], kv[i+1])
			}
			return h
		}
		js := "application/json"
		rec := `{"id":"` + mug + `","sku":"MUG","price":1,"created_at":"2026-11-22T10:15:30.123456Z","updated_at":"2026-11-22T10:15:30.123456Z"}`
		ok("a record", "GET", "/v1/products/"+mug, 200, hdr("Content-Type", js, "ETag", `"1a"`), rec)
		bad("a record without ETag", "GET", "/v1/products/"+mug, 200, hdr("Content-Type", js), rec)
		bad("a weak ETag", "GET", "/v1/products/"+mug, 200, hdr("Content-Type", js, "ETag", `W/"1a"`), rec)
		bad("a record without X-Request-ID", "GET", "/v1/products/"+mug, 200,
			http.Header{"Content-Type": {js}, "Etag": {`"1a"`}}, rec)
		bad("a record with a bad created_at", "GET", "/v1/products/"+mug, 200, hdr("Content-Type", js, "ETag", `"1a"`),
			strings.Replace(rec, "2026-11-22T10:15:30.123456Z", "yesterday", 1))
		bad("a record with an upper-case id", "GET", "/v1/products/"+mug, 200, hdr("Content-Type", js, "ETag", `"1a"`),
			strings.Replace(rec, mug, strings.ToUpper(mug), 1))
		bad("a 304 with a body", "GET", "/v1/products/"+mug, 304, hdr("ETag", `"1a"`), rec)
		bad("a 304 without ETag", "GET", "/v1/products/"+mug, 304, hdr(), "")
		bad("a list without meta", "GET", "/v1/products", 200, hdr("Content-Type", js), `{"data":[]}`)
		bad("a problem as JSON", "GET", "/v1/products", 404, hdr("Content-Type", js),
			`{"type":"https://herald.dev/problems/not-found","title":"Not found","status":404}`)
		bad("an undocumented status", "DELETE", "/v1/products/"+mug, 200, hdr("Content-Type", js), rec)
		bad("a 412 where there is no If-Match", "POST", "/v1/products", 412, hdr("Content-Type", "application/problem+json"),
			`{"type":"https://herald.dev/problems/precondition-failed","title":"Precondition failed","status":412}`)
		ok("a created record", "POST", "/v1/products", 201, hdr("Content-Type", js, "ETag", `"1a"`), rec)
		ok("a batch", "POST", "/v1/products", 201, hdr("Content-Type", js), `{"data":[`+rec+`]}`)
		bad("a batch of strings", "POST", "/v1/products", 201, hdr("Content-Type", js), `{"data":["x"]}`)
		bad("a batch with more", "POST", "/v1/products", 201, hdr("Content-Type", js), `{"data":[`+rec+`],"meta":{}}`)
		bad("a created record without id", "POST", "/v1/products", 201, hdr("Content-Type", js), `{"sku":"MUG"}`)
		hookBody := `{"id":"%s","name":"n","url":"https://example.com/h","resource":"*","events":[],"fields":[],"related":[],` +
			`"classification":null,"format":"event","auth":{"type":"hmac"},"headers":{},` +
			`"retry":{"maxAttempts":8,"initialInterval":"5s","maxInterval":"1h0m0s","timeout":"30s"},` +
			`"ordered":false,"rateLimit":0,"paused":false,"enabled":true,` +
			`"createdAt":"2026-11-22T10:15:30Z","updatedAt":"2026-11-22T10:15:30Z"}`
		ok("a webhook with a UUIDv7 id", "GET", "/v1/_webhooks/"+missing, 200, hdr("Content-Type", js),
			fmt.Sprintf(hookBody, "0192f7a4-7d2c-7a10-8e3b-5c1d2e3f4a5b"))
		bad("a webhook whose id is no UUID", "GET", "/v1/_webhooks/"+missing, 200, hdr("Content-Type", js),
			fmt.Sprintf(hookBody, "0192f7a4-7d2c-7a10-8e3b"))
		bad("an event page with an unknown key", "GET", "/v1/_events", 200, hdr("Content-Type", js),
			`{"data":[],"meta":{"next":null},"extra":1}`)
	})

	// Every documented operation had answers validated, and so did every
	// status the document promises for them.
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			op := method + " " + path
			if c.validated[op] == 0 {
				t.Errorf("%s: no answer validated", op)
			}
		}
	}
	for _, status := range []int{200, 201, 202, 204, 304, 400, 401, 403, 404, 409, 412, 413, 415, 422} {
		if c.statuses[status] == 0 {
			t.Errorf("no %d answer validated", status)
		}
	}
	if c.frames < 3 {
		t.Errorf("%d stream frames validated, want 3", c.frames)
	}
	t.Logf("%d answers validated (%d operations), %d stream frames", c.total, len(c.validated), c.frames)
}
