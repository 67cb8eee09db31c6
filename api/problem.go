package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/herald-dev/herald/database"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/labstack/echo/v4"

	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/models"
	"github.com/herald-dev/herald/realtime"
	"github.com/herald-dev/herald/resources"
	"github.com/herald-dev/herald/webhooks"
)

// problemBase prefixes the problem "type" URIs.
const problemBase = "https://herald.dev/problems/"

// Problem is an RFC 9457 problem document, the body of every error answer.
type Problem struct {
	Type      string              `json:"type"`
	Title     string              `json:"title"`
	Status    int                 `json:"status"`
	Detail    string              `json:"detail,omitempty"`
	Instance  string              `json:"instance,omitempty"`
	RequestID string              `json:"requestId,omitempty"`
	Errors    []resources.Problem `json:"errors,omitempty"`
}

// Error makes Problem an error handlers can return.
func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

func newProblem(status int, slug, title, detail string) *Problem {
	return &Problem{Type: problemBase + slug, Title: title, Status: status, Detail: detail}
}

// toProblem maps any error a handler returns to its problem document. The
// second result tells whether the error is unexpected (logged, and never
// shown to the client beyond the request id).
func toProblem(err error) (*Problem, bool) {
	var (
		p    *Problem
		he   *echo.HTTPError
		ve   *resources.ValidationError
		qe   *resources.QueryError
		ce   *resources.ConflictError
		fe   *resources.ForbiddenError
		de   *resources.DestructiveError
		se   *resources.SchemaError
		mbe  *http.MaxBytesError
		body *bodyError
		eqe  *events.QueryError
		qse  *queryStringError
		wbe  *webhooks.BodyError
		le   *realtime.LimitError
		mte  *mediaTypeError
	)
	switch {
	case errors.As(err, &p):
		return p, false
	case errors.As(err, &mbe):
		return newProblem(http.StatusRequestEntityTooLarge, "body-too-large", "Request body too large",
			"the body exceeds HERALD_MAX_BODY"), false
	case errors.As(err, &mte):
		return newProblem(http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type", mte.Error()), false
	case errors.As(err, &body):
		return newProblem(http.StatusBadRequest, "malformed-json", "Malformed JSON", body.msg), false
	case errors.Is(err, realtime.ErrShuttingDown):
		return newProblem(http.StatusServiceUnavailable, "unavailable", "Service unavailable", "the server is shutting down"), false
	case errors.As(err, &le):
		return newProblem(http.StatusTooManyRequests, "too-many-streams", "Too many streams", le.Message), false
	case errors.As(err, &wbe):
		return newProblem(http.StatusBadRequest, "malformed-json", "Malformed JSON", wbe.Message), false
	case errors.As(err, &ve):
		pr := newProblem(http.StatusUnprocessableEntity, "validation", "Invalid record", "one or more fields are invalid")
		pr.Errors = ve.Problems
		return pr, false
	case errors.As(err, &se):
		pr := newProblem(http.StatusUnprocessableEntity, "invalid-schema", "Invalid schema", "the schema has errors")
		pr.Errors = se.Problems
		return pr, false
	case errors.As(err, &qse):
		pr := newProblem(http.StatusBadRequest, "bad-query", "Bad query string", qse.Error())
		pr.Errors = []resources.Problem{{Field: "", Rule: "query", Message: qse.msg}}
		return pr, false
	case errors.As(err, &qe):
		pr := newProblem(http.StatusBadRequest, "bad-query", "Bad query parameter", qe.Error())
		pr.Errors = []resources.Problem{{Field: qe.Param, Rule: "query", Message: qe.Message}}
		return pr, false
	case errors.As(err, &eqe):
		pr := newProblem(http.StatusBadRequest, "bad-query", "Bad query parameter", eqe.Error())
		pr.Errors = []resources.Problem{{Field: eqe.Param, Rule: "query", Message: eqe.Message}}
		return pr, false
	case errors.As(err, &de):
		pr := newProblem(http.StatusConflict, "destructive-change", "Destructive schema change", de.Error())
		for _, c := range de.Changes {
			field := c.Resource
			if c.Field != "" {
				field += "." + c.Field
			}
			msg := c.Detail
			if msg == "" {
				msg = "drops data"
			}
			pr.Errors = append(pr.Errors, resources.Problem{Field: field, Rule: c.Op, Message: msg})
		}
		return pr, false
	case errors.As(err, &ce):
		pr := newProblem(http.StatusConflict, "conflict", "Conflict", ce.Message)
		pr.Errors = ce.Problems
		return pr, false
	case errors.As(err, &fe):
		pr := newProblem(http.StatusForbidden, "forbidden", "Forbidden", fe.Message)
		pr.Errors = fe.Problems
		return pr, false
	case errors.Is(err, models.ErrNotFound):
		return newProblem(http.StatusNotFound, "not-found", "Not found", "no such resource or record"), false
	case errors.Is(err, models.ErrUnauthorized):
		return newProblem(http.StatusUnauthorized, "unauthorized", "Unauthorized", "missing or invalid credentials"), false
	case errors.Is(err, models.ErrForbidden):
		return newProblem(http.StatusForbidden, "forbidden", "Forbidden", "this role may not do that"), false
	case errors.Is(err, models.ErrPreconditionFailed):
		return newProblem(http.StatusPreconditionFailed, "precondition-failed", "Precondition failed",
			"the record has changed since the version named in If-Match; read it again (its ETag) and retry"), false
	case errors.Is(err, models.ErrConflict):
		return newProblem(http.StatusConflict, "conflict", "Conflict", "the write conflicts with existing data"), false
	case errors.Is(err, resources.ErrOutcomeUnknown):
		// Before the deadline case: a COMMIT that timed out wraps the
		// deadline too, and "retry" would duplicate a saved write.
		return newProblem(http.StatusServiceUnavailable, "outcome-unknown", "Service unavailable",
			"the database connection failed while committing; the write may have been saved, check before retrying"), false
	case database.Unavailable(err):
		return newProblem(http.StatusServiceUnavailable, "database-unavailable", "Service unavailable",
			"the database cannot be reached right now; retry shortly"), false
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return newProblem(http.StatusServiceUnavailable, "unavailable", "Service unavailable",
			"the request was cancelled before it finished; retry"), false
	case errors.Is(err, resources.ErrBusy):
		return newProblem(http.StatusServiceUnavailable, "busy", "Service unavailable", "the write kept meeting concurrent writes; retry"), false
	case errors.Is(err, resources.ErrStopped):
		return newProblem(http.StatusServiceUnavailable, "unavailable", "Service unavailable", "the server is shutting down"), false
	case errors.As(err, &he):
		title := http.StatusText(he.Code)
		detail, _ := he.Message.(string)
		if he.Code == http.StatusNotFound {
			detail = "no such resource or record"
		}
		return newProblem(he.Code, slugFor(he.Code), title, detail), false
	}
	return newProblem(http.StatusInternalServerError, "internal", "Internal server error",
		"an unexpected error happened; quote the request id when reporting it"), true
}

func slugFor(code int) string {
	switch code {
	case http.StatusNotFound:
		return "not-found"
	case http.StatusMethodNotAllowed:
		return "method-not-allowed"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusRequestEntityTooLarge:
		return "body-too-large"
	}
	return "http-error"
}

// errorHandler is echo's single error handler: every error answer is
// problem+json, and a 500 carries only the request id (the cause is logged).
func errorHandler(log *slog.Logger, db *dbHealth) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		if requestID(c) == "" {
			// Refused before the request-id middleware ran (the Pre
			// middleware that strips access_token): still give one.
			id := uuid.Must(uuid.NewV7()).String()
			c.Set("requestId", id)
			c.Response().Header().Set(headerRequestID, id)
		}
		p, unexpected := toProblem(err)
		if p.Type == problemBase+"database-unavailable" {
			db.failed(err)
		}
		if p.Status == http.StatusServiceUnavailable {
			// SPEC: a database that is unreachable or timed out is a 503
			// with Retry-After; so is every other 503 here.
			c.Response().Header().Set("Retry-After", "1")
		}
		cp := *p
		cp.RequestID = requestID(c)
		cp.Instance = c.Request().URL.Path
		if unexpected {
			log.Error("request failed", "err", err, "requestId", cp.RequestID,
				"method", c.Request().Method, "path", c.Request().URL.Path)
		}
		if cp.Status == http.StatusUnauthorized {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
		}
		switch cp.Status {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			if c.Request().ContentLength != 0 {
				// Refused before the body was read: close the connection
				// rather than read what is left of it first (net/http
				// would, up to 256 KiB, before sending this answer).
				c.Response().Header().Set("Connection", "close")
			}
		}
		if cp.Status == http.StatusTooManyRequests {
			c.Response().Header().Set("Retry-After", "5")
		}
		c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
		c.Response().WriteHeader(cp.Status)
		if c.Request().Method != http.MethodHead {
			_ = jsonEncode(c.Response(), &cp)
		}
	}
}

