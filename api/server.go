// Package api is Herald's HTTP surface: the echo server, its routes, thin
// handlers, middleware and the problem+json error handler. Handlers bind,
// call one service method and respond; access rules, SQL and transactions
// live in package resources.
package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/herald-dev/herald/auth"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/models"
	"github.com/herald-dev/herald/realtime"
	"github.com/herald-dev/herald/resources"
	"github.com/herald-dev/herald/webhooks"
)

// Config configures the HTTP server.
type Config struct {
	// AdminKeyHash is the SHA-256 of the admin bearer key. Required.
	AdminKeyHash [32]byte
	// MaxBody caps request bodies in bytes (HERALD_MAX_BODY). Default 1 MiB.
	MaxBody int64
	// RequestTimeout is every request's deadline, its time in the write
	// queue and its queries included (HERALD_REQUEST_TIMEOUT), except
	// streams and schema imports. Default 30s.
	RequestTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics is the Prometheus registry served at /metrics; HTTP metrics
	// are registered on it. Optional.
	Metrics *prometheus.Registry
	// Verifier checks bearer tokens that are not the admin key (JWTs).
	// Optional: without it such tokens are 401.
	Verifier TokenVerifier
	// TrustedProxies are the peers whose X-Forwarded-For / X-Real-IP name
	// the client (HERALD_TRUSTED_PROXIES).
	TrustedProxies []netip.Prefix
	// SessionClaims are the token claims copied into session variables.
	SessionClaims []string
	// CORSOrigins are the allowed CORS origins; none disables CORS.
	CORSOrigins []string
	// TracerProvider makes the request spans. Default: a no-op provider.
	TracerProvider trace.TracerProvider
	// SpansUnrecorded says TracerProvider never records a span (nothing
	// exports them). Each request still gets its span, whose ids the
	// events carry (an incoming traceparent honoured), but not otelhttp's
	// attributes, name and OpenTelemetry metrics, which nobody would see:
	// that work was 7% of Herald's CPU serving reads of one record.
	SpansUnrecorded bool
	// Propagator reads traceparent. Default: W3C trace context and baggage.
	Propagator propagation.TextMapPropagator
	// Hub serves the realtime streams. Required to serve them; the routes
	// exist either way.
	Hub *realtime.Hub
	// Webhooks serves the webhook admin API. Required to serve it; the
	// routes exist either way (the OpenAPI test lists them).
	Webhooks *webhooks.Service
	// Ready reports whether the server can serve (database reachable,
	// schema applied). Default: always ready.
	Ready func(ctx context.Context) error
	// OpenAPI is the static OpenAPI document (openapi.yaml, YAML or JSON),
	// the base of GET /v1/_openapi. Optional: without it the runtime
	// document describes the resources only.
	OpenAPI []byte
	// Console holds the admin console's files (index.html at its root),
	// served at /_/. Optional: without it /_/ is a 404.
	Console fs.FS
}

// TokenVerifier verifies a bearer token. It must be safe for concurrent
// use. Errors mean 401.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*auth.Principal, error)
}

// Server is Herald's HTTP handler.
type Server struct {
	cfg   Config
	e     *echo.Echo
	store *resources.Store
	audit *events.Audit
	http  *httpMetrics

	openapi *openAPI
}

