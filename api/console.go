package api

import (
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"
)

// consoleCSP is the console's Content-Security-Policy: its own scripts,
// styles and API only. No inline script or style, no other origin, no
// framing, no plugins: record values and receiver responses it shows are
// untrusted, and it renders them as text, so a policy this strict costs it
// nothing.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; form-action 'self'; " +
	"base-uri 'none'; frame-ancestors 'none'; object-src 'none'"

// consoleRoutes serves the admin console's static files at /_/. They need
// no credentials: the page signs in with the admin key and sends it on
// every API call itself.
func (s *Server) consoleRoutes() {
	if s.cfg.Console == nil {
		return
	}
	files := http.FileServerFS(s.cfg.Console)
	serve := func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-cache")
		name := strings.TrimPrefix(path.Clean("/"+c.Param("*")), "/")
		if name == "" || name == "." {
			name = "index.html"
		}
		if _, err := fs.Stat(s.cfg.Console, name); err != nil {
			return echo.NewHTTPError(http.StatusNotFound, "no such console file")
		}
		r := c.Request().Clone(c.Request().Context())
		r.URL.Path = "/" + name
		if name == "index.html" {
			// FileServer redirects /index.html to ./; serve it directly.
			r.URL.Path = "/"
		}
		files.ServeHTTP(c.Response(), r)
		return nil
	}
	s.e.GET("/_", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/_/") })
	s.e.GET("/_/*", serve)
}
