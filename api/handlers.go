package api

import (
	"net/http"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/labstack/echo/v4"

	"github.com/herald-dev/herald/auth"
	"github.com/herald-dev/herald/resources"
)

func (s *Server) healthz(c echo.Context) error {
	return respond(c, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(c echo.Context) error {
	if err := s.cfg.Ready(c.Request().Context()); err != nil {
		s.cfg.Logger.Warn("not ready", "err", err)
		return newProblem(http.StatusServiceUnavailable, "not-ready", "Not ready", "the database is unreachable or the schema is not applied")
	}
	return respond(c, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) list(c echo.Context) error {
	res, err := s.store.List(c.Request().Context(), c.Param("resource"), c.QueryParams())
	if err != nil {
		return err
	}
	return respond(c, http.StatusOK, res)
}

func (s *Server) get(c echo.Context) error {
	row, tag, err := s.store.Get(c.Request().Context(), c.Param("resource"), c.Param("id"), c.QueryParams())
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", tag)
	if noneMatch(c.Request().Header.Get("If-None-Match"), tag) {
		return c.NoContent(http.StatusNotModified)
	}
	return respond(c, http.StatusOK, row)
}

func (s *Server) create(c echo.Context) error {
	// Credentials first: a caller who may not create gets its 401 or 403
	// before its body is read.
	if err := s.store.Allowed(c.Request().Context(), c.Param("resource"), resources.ActionCreate); err != nil {
		return err
	}
	body, err := s.decodeJSON(c)
	if err != nil {
		return err
	}
	name := c.Param("resource")
	rows, tags, err := s.store.Create(c.Request().Context(), name, body)
	if err != nil {
		return err
	}
	if _, many := body.([]any); many {
		return respond(c, http.StatusCreated, map[string]any{"data": rows})
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/"+name+"/"+rows[0][resources.ColID].(string))
	c.Response().Header().Set("ETag", tags[0])
	return respond(c, http.StatusCreated, rows[0])
}

func (s *Server) update(c echo.Context) error  { return s.write(c, false) }
func (s *Server) replace(c echo.Context) error { return s.write(c, true) }

func (s *Server) write(c echo.Context, replace bool) error {
	if err := s.store.Allowed(c.Request().Context(), c.Param("resource"), resources.ActionUpdate); err != nil {
		return err
	}
	body, err := s.decodeJSON(c)
	if err != nil {
		return err
	}
	obj, ok := body.(map[string]any)
	if !ok {
		return &resources.ValidationError{Problems: []resources.Problem{{Rule: "type", Message: "body must be an object"}}}
	}
	row, tag, err := s.store.Update(c.Request().Context(), c.Param("resource"), c.Param("id"), obj, replace,
		ifMatch(c.Request().Header))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", tag)
	return respond(c, http.StatusOK, row)
}

func (s *Server) delete(c echo.Context) error {
	hard := c.QueryParam("hard") == "true"
	if err := s.store.Delete(c.Request().Context(), c.Param("resource"), c.Param("id"), hard, ifMatch(c.Request().Header)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// exportRegistry answers the applied schema as JSON when the client asks for
// it, YAML (the schema file's format) otherwise.
func (s *Server) exportRegistry(c echo.Context) error {
	sc := s.store.Schema()
	if strings.Contains(c.Request().Header.Get(echo.HeaderAccept), "json") {
		return respond(c, http.StatusOK, sc)
	}
	out, err := yaml.MarshalWithOptions(sc, yaml.UseJSONMarshaler())
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/yaml", out)
}

// importRegistry applies a schema document (YAML or JSON) as a plan.
func (s *Server) importRegistry(c echo.Context) error {
	raw, err := s.readBody(c, true)
	if err != nil {
		return err
	}
	sc, err := resources.ParseSchema(raw)
	if err != nil {
		return err
	}
	q := c.QueryParams()
	res, err := s.store.Apply(auth.WithPrincipal(c.Request().Context(), auth.Admin()), sc,
		q.Get("allowDestructive") == "true", q.Get("dryRun") == "true")
	if err != nil {
		return err
	}
	return respond(c, http.StatusOK, res)
}

// ifMatch reads the If-Match header fields as a list of entity tags (or
// "*"); nil when there are none, which is no precondition.
func ifMatch(h http.Header) []string {
	var tags []string
	for _, v := range h.Values("If-Match") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				tags = append(tags, t)
			}
		}
	}
	return tags
}

// noneMatch reports whether an If-None-Match header matches tag, by the
// weak comparison RFC 9110 prescribes for it ("*" matches any record).
func noneMatch(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == tag {
			return true
		}
	}
	return false
}
