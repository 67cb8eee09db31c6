package app

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// tracingEnv turns a map into a getenv function.
func tracingEnv(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// TestReadTracing: every OTEL_* variable Herald honours, and a bad value of
// each is an error that names it.
func TestReadTracing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		err  string // the variable the error must name; "" for none
		want func(t *testing.T, cfg tracing)
	}{
		{name: "defaults", env: nil, want: func(t *testing.T, cfg tracing) {
			require.False(t, cfg.export, "no endpoint, no exporter")
			require.Equal(t, "http/protobuf", cfg.protocol)
			require.Equal(t, sdktrace.ParentBased(sdktrace.AlwaysSample()).Description(), cfg.sampler.Description())
			require.Contains(t, cfg.resource, attribute.String("service.name", "herald"))
		}},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			want: func(t *testing.T, cfg tracing) {
				require.True(t, cfg.export)
				require.Equal(t, "http://collector:4318/v1/traces", cfg.endpoint)
			}},
		{name: "endpoint with a path", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector/otlp/"},
			want: func(t *testing.T, cfg tracing) { require.Equal(t, "https://collector/otlp/v1/traces", cfg.endpoint) }},
		{name: "traces endpoint as is", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/custom"},
			want: func(t *testing.T, cfg tracing) { require.Equal(t, "http://collector:4318/custom", cfg.endpoint) }},
		{name: "endpoint without a scheme", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
			err: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{name: "traces endpoint not a URL", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://x"},
			err: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{name: "grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"},
			want: func(t *testing.T, cfg tracing) {
				require.Equal(t, "grpc", cfg.protocol)
				require.Equal(t, "http://collector:4317", cfg.endpoint, "gRPC has no path")
			}},
		{name: "traces protocol wins", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
			want: func(t *testing.T, cfg tracing) { require.Equal(t, "http/protobuf", cfg.protocol) }},
		{name: "http/json", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "traces http/json", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, err: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{name: "unknown protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}, err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "exporter none", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
			want: func(t *testing.T, cfg tracing) { require.False(t, cfg.export) }},
		{name: "exporter otlp to the default endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			want: func(t *testing.T, cfg tracing) {
				require.True(t, cfg.export)
				require.Equal(t, "http://localhost:4318/v1/traces", cfg.endpoint, "plain HTTP, as the spec says")
			}},
		{name: "exporter otlp to the default grpc endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: func(t *testing.T, cfg tracing) {
				require.True(t, cfg.export)
				require.Equal(t, "http://localhost:4317", cfg.endpoint)
			}},
		{name: "exporter zipkin", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: "OTEL_TRACES_EXPORTER"},
		{name: "headers, timeout, gzip", env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "x-a=1, authorization=Bearer%20t0k",
			"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
			want: func(t *testing.T, cfg tracing) {
				require.Equal(t, map[string]string{"x-a": "1", "authorization": "Bearer t0k"}, cfg.headers)
				require.Equal(t, 2500*time.Millisecond, cfg.timeout)
				require.True(t, cfg.gzip)
			}},
		{name: "bad headers", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=Bearer%20s3cret,broken"},
			err: "OTEL_EXPORTER_OTLP_TRACES_HEADERS"},
		{name: "bad timeout", env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, err: "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{name: "bad compression", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "br"}, err: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"},
		{name: "resource attributes", env: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,deployment.environment=prod"},
			want: func(t *testing.T, cfg tracing) {
				require.Contains(t, cfg.resource, attribute.String("service.name", "from-attrs"))
				require.Contains(t, cfg.resource, attribute.String("deployment.environment", "prod"))
				require.NotContains(t, cfg.resource, attribute.String("service.name", "herald"))
			}},
		{name: "service name wins", env: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs", "OTEL_SERVICE_NAME": "svc"},
			want: func(t *testing.T, cfg tracing) {
				require.Equal(t, attribute.String("service.name", "svc"), cfg.resource[len(cfg.resource)-1], "the last one wins")
			}},
		{name: "bad resource attributes", env: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "=x"}, err: "OTEL_RESOURCE_ATTRIBUTES"},
		{name: "sampler always_on", env: map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}, want: sampler(sdktrace.AlwaysSample())},
		{name: "sampler always_off", env: map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, want: sampler(sdktrace.NeverSample())},
		{name: "sampler traceidratio", env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
			want: sampler(sdktrace.TraceIDRatioBased(0.25))},
		{name: "sampler traceidratio without arg", env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio"},
			want: sampler(sdktrace.TraceIDRatioBased(1))},
		{name: "sampler parentbased_always_on", env: map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
			want: sampler(sdktrace.ParentBased(sdktrace.AlwaysSample()))},
		{name: "sampler parentbased_always_off", env: map[string]string{"OTEL_TRACES_SAMPLER": "PARENTBASED_ALWAYS_OFF"},
			want: sampler(sdktrace.ParentBased(sdktrace.NeverSample()))},
		{name: "sampler parentbased_traceidratio", env: map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
			"OTEL_TRACES_SAMPLER_ARG": "0.5"}, want: sampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.5)))},
		{name: "sampler arg out of range", env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
			err: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "sampler arg not a number", env: map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
			err: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "sampler unknown", env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, err: "OTEL_TRACES_SAMPLER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := readTracing(tracingEnv(tc.env))
			if tc.err != "" {
				require.Error(t, err)
				require.Contains(t, err.Error(), tc.err+":")
				require.NotContains(t, err.Error(), "s3cret", "errors never repeat header values")
				// And the provider refuses to start.
				_, _, err := newTracerProviderWithLogger(context.Background(), tracingEnv(tc.env), slog.New(slog.DiscardHandler))
				require.ErrorContains(t, err, tc.err+":")
				return
			}
			require.NoError(t, err)
			tc.want(t, cfg)
		})
	}
}

