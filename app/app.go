// Package app wires Herald together: configuration, database, schema,
// services and the HTTP server. main.go and the tests and benchmarks start
// Herald through it.
package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/herald-dev/herald/api"
	"github.com/herald-dev/herald/auth"
	"github.com/herald-dev/herald/classify"
	"github.com/herald-dev/herald/console"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/models"
	"github.com/herald-dev/herald/realtime"
	"github.com/herald-dev/herald/resources"
	"github.com/herald-dev/herald/webhooks"
)

var _ api.TokenVerifier = (*auth.Verifier)(nil)

// App is a running Herald instance's parts.
type App struct {
	cfg     Config
	log     *slog.Logger
	out     io.Writer
	openapi []byte
	getenv  func(string) string
	db      *database.DB
	store   *resources.Store
	server  *api.Server

	tracer *sdktrace.TracerProvider
	// tracesExported: OTEL_* export spans (else tracer records none).
	tracesExported bool
	verifier       *auth.Verifier
	metrics        *prometheus.Registry
	relay          *events.Relay
	retention      *events.Retention
	classifier     *classify.Classifier

	closeOnce sync.Once
	closeErr  error
	queue     *webhooks.Queue
	webhooks  *webhooks.Service
	hub       *realtime.Hub
	waker     *realtime.Waker // PostgreSQL only
}

// Version is Herald's version, sent in webhooks' User-Agent
// (Herald/<version>). Release builds set it with -ldflags "-X".
var Version = "dev"

// Options are New's dependencies beyond the configuration.
type Options struct {
	// Logger defaults to a JSON logger on stderr.
	Logger *slog.Logger
	// Out receives the one-time admin key message. Default os.Stdout.
	Out io.Writer
	// OpenAPI is the static openapi.yaml, the base of GET /v1/_openapi
	// (main embeds it). Optional.
	OpenAPI []byte
	// Getenv reads the OTEL_* variables. Default os.Getenv.
	Getenv func(string) string
}

