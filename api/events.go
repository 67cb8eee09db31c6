package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/herald-dev/herald/events"
)

func (s *Server) listEvents(c echo.Context) error {
	q, err := events.ParseQuery(c.QueryParams())
	if err != nil {
		return err
	}
	page, err := s.audit.List(c.Request().Context(), q)
	if err != nil {
		return err
	}
	return respond(c, http.StatusOK, page)
}

func (s *Server) getEvent(c echo.Context) error {
	e, err := s.audit.Get(c.Request().Context(), c.Param("eventId"))
	if err != nil {
		return err
	}
	return respond(c, http.StatusOK, e)
}

// history answers a record's events, newest first, to callers who may read
// the record, as their view allows (events.Redact asks resources.View).
func (s *Server) history(c echo.Context) error {
	resource, id := c.Param("resource"), c.Param("id")
	view, err := s.store.RecordView(c.Request().Context(), resource, id)
	if err != nil {
		return err
	}
	before, limit := int64(0), 100
	if v := c.QueryParam("before"); v != "" {
		if before, err = strconv.ParseInt(v, 10, 64); err != nil || before < 0 {
			return &events.QueryError{Param: "before", Message: "must be an event id"}
		}
	}
	if v := c.QueryParam("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return &events.QueryError{Param: "limit", Message: "must be an integer from 1 to 1000"}
		}
	}
	page, err := s.audit.History(c.Request().Context(), resource, id, before, limit)
	if err != nil {
		return err
	}
	page.Data = events.RedactAll(page.Data, view)
	return respond(c, http.StatusOK, page)
}
