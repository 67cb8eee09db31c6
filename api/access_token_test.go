package api_test

import (
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/herald-dev/herald/api"
)

// TestAccessTokenNeverReachesTraces: ?access_token= is taken out of the
// URL before the request span is made, on streams and elsewhere.
func TestAccessTokenNeverReachesTraces(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	srv, err := api.New(api.Config{AdminKeyHash: sha256.Sum256([]byte(openAPIAdminKey)), TracerProvider: tp}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "s3cr3t-t0ken-value"
	for _, target := range []string{
		"/v1/_events/stream?access_token=" + secret + "&colour=red",
		"/v1/_events?access_token=" + secret,
		"/v1/items/stream?events=created&access_token=" + secret,
	} {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code == http.StatusOK {
			t.Fatalf("%s: unexpected 200", target)
		}
		if strings.Contains(rec.Body.String(), secret) {
			t.Fatalf("%s: the answer repeats the token: %s", target, rec.Body)
		}
	}
	// Streams are not traced (a span would stay open for the stream's
	// life); the other request is.
	spans := exp.GetSpans()
	if len(spans) < 1 {
		t.Fatalf("want a span for the request that is not a stream, got %d", len(spans))
	}
	for _, s := range spans {
		for _, a := range s.Attributes {
			if strings.Contains(a.Value.Emit(), secret) {
				t.Fatalf("span %q carries the token in %s=%s", s.Name, a.Key, a.Value.Emit())
			}
		}
		if strings.Contains(s.Name, secret) {
			t.Fatalf("span name %q carries the token", s.Name)
		}
	}
	// And it is taken off the URL, not just dropped: the stream sees the
	// other parameters (unknown "colour" is refused, naming it).
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/_events/stream?access_token="+openAPIAdminKey+"&colour=red", nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "colour") {
		t.Fatalf("admin token in the query: want 400 naming colour, got %d %s", rec.Code, rec.Body)
	}
}
