// Package apptest starts a real Herald (app.New on a fresh database, served
// by httptest over loopback) for tests, and gives them a small HTTP client.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
)

// AdminKey is the admin key of every test instance.
const AdminKey = "test-admin-key-0123456789"

// Env is one running Herald.
type Env struct {
	T      testing.TB
	App    *app.App
	Server *httptest.Server
	Kind   database.Kind
	Config app.Config
}

// Start runs Herald on a fresh database of kind with the given schema YAML.
// modify may adjust the configuration before start.
func Start(t testing.TB, kind database.Kind, schema string, modify ...func(*app.Config)) *Env {
	t.Helper()
	cfg, err := app.LoadConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DatabaseURL = dbtest.URL(t, kind)
	cfg.AdminKey = AdminKey
	cfg.Schema = filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(cfg.Schema, []byte(schema), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range modify {
		m(&cfg)
	}
	return StartConfig(t, kind, cfg)
}

// StartConfig runs Herald with a complete configuration.
func StartConfig(t testing.TB, kind database.Kind, cfg app.Config) *Env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	a, err := app.New(context.Background(), cfg, app.Options{Logger: log, Out: io.Discard, OpenAPI: OpenAPIDocument(t)})
	if err != nil {
		t.Fatalf("apptest: start herald: %v", err)
	}
	srv := httptest.NewServer(a.Handler())
	e := &Env{T: t, App: a, Server: srv, Kind: kind, Config: cfg}
	t.Cleanup(e.Stop)
	return e
}

// OpenAPIDocument reads the repository's openapi.yaml, which main embeds.
func OpenAPIDocument(t testing.TB) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "openapi.yaml"))
	if err != nil {
		t.Fatalf("apptest: %v", err)
	}
	return raw
}

// Stop stops the server and the app; safe to call twice.
func (e *Env) Stop() {
	if e.Server != nil {
		e.Server.Close()
		e.Server = nil
		_ = e.App.Close()
	}
}

// Response is a finished HTTP exchange.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic value.
func (r *Response) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// Do sends a request. body is sent as is when it is a string or []byte,
// JSON-encoded otherwise (nil sends none). token "" sends no Authorization.
func (e *Env) Do(method, path string, body any, token string, headers ...string) *Response {
	e.T.Helper()
	resp, err := Send(e.Server.Client(), e.Server.URL, method, path, body, token, headers...)
	if err != nil {
		e.T.Fatalf("apptest: %s %s: %v", method, path, err)
	}
	return resp
}

// Send is Do for any client and base URL (another instance, say). It
// reports errors instead of failing the test, so goroutines may call it.
func Send(client *http.Client, base, method, path string, body any, token string, headers ...string) (*Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}, err
}

// Admin sends a request with the admin key.
func (e *Env) Admin(method, path string, body any) *Response {
	e.T.Helper()
	return e.Do(method, path, body, AdminKey)
}
