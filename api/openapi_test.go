package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dev/herald/api"
	"github.com/herald-dev/herald/auth"
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
		if strings.HasPrefix(method, "echo_") || strings.HasSuffix(path, "/*") || path == "*" {
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