func sampler(want sdktrace.Sampler) func(t *testing.T, cfg tracing) {
	return func(t *testing.T, cfg tracing) { require.Equal(t, want.Description(), cfg.sampler.Description()) }
}

// logBuffer is a slog destination the batch processor's goroutine may
// write to while the test reads it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// receiver collects the spans that arrive at a fake collector.
type receiver struct {
	mu      sync.Mutex
	names   []string
	service []string
	headers []http.Header // OTLP/HTTP requests' headers
}

func (r *receiver) add(req *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				r.service = append(r.service, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.names = append(r.names, s.GetName())
			}
		}
	}
}

func (r *receiver) spans() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.names...)
}

// httpReceiver is an OTLP/HTTP collector: POST /v1/traces, protobuf.
func httpReceiver(t *testing.T) (*receiver, *httptest.Server) {
	rec := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces, protobuf", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rec.add(&req)
		rec.mu.Lock()
		rec.headers = append(rec.headers, r.Header.Clone())
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return rec, srv
}

// emit makes one span on a provider built from env, flushes and shuts it
// down.
func emit(t *testing.T, env map[string]string, log *slog.Logger, name string) {
	t.Helper()
	tp, _, err := newTracerProviderWithLogger(context.Background(), tracingEnv(env), log)
	require.NoError(t, err)
	_, span := tp.Tracer("test").Start(context.Background(), name)
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, tp.ForceFlush(ctx))
	require.NoError(t, tp.Shutdown(ctx))
}

// TestExportOverHTTP: with an endpoint (and the default protocol,
// http/protobuf), spans reach an OTLP/HTTP receiver with the configured
// headers and service name; with OTEL_TRACES_EXPORTER=none nothing is
// sent; a receiver that refuses them makes a warning on Herald's logger.
func TestExportOverHTTP(t *testing.T) {
	t.Parallel()
	rec, srv := httpReceiver(t)
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=blue",
		"OTEL_SERVICE_NAME": "herald-test"}
	emit(t, env, slog.New(slog.DiscardHandler), "over http")
	require.Equal(t, []string{"over http"}, rec.spans())
	require.Equal(t, []string{"herald-test"}, rec.service)
	require.Equal(t, "blue", rec.headers[0].Get("X-Tenant"))

	env["OTEL_TRACES_EXPORTER"] = "none"
	emit(t, env, slog.New(slog.DiscardHandler), "not sent")
	require.Equal(t, []string{"over http"}, rec.spans(), "OTEL_TRACES_EXPORTER=none sends nothing")

	var logs logBuffer
	emit(t, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv.URL + "/elsewhere"}, logs.logger(), "refused")
	require.Contains(t, logs.String(), "tracing: export failed")
	require.Contains(t, logs.String(), "level=WARN")
}

// grpcTraceService is an OTLP/gRPC collector.
type grpcTraceService struct {
	coltracepb.UnimplementedTraceServiceServer
	rec *receiver
}

func (s *grpcTraceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.rec.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// TestExportOverGRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc sends spans to an
// OTLP/gRPC receiver; when none answers, the failure is a warning on
// Herald's logger.
func TestExportOverGRPC(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rec := &receiver{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, &grpcTraceService{rec: rec})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	emit(t, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + ln.Addr().String()},
		slog.New(slog.DiscardHandler), "over grpc")
	require.Equal(t, []string{"over grpc"}, rec.spans())

	// A port nobody listens on.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := dead.Addr().String()
	require.NoError(t, dead.Close())
	var logs logBuffer
	emit(t, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://" + addr,
		"OTEL_EXPORTER_OTLP_TIMEOUT": "300"}, logs.logger(), "lost")
	require.Contains(t, logs.String(), "tracing: export failed")
	require.True(t, strings.Contains(logs.String(), "level=WARN"), logs.String())
}

// TestUnsampledSpansHaveIDs: a span that is not sampled, or not exported,
// still has a valid trace and span id: requests' events carry them.
func TestUnsampledSpansHaveIDs(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{"OTEL_TRACES_SAMPLER": "always_off"},
		{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
		{"OTEL_TRACES_EXPORTER": "none"},
	} {
		tp, _, err := newTracerProviderWithLogger(context.Background(), tracingEnv(env), slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		_, span := tp.Tracer("test").Start(context.Background(), "request")
		sc := span.SpanContext()
		require.True(t, sc.IsValid(), "%v: valid ids", env)
		require.True(t, sc.TraceID().IsValid() && sc.SpanID().IsValid(), "%v", env)
		if env["OTEL_TRACES_EXPORTER"] == "" {
			require.False(t, sc.IsSampled(), "%v", env)
			require.False(t, span.IsRecording(), "%v", env)
		}
		span.End()
		require.NoError(t, tp.Shutdown(context.Background()))
	}
}
