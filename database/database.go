// Package database opens Herald's store: embedded SQLite (pure Go) or
// PostgreSQL, behind GORM. SQLite allows one writer at a time, so writes go
// through a single connection and reads through a separate pool; on
// PostgreSQL both handles share one pool. The create path's statements
// (Insert, Exec) and the JSON encoding of the records it stores
// (AppendJSON) are here too: the lean ways to write a row.
package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	sqlite "github.com/libtnb/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	moderncsqlite "modernc.org/sqlite"
)

// Kind names the database engine.
type Kind string

// The supported engines.
const (
	SQLite   Kind = "sqlite"
	Postgres Kind = "postgres"
)

// Config says which database to open.
type Config struct {
	// URL is a postgres:// URL, or a SQLite file path (optionally prefixed
	// with sqlite:// or file:). Default "herald.db".
	URL string
	// SQLiteSync is SQLite's synchronous setting: "NORMAL" (default; survives
	// kill -9, may lose the last commits on power loss) or "FULL".
	SQLiteSync string
	// MaxConns caps the PostgreSQL pool (default 32) and the SQLite read
	// pool (default 8).
	MaxConns int
}

// DB is an open store.
type DB struct {
	Kind Kind
	// gen counts schema changes; a PostgreSQL connection whose prepared
	// statements predate the latest one drops them before its next use.
	gen atomic.Int64
	// Write is the handle for writes and migrations. On SQLite it is one
	// connection, so transactions never meet SQLITE_BUSY.
	Write *gorm.DB
	// Read is the handle for reads.
	Read *gorm.DB
	// readConns is the SQLite read pool's size.
	readConns int
	// stmts is the SQLite read pool's prepared statements.
	stmts *stmtCache
}

// IsPostgres tells whether the URL names PostgreSQL.
func IsPostgres(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// Open opens the database and checks that it answers.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 32
	}
	// Times GORM fills in (autoCreateTime, autoUpdateTime) are UTC: SQLite
	// stores them as text and compares them as text, which is only right
	// when every value has the same offset.
	gcfg := &gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true, PrepareStmt: false,
		NowFunc: func() time.Time { return time.Now().UTC() }}
	if IsPostgres(cfg.URL) {
		d := &DB{Kind: Postgres}
		pcfg, err := pgx.ParseConfig(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("database: HERALD_DATABASE_URL: %w", err)
		}
		sqlDB := stdlib.OpenDB(*pcfg,
			stdlib.OptionAfterConnect(func(_ context.Context, c *pgx.Conn) error {
				c.PgConn().CustomData()[genKey] = d.gen.Load()
				return nil
			}),
			stdlib.OptionResetSession(d.resetStatements))
		g, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), gcfg)
		if err != nil {
			return nil, fmt.Errorf("database: open postgres: %w", err)
		}
		sqlDB.SetMaxOpenConns(cfg.MaxConns)
		sqlDB.SetMaxIdleConns(cfg.MaxConns)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
		if err := sqlDB.PingContext(ctx); err != nil {
			_ = sqlDB.Close()
			return nil, fmt.Errorf("database: connect postgres: %w", err)
		}
		d.Write, d.Read = g, g
		return d, nil
	}
	path := cfg.URL
	if path == "" {
		path = "herald.db"
	}
	path = strings.TrimPrefix(strings.TrimPrefix(path, "sqlite://"), "file:")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	sync := strings.ToUpper(cfg.SQLiteSync)
	if sync == "" {
		sync = "NORMAL"
	}
	if sync != "NORMAL" && sync != "FULL" {
		return nil, fmt.Errorf("database: SQLite synchronous must be NORMAL or FULL, not %q", cfg.SQLiteSync)
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "foreign_keys(1)",
		"synchronous(" + sync + ")", "case_sensitive_like(1)"} {
		q.Add("_pragma", p)
	}
	// Times are written as "2006-01-02 15:04:05.999999999-07:00", as the
	// driver Herald used before (glebarez/go-sqlite) wrote them (without
	// this, modernc.org/sqlite writes time.Time.String()), and DATETIME
	// columns read as times: the settings GORM's dialector would add.
	q.Set("_time_format", "sqlite")
	q.Set("_texttotime", "1")
	q.Set("_inttotime", "1")
	dsn := "file:" + path + "?" + q.Encode()
	// The write connection keeps its writes prepared (see cachingConn).
	conn, err := moderncsqlite.NewConnector(dsn + "&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("database: open sqlite %s: %w", path, err)
	}
	wdb := sql.OpenDB(cachingConnector{conn})
	w, err := gorm.Open(sqlite.New(sqlite.Config{Conn: wdb}), gcfg)
	if err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("database: open sqlite %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxIdleTime(0)
	wdb.SetConnMaxLifetime(0)
	if err := wdb.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("database: open sqlite %s: %w", path, err)
	}
	// Reads run prepared, from a cache of statements (see stmtCache).
	rdb, err := sql.Open(sqlite.DriverName, dsn)
	if err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("database: open sqlite %s: %w", path, err)
	}
	stmts := newStmtCache(rdb)
	r, err := gorm.Open(sqlite.New(sqlite.Config{Conn: stmts}), gcfg)
	if err != nil {
		_ = wdb.Close()
		_ = rdb.Close()
		return nil, fmt.Errorf("database: open sqlite %s: %w", path, err)
	}
	reads := cfg.MaxConns
	if reads > 8 {
		reads = 8
	}
	rdb.SetMaxOpenConns(reads)
	rdb.SetMaxIdleConns(reads)
	return &DB{Kind: SQLite, Write: w, Read: r, readConns: reads, stmts: stmts}, nil
}

const genKey = "herald_schema_gen"

// InvalidateStatements is called after DDL: every PostgreSQL connection
// drops its cached prepared statements before it is next used, since a
// statement prepared against the old table shapes fails ("cached plan must
// not change result type") or reads stale types. Statements stay prepared
// and cached otherwise, which saves PostgreSQL a parse and plan per query.
//
// On SQLite the idle read connections are closed: a connection that read a
// table before a rebuild was seen to read a row of the rebuilt table with a
// column missing (null) once, right after an import.
func (d *DB) InvalidateStatements() {
	d.gen.Add(1)
	if d.stmts != nil {
		d.stmts.reset()
	}
	if d.Kind == SQLite && d.Read != d.Write {
		if rdb, err := d.Read.DB(); err == nil {
			n := d.readConns
			rdb.SetMaxIdleConns(0)
			rdb.SetMaxIdleConns(n)
		}
	}
}

func (d *DB) resetStatements(ctx context.Context, c *pgx.Conn) error {
	data := c.PgConn().CustomData()
	want := d.gen.Load()
	if have, _ := data[genKey].(int64); have == want {
		return nil
	}
	if err := c.DeallocateAll(ctx); err != nil {
		// The server may still hold the old statements: use a fresh
		// connection instead.
		return driver.ErrBadConn
	}
	data[genKey] = want
	return nil
}

// Close closes both handles.
func (d *DB) Close() error {
	w, _ := d.Write.DB()
	err := w.Close()
	if d.stmts != nil {
		d.stmts.reset()
	}
	if d.Read != d.Write {
		r, _ := d.Read.DB()
		if rerr := r.Close(); err == nil {
			err = rerr
		}
	}
	return err
}

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error {
	r, err := d.Read.DB()
	if err != nil {
		return err
	}
	return r.PingContext(ctx)
}

// Quote quotes an identifier. Identifiers come from the validated schema
// only (^[a-z][a-z0-9_]*$); quoting is a second guard, not the first.
func Quote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
