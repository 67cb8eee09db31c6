package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// newTracerProviderWithLogger builds the tracer provider from the standard
// OTEL_* variables, read through getenv (see readTracing for which). Spans
// always get real ids, sampled or not, exported or not: events carry them.
// Export failures are logged on log, not through OpenTelemetry's global
// error handler. exported tells whether spans are exported (when not,
// the provider records none).
func newTracerProviderWithLogger(ctx context.Context, getenv func(string) string, log *slog.Logger) (_ *sdktrace.TracerProvider, exported bool, err error) {
	cfg, err := readTracing(getenv)
	if err != nil {
		return nil, false, err
	}
	res, err := sdkresource.New(ctx, sdkresource.WithTelemetrySDK(), sdkresource.WithAttributes(cfg.resource...))
	if err != nil {
		return nil, false, fmt.Errorf("app: tracing resource: %w", err)
	}
	sampler := cfg.sampler
	if !cfg.export {
		// Nothing exports: recording spans would be work for nobody. The
		// spans still get real trace and span ids (the SDK makes them
		// before it samples), which events carry, and an incoming
		// traceparent's trace id is kept.
		sampler = sdktrace.NeverSample()
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	if cfg.export {
		exp, err := cfg.exporter(ctx)
		if err != nil {
			return nil, false, err
		}
		opts = append(opts, sdktrace.WithBatcher(loggingExporter{exp, log}))
	}
	return sdktrace.NewTracerProvider(opts...), cfg.export, nil
}

// tracing is what the OTEL_* variables say.
type tracing struct {
	sampler  sdktrace.Sampler
	resource []attribute.KeyValue
	// export is false for OTEL_TRACES_EXPORTER=none, and when the variable
	// is unset and no endpoint is either.
	export bool
	// protocol is "grpc" or "http/protobuf".
	protocol string
	// endpoint is the traces endpoint URL, path included for HTTP, or ""
	// for the exporter's default (localhost, port 4318 or 4317).
	endpoint string
	headers  map[string]string
	timeout  time.Duration // 0: the exporter's default, 10s
	gzip     bool
}

// readTracing reads the OTEL_* variables Herald honours. Each value it
// does not understand is an error that names its variable.
//
//   - OTEL_TRACES_EXPORTER: otlp or none. Unset means otlp when an endpoint
//     is set, none otherwise (so that a Herald without a collector does not
//     keep trying localhost).
//   - OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL (which
//     wins): http/protobuf (default) or grpc; http/json is not supported.
//   - OTEL_EXPORTER_OTLP_ENDPOINT (a base URL; /v1/traces is appended for
//     HTTP), OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the URL as is; wins).
//   - OTEL_EXPORTER_OTLP[_TRACES]_HEADERS (key=value,...; values
//     percent-encoded), _TIMEOUT (milliseconds), _COMPRESSION (gzip, none).
//   - OTEL_TRACES_SAMPLER: always_on, always_off, traceidratio,
//     parentbased_always_on (default), parentbased_always_off,
//     parentbased_traceidratio; OTEL_TRACES_SAMPLER_ARG is the ratio, from
//     0 to 1 (default 1).
//   - OTEL_SERVICE_NAME (default herald) and OTEL_RESOURCE_ATTRIBUTES.
//
// The exporter's TLS files (OTEL_EXPORTER_OTLP_CERTIFICATE and the like)
// and the batch processor's OTEL_BSP_* are read by the OpenTelemetry SDK
// from the process environment.
func readTracing(getenv func(string) string) (tracing, error) {
	var cfg tracing
	var err error
	if cfg.sampler, err = readSampler(getenv); err != nil {
		return cfg, err
	}
	if cfg.resource, err = readResource(getenv); err != nil {
		return cfg, err
	}

	name, protocol := signalVar(getenv, "PROTOCOL")
	switch protocol {
	case "", "http/protobuf":
		cfg.protocol = "http/protobuf"
	case "grpc":
		cfg.protocol = "grpc"
	case "http/json":
		return cfg, fmt.Errorf("app: %s: http/json is not supported; use http/protobuf or grpc", name)
	default:
		return cfg, fmt.Errorf("app: %s: %q is not a protocol; use http/protobuf or grpc", name, protocol)
	}

	if v := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
		if cfg.endpoint, err = endpointURL("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", v, ""); err != nil {
			return cfg, err
		}
	} else if v := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" {
		suffix := "/v1/traces"
		if cfg.protocol == "grpc" {
			suffix = "" // gRPC has no path
		}
		if cfg.endpoint, err = endpointURL("OTEL_EXPORTER_OTLP_ENDPOINT", v, suffix); err != nil {
			return cfg, err
		}
	}

	switch v := getenv("OTEL_TRACES_EXPORTER"); strings.ToLower(strings.TrimSpace(v)) {
	case "":
		cfg.export = cfg.endpoint != ""
	case "otlp":
		cfg.export = true
		if cfg.endpoint == "" {
			// The OpenTelemetry default, in plain HTTP as the spec says (the
			// Go exporters would otherwise try TLS on it).
			cfg.endpoint = "http://localhost:4318/v1/traces"
			if cfg.protocol == "grpc" {
				cfg.endpoint = "http://localhost:4317"
			}
		}
	case "none":
		cfg.export = false
	default:
		return cfg, fmt.Errorf("app: OTEL_TRACES_EXPORTER: %q is not supported; use otlp or none", v)
	}

	if name, v := signalVar(getenv, "HEADERS"); v != "" {
		if cfg.headers, err = keyValues(name, v); err != nil {
			return cfg, err
		}
	}
	if name, v := signalVar(getenv, "TIMEOUT"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms <= 0 || ms > math.MaxInt64/int64(time.Millisecond) {
			return cfg, fmt.Errorf("app: %s: want a positive whole number of milliseconds, got %q", name, v)
		}
		cfg.timeout = time.Duration(ms) * time.Millisecond
	}
	if name, v := signalVar(getenv, "COMPRESSION"); v != "" {
		switch v {
		case "gzip":
			cfg.gzip = true
		case "none":
		default:
			return cfg, fmt.Errorf("app: %s: %q is not supported; use gzip or none", name, v)
		}
	}
	return cfg, nil
}