// New builds the server and its routes.
func New(cfg Config, store *resources.Store, audit *events.Audit) (*Server, error) {
	if cfg.AdminKeyHash == ([32]byte{}) {
		return nil, errors.New("api: AdminKeyHash is required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = noop.NewTracerProvider()
	}
	if cfg.Propagator == nil {
		cfg.Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	if cfg.Ready == nil {
		cfg.Ready = func(context.Context) error { return nil }
	}
	doc, err := newOpenAPI(cfg.OpenAPI)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, e: echo.New(), store: store, audit: audit, openapi: doc}
	s.e.HideBanner, s.e.HidePort = true, true
	db := &dbHealth{log: cfg.Logger, ready: cfg.Ready}
	s.e.HTTPErrorHandler = errorHandler(cfg.Logger, db)
	if cfg.Metrics != nil {
		s.http = newHTTPMetrics(cfg.Metrics)
		s.e.Use(s.http.middleware)
		db.unavailable = prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_database_unavailable_total",
			Help: "Requests answered 503 because the database could not be reached."})
		cfg.Metrics.MustRegister(db.unavailable)
	}
	s.e.Use(db.middleware)
	s.e.IPExtractor = s.ipExtractor()
	s.e.Pre(accessTokenMiddleware)
	s.e.Use(s.tracingMiddleware(), s.requestIDMiddleware, inputMiddleware, s.deadlineMiddleware)
	if len(cfg.CORSOrigins) > 0 {
		s.e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins:  cfg.CORSOrigins,
			AllowHeaders:  []string{echo.HeaderAuthorization, echo.HeaderContentType, headerRequestID, headerCorrelationID, "traceparent", "tracestate", "Last-Event-ID", "If-Match", "If-None-Match"},
			ExposeHeaders: []string{headerRequestID, headerCorrelationID, echo.HeaderLocation, "ETag"},
			MaxAge:        600,
		}))
	}
	s.e.Use(s.authMiddleware, s.requestInfoMiddleware)
	s.routes()
	if err := s.consoleRoutes(); err != nil {
		return nil, fmt.Errorf("api: console files: %w", err)
	}
	return s, nil
}

// ServeHTTP makes Server an http.Handler. HEAD is served as GET wherever
// GET is: the request is routed as a GET, and net/http, which still sees
// the original HEAD request, sends the headers and drops the body.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		// A shallow copy: the server keeps its HEAD request.
		r = r.WithContext(context.WithValue(r.Context(), headKey{}, true))
		r.Method = http.MethodGet
	}
	s.e.ServeHTTP(w, r)
}

type headKey struct{}

// isHead tells whether the request came as HEAD (and is routed as GET).
func isHead(c echo.Context) bool {
	v, _ := c.Request().Context().Value(headKey{}).(bool)
	return v
}

func (s *Server) routes() {
	e := s.e
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	if s.cfg.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.cfg.Metrics, promhttp.HandlerOpts{})))
	}

	e.GET("/v1/_openapi", s.serveOpenAPI)

	admin := e.Group("/v1/_registry", s.requireAdmin)
	admin.GET("", s.exportRegistry)
	admin.POST("/import", s.importRegistry)

	audit := e.Group("/v1/_events", s.requireAdmin)
	audit.GET("", s.listEvents)
	audit.GET("/stream", s.adminStream)
	audit.GET("/:eventId", s.getEvent)

	s.webhookRoutes()

	e.GET("/v1/:resource", s.list)
	e.POST("/v1/:resource", s.create)
	e.GET("/v1/:resource/:id", s.get)
	e.PATCH("/v1/:resource/:id", s.update)
	e.PUT("/v1/:resource/:id", s.replace)
	e.DELETE("/v1/:resource/:id", s.delete)
	e.GET("/v1/:resource/:id/history", s.history)
	e.GET("/v1/:resource/stream", s.resourceStream)
}

const headerRequestID = "X-Request-ID"

type requestIDKey struct{}

// requestIDMiddleware honours a sane X-Request-ID or makes one, and echoes it.
func (s *Server) requestIDMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(headerRequestID)
		if id == "" || len(id) > 200 || strings.ContainsAny(id, "\r\n") {
			id = uuid.Must(uuid.NewV7()).String()
		}
		c.Response().Header().Set(headerRequestID, id)
		c.Set("requestId", id)
		corr := c.Request().Header.Get(headerCorrelationID)
		if corr == "" || len(corr) > 200 || strings.ContainsAny(corr, "\r\n") {
			corr = id
		}
		c.Response().Header().Set(headerCorrelationID, corr)
		c.Set("correlationId", corr)
		ctx := context.WithValue(c.Request().Context(), requestIDKey{}, id)
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