// dbHealth logs the database's reachability once per change, instead of
// an ERROR line per request while it is down, and counts the requests it
// failed. Recovery is judged by the readiness check (a real round trip),
// made by a request at most once a second while down, not by requests
// that may not have touched the database. It is safe for concurrent use.
type dbHealth struct {
	log   *slog.Logger
	ready func(context.Context) error
	down  atomic.Bool
	// checked is when recovery was last checked (unix ns).
	checked atomic.Int64
	// unavailable counts the requests answered database-unavailable (nil:
	// no metrics).
	unavailable prometheus.Counter
}

func (h *dbHealth) failed(err error) {
	if h.unavailable != nil {
		h.unavailable.Inc()
	}
	if h.down.CompareAndSwap(false, true) {
		h.checked.Store(time.Now().UnixNano())
		h.log.Error("database unavailable: answering 503 until it is back", "err", err)
	}
}

// middleware checks, while the database is down, whether it is back.
func (h *dbHealth) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if h.down.Load() {
			last := h.checked.Load()
			if now := time.Now().UnixNano(); now-last > int64(time.Second) && h.checked.CompareAndSwap(last, now) {
				ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
				err := h.ready(ctx)
				cancel()
				if err == nil && h.down.CompareAndSwap(true, false) {
					h.log.Info("database available again")
				}
			}
		}
		return next(c)
	}
}