// signalVar returns OTEL_EXPORTER_OTLP_TRACES_<suffix> when it is set,
// else OTEL_EXPORTER_OTLP_<suffix>, with the name of the one it read.
func signalVar(getenv func(string) string, suffix string) (name, value string) {
	name = "OTEL_EXPORTER_OTLP_TRACES_" + suffix
	if v := strings.TrimSpace(getenv(name)); v != "" {
		return name, v
	}
	name = "OTEL_EXPORTER_OTLP_" + suffix
	return name, strings.TrimSpace(getenv(name))
}

// endpointURL checks an endpoint URL and appends suffix to its path. The
// value is not repeated in errors: it may carry credentials.
func endpointURL(name, v, suffix string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(v))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("app: %s: want an http:// or https:// URL", name)
	}
	if suffix != "" {
		u.Path = strings.TrimSuffix(u.Path, "/") + suffix
	}
	return u.String(), nil
}

func readSampler(getenv func(string) string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		v := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
		if v == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || !(r >= 0 && r <= 1) {
			return 0, fmt.Errorf("app: OTEL_TRACES_SAMPLER_ARG: want a ratio from 0 to 1, got %q", v)
		}
		return r, nil
	}
	switch v := getenv("OTEL_TRACES_SAMPLER"); strings.ToLower(strings.TrimSpace(v)) {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.TraceIDRatioBased(r), nil
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	default:
		return nil, fmt.Errorf("app: OTEL_TRACES_SAMPLER: %q is not supported; use always_on, always_off, traceidratio, "+
			"parentbased_always_on, parentbased_always_off or parentbased_traceidratio", v)
	}
}

// readResource returns OTEL_RESOURCE_ATTRIBUTES and the service name:
// OTEL_SERVICE_NAME, else service.name among the attributes, else herald.
func readResource(getenv func(string) string) ([]attribute.KeyValue, error) {
	var attrs []attribute.KeyValue
	named := false
	if v := strings.TrimSpace(getenv("OTEL_RESOURCE_ATTRIBUTES")); v != "" {
		kv, err := keyValues("OTEL_RESOURCE_ATTRIBUTES", v)
		if err != nil {
			return nil, err
		}
		for k, v := range kv {
			attrs = append(attrs, attribute.String(k, v))
			named = named || k == string(semconv.ServiceNameKey)
		}
	}
	if n := strings.TrimSpace(getenv("OTEL_SERVICE_NAME")); n != "" {
		attrs = append(attrs, semconv.ServiceName(n)) // wins over service.name above
	} else if !named {
		attrs = append(attrs, semconv.ServiceName("herald"))
	}
	return attrs, nil
}

// keyValues parses "k1=v1,k2=v2" with percent-encoded values (the format of
// OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES). Errors name the
// variable and the entry's place, never its value: headers carry tokens.
func keyValues(name, v string) (map[string]string, error) {
	out := map[string]string{}
	for i, entry := range strings.Split(v, ",") {
		if strings.TrimSpace(entry) == "" {
			continue
		}
		k, val, ok := strings.Cut(entry, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("app: %s: entry %d is not key=value", name, i+1)
		}
		decoded, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("app: %s: entry %d (%s): bad percent-encoding", name, i+1, k)
		}
		out[k] = decoded
	}
	return out, nil
}

// exporter builds the OTLP exporter. Every setting is passed explicitly,
// so that what readTracing read through getenv is what the exporter uses.
func (cfg tracing) exporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	if cfg.protocol == "grpc" {
		var opts []otlptracegrpc.Option
		if cfg.endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.endpoint))
		}
		if cfg.headers != nil {
			opts = append(opts, otlptracegrpc.WithHeaders(cfg.headers))
		}
		if cfg.timeout > 0 {
			opts = append(opts, otlptracegrpc.WithTimeout(cfg.timeout))
		}
		if cfg.gzip {
			opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("app: OTLP/gRPC trace exporter: %w", err)
		}
		return exp, nil
	}
	var opts []otlptracehttp.Option
	if cfg.endpoint != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(cfg.endpoint))
	}
	if cfg.headers != nil {
		opts = append(opts, otlptracehttp.WithHeaders(cfg.headers))
	}
	if cfg.timeout > 0 {
		opts = append(opts, otlptracehttp.WithTimeout(cfg.timeout))
	}
	if cfg.gzip {
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("app: OTLP/HTTP trace exporter: %w", err)
	}
	return exp, nil
}

// loggingExporter logs failed exports on Herald's logger and reports
// success to the batch processor, whose only use of the error is
// OpenTelemetry's global error handler (a process-wide setting Herald
// leaves alone; it would print the same failure again, unstructured).
type loggingExporter struct {
	sdktrace.SpanExporter
	log *slog.Logger
}

// ExportSpans implements sdktrace.SpanExporter.
func (e loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := e.SpanExporter.ExportSpans(ctx, spans); err != nil {
		level := slog.LevelWarn
		if errors.Is(err, context.Canceled) {
			level = slog.LevelInfo // shutting down
		}
		e.log.Log(ctx, level, "tracing: export failed; spans dropped", "spans", len(spans), "err", err)
	}
	return nil
}

// propagator is W3C trace context plus baggage.
func propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}