// inputMiddleware refuses, before anything else happens, a query string
// that does not parse (a bad escape, a ';', more parameters than Go's
// parser takes): url.Values would silently drop what follows, so a list
// would come back unfiltered and an import's dryRun could be lost. It
// also writes UUIDs in the path in their canonical lower-case form, the
// form ids are stored in (SQLite compares text; PostgreSQL's uuid type
// did not care).
func inputMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		q, err := url.ParseQuery(c.Request().URL.RawQuery)
		if err != nil {
			return &queryStringError{err.Error()}
		}
		for k, vs := range q {
			// PostgreSQL cannot take a NUL or bytes that are not UTF-8 in
			// a text parameter: refused once here for every parameter, on
			// both engines.
			bad := func(v string) bool { return strings.ContainsRune(v, 0) || !utf8.ValidString(v) }
			if bad(k) || slices.ContainsFunc(vs, bad) {
				return &queryStringError{"parameter " + strconv.Quote(k) + " contains the NUL character (U+0000) or bytes that are not UTF-8"}
			}
		}
		names, vals := c.ParamNames(), c.ParamValues()
		for i, n := range names {
			if i < len(vals) && (n == "id" || n == "eventId") && len(vals[i]) == 36 {
				if u, err := uuid.Parse(vals[i]); err == nil {
					vals[i] = u.String()
				}
			}
		}
		c.SetParamValues(vals...)
		return next(c)
	}
}

// deadlineMiddleware gives every request RequestTimeout: a database that
// freezes answers 503 then instead of holding the client (a read waited
// as long as the database did). Streams and schema imports (a migration
// of a large table) are exempt.
func (s *Server) deadlineMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		switch c.Path() {
		case "/v1/:resource/stream", "/v1/_events/stream":
			return next(c)
		case "/v1/_registry/import", "/v1/_webhooks/:id/replay":
			// Long by nature (a migration, a replay of a large window):
			// no deadline, and no server write timeout either, or the
			// client would lose the answer of work that completed.
			_ = http.NewResponseController(c.Response().Writer).SetWriteDeadline(time.Time{})
			return next(c)
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.RequestTimeout)
		defer cancel()
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

// queryStringError is a query string that does not parse (400).
type queryStringError struct{ msg string }

// Error implements error.
func (e *queryStringError) Error() string { return "the query string does not parse: " + e.msg }

func requestID(c echo.Context) string {
	id, _ := c.Get("requestId").(string)
	return id
}

// authMiddleware resolves the caller: the admin key is role admin, a valid
// JWT is its user and role, no credentials are role public, and anything
// else is 401.
func (s *Server) authMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if unauthenticated[c.Path()] {
			return next(c)
		}
		p := &auth.Principal{Role: auth.RolePublic}
		if h := c.Request().Header.Get(echo.HeaderAuthorization); h != "" {
			scheme, token, ok := strings.Cut(h, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
				s.cfg.Logger.Debug("401: the Authorization header is not 'Bearer <token>'", "requestId", requestID(c))
				return models.ErrUnauthorized
			}
			sum := sha256.Sum256([]byte(token))
			if subtle.ConstantTimeCompare(sum[:], s.cfg.AdminKeyHash[:]) == 1 {
				p = auth.Admin()
			} else if s.cfg.Verifier == nil {
				s.cfg.Logger.Debug("401: not the admin key, and no JWT verification is configured", "requestId", requestID(c))
				return models.ErrUnauthorized
			} else {
				var err error
				if p, err = s.cfg.Verifier.Verify(c.Request().Context(), token); err != nil {
					if errors.Is(err, auth.ErrKeysUnavailable) {
						s.cfg.Logger.Warn("jwks unavailable", "err", err)
						return newProblem(http.StatusServiceUnavailable, "keys-unavailable", "Service unavailable",
							"the token's signing keys cannot be fetched right now; retry shortly")
					}
					// The answer stays generic; the reason is for the operator.
					s.cfg.Logger.Debug("401: the token was refused", "requestId", requestID(c), "reason", err.Error())
					return fmt.Errorf("api: %w: %w", models.ErrUnauthorized, err)
				}
			}
		}
		c.SetRequest(c.Request().WithContext(auth.WithPrincipal(c.Request().Context(), p)))
		return next(c)
	}
}