// New opens the database, applies the schema and builds the server. The
// caller must Close it.
func New(ctx context.Context, cfg Config, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	a := &App{cfg: cfg, log: opts.Logger, out: opts.Out, openapi: opts.OpenAPI, getenv: opts.Getenv}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	db, err := database.Open(ctx, database.Config{URL: cfg.DatabaseURL, SQLiteSync: cfg.SQLiteSync})
	if err != nil {
		return nil, err
	}
	a.db = db
	if err := a.init(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return a, nil
}

func (a *App) init(ctx context.Context) error {
	dialect := events.SQLite
	if a.db.Kind == database.Postgres {
		dialect = events.Postgres
	}
	if err := a.migrateOwnTables(ctx); err != nil {
		return err
	}
	var err error
	if a.tracer, a.tracesExported, err = newTracerProviderWithLogger(ctx, a.getenv, a.log); err != nil {
		return err
	}
	if err := database.Trace(a.db.Write, a.db.Kind, a.tracer); err != nil {
		return fmt.Errorf("app: tracing: %w", err)
	}
	if a.db.Read != a.db.Write {
		if err := database.Trace(a.db.Read, a.db.Kind, a.tracer); err != nil {
			return fmt.Errorf("app: tracing: %w", err)
		}
	}
	a.metrics = prometheus.NewRegistry()
	a.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.hub = realtime.NewHub(realtime.HubConfig{MaxPerCaller: a.cfg.SSEMaxPerCaller, MaxTotal: a.cfg.SSEMaxStreams,
		Logger: a.log, Metrics: a.metrics}, a.db.Read)
	if a.db.Kind == database.Postgres {
		a.waker = realtime.NewWaker(a.cfg.DatabaseURL, a.hub.Wake, a.log)
	}
	onCommit := func() {
		a.relay.Notify()
		a.hub.Wake()
		if a.waker != nil {
			a.waker.Poke()
		}
	}
	storeCfg := resources.StoreConfig{Logger: a.log, OnCommit: onCommit, WriteTimeout: a.cfg.WriteTimeout,
		OnSchema: func(version int) {
			a.hub.SchemaChanged(version)
			if a.classifier != nil {
				a.classifier.SchemaChanged(version)
			}
		}}
	if dialect == events.Postgres {
		storeCfg.Writers = postgresWriters
	}
	if !a.cfg.DisableEvents {
		storeCfg.TxHooks = []resources.TxHook{func(tx *gorm.DB) (*gorm.DB, func() error) {
			run, buf := events.Buffered(tx, dialect)
			return run, func() error { return buf.Flush(run) }
		}}
	}
	// The classifier reads the events buffer, so its hook comes after the
	// events hook (and its beforeCommit runs before the flush).
	var classifier *classify.Classifier
	if !a.cfg.DisableEvents {
		storeCfg.TxHooks = append(storeCfg.TxHooks, func(tx *gorm.DB) (*gorm.DB, func() error) {
			return classifier.TxHook(tx)
		})
	}
	a.store = resources.NewStore(storeCfg, a.db)
	if !a.cfg.DisableEvents {
		if classifier, err = classify.New(classify.Config{Interval: a.cfg.ClassifyInterval,
			BatchSize: a.cfg.ClassifyBatchSize, Logger: a.log}, a.store); err != nil {
			return err
		}
		a.classifier = classifier
	}
	if !a.cfg.DisableEvents {
		if err := a.db.Write.Use(events.NewPlugin(dialect, a.store.DecodeRow, nil)); err != nil {
			return fmt.Errorf("app: events plugin: %w", err)
		}
	}
	guard := &webhooks.Guard{AllowPrivate: a.cfg.WebhookAllowPrivate}
	a.queue = webhooks.NewQueue(webhooks.QueueConfig{Guard: guard, UserAgent: "Herald/" + Version, TracerProvider: a.tracer,
		Logger: a.log, Metrics: webhooks.NewMetrics(a.metrics)}, a.db.Read, a.store, a.db.Kind)
	a.webhooks = webhooks.NewService(a.store, guard, a.queue, nil)
	a.relay = events.NewRelay(events.RelayConfig{Logger: a.log, Metrics: events.NewMetrics(a.metrics)}, a.db.Read, a.store,
		webhooks.NewDispatcher(a.store, a.queue, nil), events.NewIndexer())
	a.retention = events.NewRetention(events.RetentionConfig{Retention: a.cfg.EventRetention, Logger: a.log,
		Holds: []events.Holder{a.webhooks}}, a.db.Write)
	if err := a.loadSchema(ctx); err != nil {
		return err
	}
	keyHash, err := a.adminKey(ctx)
	if err != nil {
		return err
	}
	apiCfg := api.Config{
		AdminKeyHash:   keyHash,
		MaxBody:        a.cfg.MaxBody,
		RequestTimeout: a.cfg.RequestTimeout,
		Logger:         a.log,
		Ready:          a.ready,
		Metrics:        a.metrics,
		TrustedProxies: a.cfg.TrustedProxies,
		SessionClaims:  a.cfg.SessionClaims,
		CORSOrigins:    a.cfg.CORSOrigins,
		TracerProvider: a.tracer,
		// Nothing exports: the provider samples nothing (see
		// newTracerProviderWithLogger).
		SpansUnrecorded: !a.tracesExported,
		Propagator:      propagator(),
		Webhooks:        a.webhooks,
		Hub:             a.hub,
		OpenAPI:         a.openapi,
		Console:         console.Files(),
	}
	if a.cfg.JWTSecret != "" || a.cfg.JWKSURL != "" {
		a.verifier, err = auth.NewVerifier(ctx, auth.VerifierConfig{
			Secret: a.cfg.JWTSecret, JWKSURL: a.cfg.JWKSURL, RoleClaim: a.cfg.JWTRoleClaim,
			Audience: a.cfg.JWTAudience, Issuer: a.cfg.JWTIssuer})
		if err != nil {
			return fmt.Errorf("app: HERALD_JWT_SECRET/HERALD_JWKS_URL: %w", err)
		}
		apiCfg.Verifier = a.verifier
	}
	a.server, err = api.New(apiCfg, a.store, events.NewAudit(a.db.Read))
	if err != nil {
		return err
	}
	// The hub first: it only reads the log's head, and a failure then
	// leaves nothing running.
	if err := a.hub.Start(ctx); err != nil {
		return err
	}
	a.store.Start()
	if err := a.relay.Start(ctx); err != nil {
		a.store.Stop()
		a.hub.Stop()
		return err
	}
	a.queue.Start()
	a.retention.Start()
	if a.classifier != nil {
		if err := a.classifier.Start(ctx); err != nil {
			return err
		}
	}
	if a.waker != nil {
		a.waker.Start()
	}
	return nil
}

// check validates what can be validated before any side effect: the
// token settings and the schema file. A bad one used to be reported only
// after the database was created, the schema applied and the one-time
// admin key printed (and lost).
func (c Config) check() error {
	if c.JWTSecret != "" || c.JWKSURL != "" {
		vc := auth.VerifierConfig{Secret: c.JWTSecret, JWKSURL: c.JWKSURL, RoleClaim: c.JWTRoleClaim,
			Audience: c.JWTAudience, Issuer: c.JWTIssuer}
		if err := vc.Validate(); err != nil {
			return fmt.Errorf("app: HERALD_JWT_SECRET/HERALD_JWKS_URL: %w", err)
		}
	}
	doc, err := os.ReadFile(c.Schema)
	switch {
	case errors.Is(err, os.ErrNotExist) && !c.SchemaExplicit:
		return nil
	case err != nil:
		return fmt.Errorf("app: HERALD_SCHEMA: %w", err)
	}
	if _, err := resources.ParseSchema(doc); err != nil {
		return fmt.Errorf("app: HERALD_SCHEMA %s: %w", c.Schema, err)
	}
	return nil
}

// postgresWriters is how many write transactions run at once on
// PostgreSQL. They overlap everything but the event flush and the commit,
// which the event position lock serialises: two let one batch run its
// statements while the other flushes and commits, and more only split the
// waiting requests into smaller batches that queue for the lock. Measured
// with go run ./bench -db postgres -ops create, 4 runs each, 2 cores:
// 2 writers made 1,042-1,509 creates/s at 8 clients and 2,166-2,692 at
// 32; 4 writers 849-1,086 and 1,648-2,175; 1 writer 961-1,061 and
// 1,917-2,156.
const postgresWriters = 2

// bootstrapLockKey serialises the creation of Herald's own tables between
// instances starting together on one PostgreSQL ("hboot"). It differs from
// the schema migration's lock, which is taken later on another connection.
const bootstrapLockKey = 0x68626f6f74

// migrateOwnTables applies the steps of Herald's own tables' history that
// the database lacks (migrations.go).
func (a *App) migrateOwnTables(ctx context.Context) error {
	return a.db.Write.WithContext(ctx).Connection(func(conn *gorm.DB) error {
		if a.db.Kind == database.Postgres {
			if err := conn.Exec("SELECT pg_advisory_lock(?)", bootstrapLockKey).Error; err != nil {
				return fmt.Errorf("app: bootstrap lock: %w", err)
			}
			defer conn.Exec("SELECT pg_advisory_unlock(?)", bootstrapLockKey)
		}
		return database.Migrate(ctx, conn, a.db.Kind, migrations())
	})
}

// loadSchema applies the schema file when there is one and it changed
// since it was last applied, else serves the stored schema. Remembering
// the file's hash means a restart with the same file keeps what the import
// API added since. A changed file whose plan is destructive stops
// start-up: such changes go through the import API with
// allowDestructive=true.
func (a *App) loadSchema(ctx context.Context) error {
	doc, err := os.ReadFile(a.cfg.Schema)
	if errors.Is(err, os.ErrNotExist) && !a.cfg.SchemaExplicit {
		return a.store.Load(ctx)
	}
	if err != nil {
		return fmt.Errorf("app: HERALD_SCHEMA: %w", err)
	}
	sc, err := resources.ParseSchema(doc)
	if err != nil {
		return fmt.Errorf("app: schema %s: %w", a.cfg.Schema, err)
	}
	sum := sha256.Sum256(doc)
	hash := base64.StdEncoding.EncodeToString(sum[:])
	var applied models.Setting
	if err := a.db.Read.WithContext(ctx).Where("key = ?", schemaFileSetting).Limit(1).Find(&applied).Error; err != nil {
		return fmt.Errorf("app: read schema file hash: %w", err)
	}
	if applied.Value == hash {
		if err := a.store.Load(ctx); err != nil {
			return err
		}
		if len(a.store.Schema().Resources) > 0 {
			return nil // the same file, already applied
		}
	}
	res, err := a.store.Apply(ctx, sc, false, false)
	if err != nil {
		return fmt.Errorf("app: apply schema %s: %w", a.cfg.Schema, err)
	}
	if len(res.Changes) > 0 {
		a.log.Info("schema applied", "file", a.cfg.Schema, "version", res.Version, "changes", len(res.Changes))
	}
	err = a.db.Write.WithContext(ctx).Clauses(clause.OnConflict{UpdateAll: true}).
		Create(&models.Setting{Key: schemaFileSetting, Value: hash}).Error
	if err != nil {
		return fmt.Errorf("app: store schema file hash: %w", err)
	}
	return nil
}

const schemaFileSetting = "schema_file_sha256"

const adminKeySetting = "admin_key_sha256"

// adminKey returns the admin key's hash: HERALD_ADMIN_KEY's, else the one
// stored, else a new key's, which is stored (as a hash) and printed once.
func (a *App) adminKey(ctx context.Context) ([32]byte, error) {
	if a.cfg.AdminKey != "" {
		return sha256.Sum256([]byte(a.cfg.AdminKey)), nil
	}
	db := a.db.Write.WithContext(ctx)
	var s models.Setting
	if err := db.Where("key = ?", adminKeySetting).Limit(1).Find(&s).Error; err != nil {
		return [32]byte{}, fmt.Errorf("app: read admin key: %w", err)
	}
	if s.Value == "" {
		buf := make([]byte, 24)
		_, _ = rand.Read(buf)
		key := "hk_" + base64.RawURLEncoding.EncodeToString(buf)
		sum := sha256.Sum256([]byte(key))
		res := db.Clauses(clause.OnConflict{DoNothing: true}).Create(&models.Setting{Key: adminKeySetting, Value: base64.StdEncoding.EncodeToString(sum[:])})
		if res.Error != nil {
			return [32]byte{}, fmt.Errorf("app: store admin key: %w", res.Error)
		}
		if res.RowsAffected == 1 {
			fmt.Fprintf(a.out, "Herald generated an admin key. It is shown once; keep it:\n\n    %s\n\n", key)
			return sum, nil
		}
		// Another instance stored one first: use that.
		if err := db.Where("key = ?", adminKeySetting).Limit(1).Find(&s).Error; err != nil {
			return [32]byte{}, fmt.Errorf("app: read admin key: %w", err)
		}
	}
	var sum [32]byte
	raw, err := base64.StdEncoding.DecodeString(s.Value)
	if err != nil || len(raw) != 32 {
		return sum, errors.New("app: stored admin key is corrupt; set HERALD_ADMIN_KEY")
	}
	copy(sum[:], raw)
	return sum, nil
}

func (a *App) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return a.db.Ping(ctx)
}

