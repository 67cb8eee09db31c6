package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver to create and drop bench databases

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/database"
)

// benchSchema is the one resource every operation uses. price is filterable
// so the list operation's price__gt filter is accepted.
const benchSchema = `resources:
  - name: items
    fields:
      - {name: title, type: string, required: true}
      - {name: price, type: number, filterable: true, sortable: true}
      - {name: qty, type: integer}
      - {name: tags, type: json}
      - {name: status, type: enum, enumValues: [draft, active, archived], default: draft}
`

// adminKey authorises every bench request. It only ever guards a throwaway
// database on loopback.
const adminKey = "herald-bench-admin-key-0123456789"

// target is one running Herald on a fresh database.
type target struct {
	baseURL string
	dbURL   string
	cancel  context.CancelFunc
	served  chan error
	cleanup []func() error // run in reverse order by stop
}

// startTarget creates a fresh database of kind, starts Herald on it with
// variant v applied, and serves on 127.0.0.1 at a free port.
func startTarget(ctx context.Context, opts options, kind database.Kind, v variant) (_ *target, err error) {
	t := &target{}
	defer func() {
		if err != nil {
			_ = t.runCleanup()
		}
	}()

	dir, err := os.MkdirTemp("", "herald-bench-")
	if err != nil {
		return nil, err
	}
	t.cleanup = append(t.cleanup, func() error { return os.RemoveAll(dir) })

	cfg, err := app.LoadConfig(nil, func(string) string { return "" })
	if err != nil {
		return nil, err
	}
	switch kind {
	case database.SQLite:
		cfg.DatabaseURL = filepath.Join(dir, "herald.db")
	case database.Postgres:
		u, drop, err := createPGDatabase(ctx, opts.pgURL)
		if err != nil {
			return nil, err
		}
		t.cleanup = append(t.cleanup, drop)
		cfg.DatabaseURL = u
	}
	cfg.Schema = filepath.Join(dir, "herald.yaml")
	cfg.SchemaExplicit = true
	schema := benchSchema
	if v.schema != "" {
		schema = v.schema
	}
	if err := os.WriteFile(cfg.Schema, []byte(schema), 0o600); err != nil {
		return nil, err
	}
	cfg.AdminKey = adminKey
	cfg.SQLiteSync = opts.sqliteSync
	cfg.ShutdownTimeout = 15 * time.Second
	if v.apply != nil {
		v.apply(&cfg)
	}

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := app.New(ctx, cfg, app.Options{Logger: logger, Out: io.Discard})
	if err != nil {
		return nil, fmt.Errorf("start herald: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = a.Close()
		return nil, err
	}
	// The server lives on its own context: an interrupt stops the load
	// first, and stop then shuts the server down gracefully.
	sctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	t.served = make(chan error, 1)
	go func() { t.served <- a.Serve(sctx, ln) }()
	t.baseURL = "http://" + ln.Addr().String()
	t.dbURL = cfg.DatabaseURL
	return t, nil
}

// stop shuts Herald down, waits for Serve to return, and removes the
// database. Safe to call twice.
func (t *target) stop() error {
	var err error
	if t.cancel != nil {
		t.cancel()
		if serr := <-t.served; serr != nil && !errors.Is(serr, context.Canceled) {
			err = fmt.Errorf("serve: %w", serr)
		}
		t.cancel = nil
	}
	return errors.Join(err, t.runCleanup())
}

func (t *target) runCleanup() error {
	var errs []error
	for i := len(t.cleanup) - 1; i >= 0; i-- {
		errs = append(errs, t.cleanup[i]())
	}
	t.cleanup = nil
	return errors.Join(errs...)
}

// createPGDatabase creates herald_bench_<random> on the server of serverURL
// and returns its URL and a func that drops it.
func createPGDatabase(ctx context.Context, serverURL string) (string, func() error, error) {
	admin, err := sql.Open("pgx", serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("postgres: %w", err)
	}
	defer admin.Close()
	buf := make([]byte, 8)
	_, _ = rand.Read(buf)
	name := "herald_bench_" + hex.EncodeToString(buf)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(cctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("postgres: create database %s on %s: %w", name, redact(serverURL), err)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("postgres: %w", err)
	}
	u.Path = "/" + name
	u.RawPath = ""
	drop := func() error {
		// Not ctx: the database must go even when the run was interrupted.
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := sql.Open("pgx", serverURL)
		if err != nil {
			return err
		}
		defer admin.Close()
		if _, err := admin.ExecContext(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("postgres: drop database %s: %w", name, err)
		}
		return nil
	}
	return u.String(), drop, nil
}

// redact hides a password in a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
