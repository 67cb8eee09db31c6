package api

import (
	"crypto/sha256"
	"encoding/hex"
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
// every API call itself. Each file has a strong ETag (a hash of its
// content, worked out once), so a reload revalidates with 304s.
func (s *Server) consoleRoutes() error {
	if s.cfg.Console == nil {
		return nil
	}
	tags := map[string]string{}
	err := fs.WalkDir(s.cfg.Console, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(s.cfg.Console, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		tags[name] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	if err != nil {
		return err
	}
	files := http.FileServerFS(s.cfg.Console)
	secure := func(c echo.Context) {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
	}
	serve := func(c echo.Context) error {
		secure(c)
		name := strings.TrimPrefix(path.Clean("/"+c.Param("*")), "/")
		if name == "" {
			name = "index.html"
		}
		tag, ok := tags[name] // files only: a directory is a 404 too
		if !ok {
			return echo.NewHTTPError(http.StatusNotFound, "no such console file")
		}
		h := c.Response().Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", tag) // http.FileServer answers If-None-Match with it
		r := c.Request().Clone(c.Request().Context())
		r.URL.Path = "/" + name
		if name == "index.html" {
			r.URL.Path = "/" // FileServer redirects /index.html to ./
		}
		files.ServeHTTP(c.Response(), r)
		return nil
	}
	s.e.GET("/_", func(c echo.Context) error {
		secure(c)
		return c.Redirect(http.StatusMovedPermanently, "/_/")
	})
	s.e.GET("/_/*", serve)
	return nil
}