// Handler is the HTTP handler.
func (a *App) Handler() http.Handler { return a.server }

// Store is the resource store.
func (a *App) Store() *resources.Store { return a.store }

// DB is the open database.
func (a *App) DB() *database.DB { return a.db }

// Relay is the outbox relay.
func (a *App) Relay() *events.Relay { return a.relay }

// Hub is the realtime hub.
func (a *App) Hub() *realtime.Hub { return a.hub }

// Queue is the webhook delivery queue.
func (a *App) Queue() *webhooks.Queue { return a.queue }

// Close stops the services and closes the database; safe to call twice.
// Deliveries in flight are handed back to the queue, queued writes
// finish; events not yet dispatched stay in the log and are dispatched at
// the next start.
func (a *App) Close() error {
	a.closeOnce.Do(func() { a.closeErr = a.close() })
	return a.closeErr
}

// close is Close's work, done once: Serve may run it in the background
// (an exit capped by the shutdown timeout) while the caller closes too.
func (a *App) close() error {
	a.hub.Stop()
	if a.waker != nil {
		a.waker.Stop()
	}
	a.queue.Stop()
	a.relay.Stop()
	a.retention.Stop()
	if a.classifier != nil {
		a.classifier.Stop()
	}
	a.store.Stop()
	if a.verifier != nil {
		a.verifier.Close()
	}
	if a.tracer != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = a.tracer.Shutdown(sctx)
		cancel()
	}
	if a.db == nil {
		return nil
	}
	err := a.db.Close()
	a.db = nil
	return err
}

