package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/herald-dev/herald/api"
	"github.com/herald-dev/herald/resources"
)

const openAPIPath = "../openapi.yaml"

// documentedOperations is every fixed route of api/server.go. Adding a route
// without documenting it should fail here once it is added to this list.
var documentedOperations = map[string][]string{
	"/healthz":             {http.MethodGet},
	"/readyz":              {http.MethodGet},
	"/v1/_registry":        {http.MethodGet},
	"/v1/_registry/import": {http.MethodPost},
	"/v1/{resource}":       {http.MethodGet, http.MethodPost},
	"/v1/{resource}/{id}":  {http.MethodDelete, http.MethodGet, http.MethodPatch, http.MethodPut},
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

	got := map[string][]string{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			got[path] = append(got[path], method)
		}
		slices.Sort(got[path])
	}
	for path, want := range documentedOperations {
		if !slices.Equal(got[path], want) {
			t.Errorf("path %s: operations %v, want %v", path, got[path], want)
		}
	}
	for path := range got {
		if _, ok := documentedOperations[path]; !ok {
			t.Errorf("path %s is documented but not in documentedOperations; is it served?", path)
		}
	}
}

// TestOpenAPIResponsesCarryRequestIDAndProblems checks two promises that hold
// for every route: each answer has X-Request-ID, and each error answer is
// application/problem+json.
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

	cases := []struct {
		schema string
		value  any
	}{
		{"RegistrySchema", schema},
		{"RegistrySchema", &resources.Schema{}},
		{"ApplyResult", &resources.ApplyResult{Applied: true, Version: 2, Changes: []resources.Change{
			{Op: "addField", Resource: "customers", Field: "email"},
			{Op: "dropResource", Resource: "legacy", Destructive: true},
		}}},
		{"RecordList", &resources.ListResult{Data: []resources.Row{row},
			Meta: resources.ListMeta{Limit: 50, Total: 1, Next: &next}}},
		{"RecordList", &resources.ListResult{Data: []resources.Row{}, Meta: resources.ListMeta{Limit: 50}}},
		{"Record", row},
		{"RecordBatch", map[string]any{"data": []resources.Row{row}}},
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

// TestOpenAPILiveResponses sends requests that the server answers before it
// needs a store and validates the real answers against the document.
func TestOpenAPILiveResponses(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	const adminKey = "test-admin-key"
	newServer := func(ready func(context.Context) error) http.Handler {
		srv, err := api.New(api.Config{AdminKeyHash: sha256.Sum256([]byte(adminKey)), MaxBody: 16, Ready: ready}, nil, nil)
		if err != nil {
			t.Fatalf("api.New: %v", err)
		}
		return srv
	}
	ready := newServer(nil)
	notReady := newServer(func(context.Context) error { return errors.New("database down") })

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
