package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// The webhook admin API (SPEC section 6). Each handler reads the body,
// calls one webhooks.Service method and responds.

func (s *Server) webhookRoutes() {
	g := s.e.Group("/v1/_webhooks", s.requireAdmin)
	g.POST("", s.createWebhook)
	g.GET("", s.listWebhooks)
	g.GET("/:id", s.getWebhook)
	g.PATCH("/:id", s.updateWebhook)
	g.DELETE("/:id", s.deleteWebhook)
	g.POST("/:id/rotate-secret", s.rotateWebhookSecret)
	g.POST("/:id/test", s.testWebhook)
	g.POST("/:id/invoke", s.invokeWebhook)
	g.POST("/:id/replay", s.replayWebhook)
	g.GET("/:id/deliveries", s.listDeliveries)
	s.e.POST("/v1/_deliveries/:id/redeliver", s.redeliver, s.requireAdmin)
}

func (s *Server) createWebhook(c echo.Context) error {
	body, err := s.readBody(c, false)
	if err != nil {
		return err
	}
	v, err := s.cfg.Webhooks.Create(c.Request().Context(), body)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/_webhooks/"+v.ID)
	return respond(c, http.StatusCreated, v)
}

func (s *Server) listWebhooks(c echo.Context) error {
	list, err := s.cfg.Webhooks.List(c.Request().Context())
	if err != nil {
		return err
	}
	return respond(c, http.StatusOK, map[string]any{"data": list})
}

func (s *Server) getWebhook(c echo.Context) error {
	v, err := s.cfg.Webhooks.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return respond(c, http.StatusOK, v)
}

func (s *Server) updateWebhook(c echo.Context) error {
	body, err := s.readBody(c, false)
	if err != nil {
		return err
	}
	v, err := s.cfg.Webhooks.Update(c.Request().Context(), c.Param("id"), body)
	if err != nil {
		return err
	}
	return respond(c, http.StatusOK, v)
}

func (s *Server) deleteWebhook(c echo.Context) error {
	if err := s.cfg.Webhooks.Delete(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) rotateWebhookSecret(c echo.Context) error {
	v, err := s.cfg.Webhooks.RotateSecret(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return respond(c, http.StatusOK, v)
}

func (s *Server) testWebhook(c echo.Context) error {
	d, err := s.cfg.Webhooks.Test(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return respond(c, http.StatusAccepted, d)
}

func (s *Server) invokeWebhook(c echo.Context) error {
	body, err := s.readBody(c, false)
	if err != nil {
		return err
	}
	r, err := s.cfg.Webhooks.Invoke(c.Request().Context(), c.Param("id"), body)
	if err != nil {
		return err
	}
	return respond(c, http.StatusAccepted, r)
}

func (s *Server) replayWebhook(c echo.Context) error {
	body, err := s.readBody(c, false)
	if err != nil {
		return err
	}
	r, err := s.cfg.Webhooks.Replay(c.Request().Context(), c.Param("id"), body)
	if err != nil {
		return err
	}
	return respond(c, http.StatusAccepted, r)
}

func (s *Server) listDeliveries(c echo.Context) error {
	page, err := s.cfg.Webhooks.Deliveries(c.Request().Context(), c.Param("id"), c.QueryParams())
	if err != nil {
		return err
	}
	return respond(c, http.StatusOK, page)
}

func (s *Server) redeliver(c echo.Context) error {
	d, err := s.cfg.Webhooks.Redeliver(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return respond(c, http.StatusAccepted, d)
}
