package api_test

import (
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/herald-dev/herald/api"
)

// TestServerSpanNamedByRoute: the request span is "{method} {http.route}"
// with the route template, never the raw path with its ids, and a request
// that matched no route is named by its method alone, without http.route.
func TestServerSpanNamedByRoute(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	srv, err := api.New(api.Config{AdminKeyHash: sha256.Sum256([]byte(openAPIAdminKey)), TracerProvider: tp}, nil, nil)
	require.NoError(t, err)

	const id = "01j9zq8x5v3k7m2n4p6r8s0t1w"
	for _, tc := range []struct {
		method, target string
		name, route    string // route "" means no http.route attribute
	}{
		{http.MethodGet, "/v1/products/" + id, "GET /v1/:resource/:id", "/v1/:resource/:id"},
		{http.MethodPost, "/v1/products", "POST /v1/:resource", "/v1/:resource"},
		{http.MethodGet, "/v1/products/" + id + "/history", "GET /v1/:resource/:id/history", "/v1/:resource/:id/history"},
		{http.MethodGet, "/v1/_events/42", "GET /v1/_events/:eventId", "/v1/_events/:eventId"},
		{http.MethodGet, "/nowhere/" + id, "GET", ""},
		{http.MethodDelete, "/v1/_openapi", "DELETE", ""}, // a path that exists, not for this method
	} {
		exp.Reset()
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(tc.method, tc.target, nil)
		// A bad key: answered 401 before any handler (the server has
		// no store), after routing and the request span.
		req.Header.Set("Authorization", "Bearer not-the-key")
		srv.ServeHTTP(rec, req)
		spans := exp.GetSpans()
		require.Len(t, spans, 1, "%s %s", tc.method, tc.target)
		s := spans[0]
		require.Equal(t, tc.name, s.Name, "%s %s (answered %d)", tc.method, tc.target, rec.Code)
		require.Equal(t, trace.SpanKindServer, s.SpanKind)
		var route string
		var status int64
		for _, a := range s.Attributes {
			switch a.Key {
			case "http.route":
				route = a.Value.AsString()
			case "http.response.status_code":
				status = a.Value.AsInt64()
			}
		}
		require.Equal(t, tc.route, route, "%s %s: http.route", tc.method, tc.target)
		require.Equal(t, int64(rec.Code), status, "%s %s: the span sees the answer's status", tc.method, tc.target)
	}
}
