package api

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/herald-dev/herald/auth"
	"github.com/herald-dev/herald/events"
)

const headerCorrelationID = "X-Correlation-ID"

// tracingMiddleware starts the request's server span with otelhttp (W3C
// traceparent honoured), on the configured provider, never a global one;
// when the provider records no span (Config.SpansUnrecorded), with
// unrecordedSpanMiddleware instead, which only gives the span its ids.
// The span is named "{method} {http.route}" as the OpenTelemetry HTTP
// conventions say ("GET /v1/:resource/:id", echo's own template syntax,
// which the conventions allow), never with the ids of the raw path; a
// request that matched no route is named by its method alone. Echo routes
// before the middleware registered with Use runs, so the route is known
// here; otelhttp reads it from the request's Pattern, for the name and the
// http.route attribute. The otelhttp middleware is built once, not per
// request. An error is written as its problem inside the span, so that the
// span's status code is the answer's.
func (s *Server) tracingMiddleware() echo.MiddlewareFunc {
	traced := func(r *http.Request) bool {
		// Probes and metrics are noise; a stream would be one span open
		// for hours.
		return r.URL.Path != "/healthz" && r.URL.Path != "/readyz" && r.URL.Path != "/metrics" &&
			!strings.HasSuffix(r.URL.Path, "/stream")
	}
	if s.cfg.SpansUnrecorded {
		return s.unrecordedSpanMiddleware(traced)
	}
	mw := otelhttp.NewMiddleware("herald",
		otelhttp.WithTracerProvider(s.cfg.TracerProvider),
		otelhttp.WithPropagators(s.cfg.Propagator),
		otelhttp.WithFilter(traced))
	routes := sync.OnceValue(func() map[route]bool {
		m := map[route]bool{}
		for _, r := range s.e.Routes() {
			m[route{r.Method, r.Path}] = true
		}
		return m
	})
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			// c.Path is also set for a 404 or 405 (the nearest node's
			// path): only a registered route of the method is a route.
			if p := c.Path(); p != "" && routes()[route{req.Method, p}] {
				req.Pattern = p
			}
			mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c.SetRequest(r)
				c.SetResponse(echo.NewResponse(w, c.Echo()))
				// Write the problem now, inside the span, so that it
				// sees the status (as the metrics middleware does).
				if err := next(c); err != nil {
					c.Error(err)
				}
			})).ServeHTTP(c.Response(), req)
			return nil
		}
	}
}

// unrecordedSpanMiddleware gives each traced request its span, as
// tracingMiddleware does, when the provider records none (see
// Config.SpansUnrecorded): the caller's traceparent and baggage are read
// and a server span started under them, for its ids, and nothing else.
func (s *Server) unrecordedSpanMiddleware(traced func(*http.Request) bool) echo.MiddlewareFunc {
	tracer := s.cfg.TracerProvider.Tracer("github.com/herald-dev/herald/api")
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if !traced(req) {
				return next(c)
			}
			ctx := s.cfg.Propagator.Extract(req.Context(), propagation.HeaderCarrier(req.Header))
			ctx, span := tracer.Start(ctx, "herald", trace.WithSpanKind(trace.SpanKindServer))
			defer span.End()
			c.SetRequest(req.WithContext(ctx))
			if err := next(c); err != nil {
				c.Error(err)
			}
			return nil
		}
	}
}

// route is a registered route: method and echo path template.
type route struct{ method, path string }

// ipExtractor returns the client address: the peer, unless the peer is a
// trusted proxy, in which case X-Forwarded-For (or X-Real-IP) says who is
// behind it.
func (s *Server) ipExtractor() echo.IPExtractor {
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range s.cfg.TrustedProxies {
		_, n, err := net.ParseCIDR(p.String())
		if err == nil {
			opts = append(opts, echo.TrustIPRange(n))
		}
	}
	xff := echo.ExtractIPFromXFFHeader(opts...)
	realIP := echo.ExtractIPFromRealIPHeader(opts...)
	return func(r *http.Request) string {
		if r.Header.Get(echo.HeaderXForwardedFor) != "" {
			return xff(r)
		}
		return realIP(r)
	}
}

// requestInfoMiddleware puts the session variables and trace context of the
// request into its context, where the events plugin reads them. It runs
// after authentication, which decides userId and role.
func (s *Server) requestInfoMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		ctx := req.Context()
		reqID := requestID(c)
		corr, _ := c.Get("correlationId").(string)

		p := auth.FromContext(ctx)
		sess := map[string]any{"role": p.Role, "ip": c.RealIP(), "userAgent": req.UserAgent()}
		if p.UserID != "" {
			sess["userId"] = p.UserID
		}
		for _, name := range s.cfg.SessionClaims {
			if _, core := sess[name]; core || name == "userId" {
				continue // a claim never shadows what Herald resolved itself
			}
			if v, ok := p.Claims[name]; ok {
				sess[name] = v
			}
		}
		tc := events.TraceContext{RequestID: reqID, CorrelationID: corr}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			tc.TraceID, tc.SpanID = sc.TraceID().String(), sc.SpanID().String()
		}
		if parent := trace.SpanContextFromContext(s.cfg.Propagator.Extract(context.Background(),
			propagation.HeaderCarrier(req.Header))); parent.IsValid() {
			tc.ParentSpanID = parent.SpanID().String()
		}
		ctx = events.WithRequestInfo(ctx, &events.RequestInfo{SessionVariables: sess, Trace: tc})
		c.SetRequest(req.WithContext(ctx))
		return next(c)
	}
}