// Serve answers HTTP on ln until ctx is done, then shuts down gracefully:
// it stops accepting, waits for requests in flight (up to the shutdown
// timeout), finishes queued writes and closes the database.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	// Requests get a context that the shutdown signal does not cancel:
	// Shutdown lets them finish. It is cancelled once Shutdown returns (or
	// times out), which is what will end long-lived streams.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	// Slow and idle clients are cut off: a request must arrive within
	// ReadTimeout (headers within 10 s), an idle keep-alive connection
	// closes after IdleTimeout, and a response may take WriteTimeout
	// (HERALD_WRITE_TIMEOUT plus time to queue and to send). SSE streams
	// are taken over from the server and set their own write deadlines.
	// The listener accepts at most MaxConns connections at once.
	srv := &http.Server{
		Handler:           a.server,
		ReadHeaderTimeout: min(10*time.Second, a.cfg.ReadTimeout),
		ReadTimeout:       a.cfg.ReadTimeout,
		WriteTimeout:      max(3*a.cfg.WriteTimeout, a.cfg.RequestTimeout) + 30*time.Second,
		IdleTimeout:       a.cfg.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	ln = netutil.LimitListener(ln, a.cfg.MaxConns)
	// Streams are closed with a retry hint as the shutdown begins; Shutdown
	// would otherwise wait for them until its timeout.
	srv.RegisterOnShutdown(a.hub.Shutdown)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info("herald listening", "url", listenURL(ln.Addr()), "console", listenURL(ln.Addr())+"/_/",
		"database", string(a.db.Kind)+" "+redactURL(a.cfg.DatabaseURL), "schema", a.schemaSource(), "tracing", tracingTarget(a.getenv))
	select {
	case err := <-errc:
		// The listener failed: let the requests in flight finish before
		// the database closes under them.
		sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		_ = srv.Shutdown(sctx)
		cancel()
		cancelBase()
		_ = a.Close()
		return err
	case <-ctx.Done():
	}
	a.log.Info("shutting down")
	deadline := time.Now().Add(a.cfg.ShutdownTimeout)
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Connections still open at the deadline (requests running, or
		// clients that never sent one) are closed; that is the configured
		// outcome of a shutdown, not a failure of it.
		a.log.Warn("shutdown timeout: connections still open at the deadline were closed", "err", err)
		_ = srv.Close()
	}
	cancelBase()
	// HERALD_SHUTDOWN_TIMEOUT caps the exit too: background work that
	// outlives it (a webhook attempt to a slow endpoint, say) is left to
	// its lease, and the next start takes it over.
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	t := time.NewTimer(max(time.Until(deadline), 0) + time.Second)
	defer t.Stop()
	select {
	case err := <-closed:
		return err
	case <-t.C:
		a.log.Warn("shutdown timeout: exiting with background work still stopping")
		return nil
	}
}

// Run starts Herald with cfg and serves until ctx is done.
func Run(ctx context.Context, cfg Config, opts Options) error {
	a, err := New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = a.Close()
		return fmt.Errorf("app: HERALD_ADDR %s: %w", cfg.Addr, err)
	}
	return a.Serve(ctx, ln)
}
