package api

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/herald-dev/herald/auth"
	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/realtime"
	"github.com/herald-dev/herald/resources"
)

// Realtime streams (SPEC section 7). The handlers resolve the caller's
// view and parameters, then hand the connection to the hub.

// A stream's view and a record's history answer the one redaction of
// events (events.Redact) through resources.View.
var _ events.Reader = (*resources.View)(nil)

// accessTokenMiddleware takes ?access_token= out of every URL before
// anything (tracing, logs, metrics) sees it. On a stream, where browsers'
// EventSource cannot send headers, it becomes the Authorization header;
// elsewhere it is dropped (a token in a URL is not accepted there).
func accessTokenMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !strings.Contains(strings.ToLower(r.URL.RawQuery), "token") { // also access%5Ftoken
			return next(c)
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			// The token cannot be told apart from the rest: keep none of it.
			r.URL.RawQuery, r.RequestURI = "", r.URL.Path
			return &queryStringError{err.Error()}
		}
		if _, ok := q["access_token"]; !ok {
			return next(c)
		}
		tok := q.Get("access_token")
		q.Del("access_token")
		r.URL.RawQuery = q.Encode()
		r.RequestURI = r.URL.RequestURI()
		if tok != "" && r.Header.Get(echo.HeaderAuthorization) == "" && strings.HasSuffix(r.URL.Path, "/stream") {
			r.Header.Set(echo.HeaderAuthorization, "Bearer "+tok)
		}
		return next(c)
	}
}

// streamParams checks that only the named query parameters are present.
func streamParams(c echo.Context, allowed ...string) error {
	for k := range c.QueryParams() {
		if !slices.Contains(allowed, k) {
			return &resources.QueryError{Param: k, Message: "unknown parameter (" + strings.Join(allowed, ", ") + ")"}
		}
	}
	return nil
}

// lastEventID reads Last-Event-ID (header, or ?lastEventId=).
func lastEventID(c echo.Context) (bool, int64, error) {
	v := c.Request().Header.Get("Last-Event-ID")
	if v == "" {
		v = c.QueryParam("lastEventId")
	}
	if v == "" {
		return false, 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return false, 0, &resources.QueryError{Param: "lastEventId", Message: "must be an event id"}
	}
	return true, n, nil
}

// callerKey names the caller for the per-caller stream limit.
func callerKey(c echo.Context) string {
	p := auth.FromContext(c.Request().Context())
	switch {
	case p.IsAdmin():
		return "admin"
	case p.UserID != "":
		return "user:" + p.UserID
	}
	return "ip:" + c.RealIP()
}

// eventOps are the event kinds a stream's events parameter names;
// defaultOps those a stream gets unless it asks (manual events are
// invocations of one webhook, not changes).
var (
	eventOps   = []string{"created", "updated", "deleted", "classified", "manual"}
	defaultOps = []string{"created", "updated", "deleted", "classified"}
)

// resourceStream is GET /v1/:resource/stream.
func (s *Server) resourceStream(c echo.Context) error {
	if err := streamParams(c, "events", "fields", "lastEventId"); err != nil {
		return err
	}
	ctx := c.Request().Context()
	view, err := s.store.StreamView(ctx, c.Param("resource"), c.QueryParam("fields"))
	if err != nil {
		return err
	}
	ops := defaultOps
	if v := c.QueryParam("events"); v != "" {
		ops = strings.Split(v, ",")
		for _, o := range ops {
			if !slices.Contains(eventOps, o) {
				return &resources.QueryError{Param: "events", Message: "must list " + strings.Join(eventOps, ", ")}
			}
		}
	}
	resume, last, err := lastEventID(c)
	if err != nil {
		return err
	}
	name := view.Resource()
	return s.serveStream(c, &realtime.Stream{Caller: callerKey(c), Resume: resume, LastEventID: last, Resource: name,
		Filter: func(e *events.Event) bool {
			return e.ResourceName == name && slices.Contains(ops, events.Op(e.EventType))
		},
		Key: view.Key(), View: func(e *events.Event) (events.Event, bool) { return events.Redact(e, view) },
		SchemaVersion: view.SchemaVersion(), Expires: view.Expires()})
}

// adminStream is GET /v1/_events/stream: everything, or the resources and
// types asked for (a type is "orders.created", or "created" for every
// resource).
func (s *Server) adminStream(c echo.Context) error {
	if err := streamParams(c, "resources", "types", "lastEventId"); err != nil {
		return err
	}
	var names, types []string
	if v := c.QueryParam("resources"); v != "" {
		names = strings.Split(v, ",")
	}
	if v := c.QueryParam("types"); v != "" {
		types = strings.Split(v, ",")
	}
	resume, last, err := lastEventID(c)
	if err != nil {
		return err
	}
	key := "admin-stream|" + strings.Join(names, ",") + "|" + strings.Join(types, ",")
	return s.serveStream(c, &realtime.Stream{Caller: callerKey(c), Resume: resume, LastEventID: last,
		Filter: func(e *events.Event) bool {
			if len(names) > 0 && !slices.Contains(names, e.ResourceName) {
				return false
			}
			return len(types) == 0 || slices.Contains(types, e.EventType) || slices.Contains(types, events.Op(e.EventType))
		},
		Key: key, View: func(e *events.Event) (events.Event, bool) { return *e, true }})
}

func (s *Server) serveStream(c echo.Context, st *realtime.Stream) error {
	if s.cfg.Hub == nil {
		return newProblem(http.StatusServiceUnavailable, "unavailable", "Service unavailable", "streams are not enabled")
	}
	if isHead(c) {
		// GET's headers, checks passed, and no stream: the connection is
		// never taken over, so nothing is written after the headers and
		// no stream counts against the caller's limit.
		h := c.Response().Header()
		h.Set(echo.HeaderContentType, "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		return c.NoContent(http.StatusOK)
	}
	sub, head, err := s.cfg.Hub.Open(st)
	if err != nil {
		return err
	}
	if err := s.cfg.Hub.Serve(c.Request().Context(), c.Response(), sub, head, st); err != nil {
		// Only when the connection cannot be taken over (HTTP/2).
		s.cfg.Logger.Warn("stream", "err", err)
		return newProblem(http.StatusServiceUnavailable, "unavailable", "Service unavailable",
			"streams need HTTP/1.1 on this server")
	}
	return nil
}