// unauthenticated are the routes that ignore credentials: probes and
// metrics answer whatever Authorization header a scraper sends.
// The console's files are static: the page sends the admin key itself.
var unauthenticated = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true, "/_": true, "/_/*": true}

// requireAdmin guards the admin API.
func (s *Server) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p := auth.FromContext(c.Request().Context())
		if p.IsAdmin() {
			return next(c)
		}
		if p.Role == auth.RolePublic {
			return models.ErrUnauthorized
		}
		return newProblem(http.StatusForbidden, "forbidden", "Forbidden", "the admin API needs the admin key")
	}
}

// bodyError is a body that is not valid JSON (400).
type bodyError struct{ msg string }

// Error implements error.
func (e *bodyError) Error() string { return e.msg }

// mediaTypeError is a body of a media type the endpoint does not take (415).
type mediaTypeError struct{ got, want string }

// Error implements error.
func (e *mediaTypeError) Error() string {
	return "the body's Content-Type is " + strconv.Quote(e.got) + "; this endpoint takes " + e.want
}

// checkMediaType refuses a body whose declared Content-Type is not JSON
// (application/json or any +json type), or, with yamlOK, YAML. A request
// without a Content-Type is read as JSON, as curl and most clients send
// bodies they do not label.
func checkMediaType(c echo.Context, yamlOK bool) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if ct == "" {
		return nil
	}
	want := "application/json"
	if yamlOK {
		want += " or application/yaml"
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return &mediaTypeError{ct, want}
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return nil
	case yamlOK && (mt == "application/yaml" || mt == "application/x-yaml" || mt == "text/yaml" || strings.HasSuffix(mt, "+yaml")):
		return nil
	}
	return &mediaTypeError{mt, want}
}

// readBody reads the request body within HERALD_MAX_BODY, refusing one
// that is not JSON (or YAML, with yamlOK) by its Content-Type first. A
// declared length over the limit is refused before anything is read; a
// client that hangs up mid-body gets a 400 it will not see, and is no
// server error.
func (s *Server) readBody(c echo.Context, yamlOK bool) ([]byte, error) {
	if err := checkMediaType(c, yamlOK); err != nil {
		return nil, err
	}
	if n := c.Request().ContentLength; n > s.cfg.MaxBody {
		return nil, &http.MaxBytesError{Limit: s.cfg.MaxBody}
	}
	r := http.MaxBytesReader(c.Response(), c.Request().Body, s.cfg.MaxBody)
	raw, err := io.ReadAll(r)
	var mbe *http.MaxBytesError
	if err != nil && !errors.As(err, &mbe) {
		return nil, &bodyError{"the body could not be read: " + err.Error()}
	}
	return raw, err
}

// decodeJSON reads a JSON body; numbers stay json.Number so integers keep
// their precision.
func (s *Server) decodeJSON(c echo.Context) (any, error) {
	raw, err := s.readBody(c, false)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &bodyError{"the body is not valid JSON: " + err.Error()}
	}
	// Decoder.More misses a stray "}" or "]": look at what is left.
	if len(bytes.TrimSpace(raw[dec.InputOffset():])) > 0 {
		return nil, &bodyError{"the body has data after the JSON value"}
	}
	return v, nil
}

func jsonEncode(w io.Writer, v any) error {
	// A record (the answer to a create, read or update) is written without
	// reflection: database.AppendJSON writes what the encoder below would.
	if row, ok := v.(resources.Row); ok {
		if b, ok := database.AppendJSON(make([]byte, 0, 512), map[string]any(row), false); ok {
			_, err := w.Write(append(b, '\n'))
			return err
		}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// respond writes a JSON answer.
func respond(c echo.Context, status int, v any) error {
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	c.Response().WriteHeader(status)
	return jsonEncode(c.Response(), v)
}

// Routes lists the method and path pattern of every route, in echo's
// notation (":param"). The OpenAPI test checks the document against it.
func (s *Server) Routes() [][2]string {
	var out [][2]string
	for _, r := range s.e.Routes() {
		out = append(out, [2]string{r.Method, r.Path})
	}
	return out
}
