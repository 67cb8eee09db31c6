package database

import (
	"container/list"
	"context"
	"database/sql"
	"database/sql/driver"
	"strings"
	"sync"
)

// maxCachedStmts bounds the statements a stmtCache keeps: the least
// recently used is let go past it. A kept statement holds about 15 KB per
// connection that ran it (a 21-column table), so the bound is a memory
// bound too.
const maxCachedStmts = 256

// stmtCache is the SQLite read pool as GORM sees it (a gorm.ConnPool): it
// runs each statement prepared, keeping it for the next run of the same
// text. modernc.org/sqlite keeps a prepared statement compiled between
// runs, and database/sql keeps one per connection of the pool, while a
// statement run by its text is parsed and planned anew every time: about
// a third of the database's time for a read of one record.
//
// It keeps the maxCachedStmts most recently used texts. A statement let go
// (evicted, or dropped by reset after a schema change, which leaves old
// texts unused) is closed once no run holds it: GORM's own PrepareStmt mode
// closes it at once, and a run that had just looked it up then fails with
// "statement is closed". A schema change needs nothing for correctness:
// SQLite prepares a statement again when the schema it was compiled
// against has changed. Transactions get a plain *sql.Tx, whose statements
// are not cached.
type stmtCache struct {
	db *sql.DB

	mu    sync.Mutex
	stmts map[string]*list.Element // of *cachedStmt, most recent first
	lru   list.List
}

// cachedStmt is a kept statement and the runs that hold it.
type cachedStmt struct {
	query string
	stmt  *sql.Stmt
	users int
	gone  bool // no longer kept: closed when the last user releases it
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, stmts: make(map[string]*list.Element)}
}

// acquire is query's prepared statement, held until release, or nil when
// it does not prepare (it then runs by its text, and its error comes from
// that run, as without the cache).
func (c *stmtCache) acquire(ctx context.Context, query string) *cachedStmt {
	c.mu.Lock()
	if e, ok := c.stmts[query]; ok {
		c.lru.MoveToFront(e)
		cs := e.Value.(*cachedStmt)
		cs.users++
		c.mu.Unlock()
		return cs
	}
	c.mu.Unlock()
	s, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.stmts[query]; ok { // prepared twice at once: keep the first
		_ = s.Close()
		cs := e.Value.(*cachedStmt)
		cs.users++
		return cs
	}
	cs := &cachedStmt{query: query, stmt: s, users: 1}
	c.stmts[query] = c.lru.PushFront(cs)
	for c.lru.Len() > maxCachedStmts {
		c.letGo(c.lru.Back())
	}
	return cs
}

// release ends a run's hold on cs. (Rows still open keep the statement's
// connection statement alive on their own: database/sql closes it after
// them.)
func (c *stmtCache) release(cs *cachedStmt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs.users--
	if cs.gone && cs.users == 0 {
		_ = cs.stmt.Close()
	}
}

// letGo stops keeping e's statement, closing it unless a run holds it.
// c.mu is held.
func (c *stmtCache) letGo(e *list.Element) {
	cs := c.lru.Remove(e).(*cachedStmt)
	delete(c.stmts, cs.query)
	cs.gone = true
	if cs.users == 0 {
		_ = cs.stmt.Close()
	}
}

// reset lets every statement go: after a schema change the texts of the
// tables it changed are not run again.
func (c *stmtCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.Front(); e != nil; e = c.lru.Front() {
		c.letGo(e)
	}
}

func (c *stmtCache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if cs := c.acquire(ctx, query); cs != nil {
		defer c.release(cs)
		return cs.stmt.ExecContext(ctx, args...)
	}
	return c.db.ExecContext(ctx, query, args...)
}

func (c *stmtCache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if cs := c.acquire(ctx, query); cs != nil {
		defer c.release(cs)
		return cs.stmt.QueryContext(ctx, args...)
	}
	return c.db.QueryContext(ctx, query, args...)
}

func (c *stmtCache) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if cs := c.acquire(ctx, query); cs != nil {
		defer c.release(cs)
		return cs.stmt.QueryRowContext(ctx, args...)
	}
	return c.db.QueryRowContext(ctx, query, args...)
}

func (c *stmtCache) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return c.db.PrepareContext(ctx, query)
}

// BeginTx makes GORM's transactions plain ones (gorm.TxBeginner).
func (c *stmtCache) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	return c.db.BeginTx(ctx, opts)
}

// GetDBConn is the pool itself, for gorm.DB.DB.
func (c *stmtCache) GetDBConn() (*sql.DB, error) { return c.db, nil }

// maxConnStmts bounds the statements a cachingConn keeps: the least
// recently used is finalized past it.
const maxConnStmts = 128

// cachingConnector opens the SQLite write connection, through the
// driver's own connector, as a cachingConn.
type cachingConnector struct{ driver.Connector }

func (c cachingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &cachingConn{Conn: conn, stmts: make(map[string]*list.Element)}, nil
}

// cachingConn is a SQLite connection that keeps the statements of the
// writes it executes (INSERT, UPDATE, DELETE) prepared, so that a create's
// INSERTs are not parsed and planned at every run. The write connection
// runs every statement inside a transaction, where database/sql prepares
// per transaction (a statement kept by stmtCache would be prepared again in
// each one), so the cache is the connection's own, below database/sql.
// database/sql uses a connection from one goroutine at a time, and an Exec
// leaves its statement reset, so a kept statement is never in use when it
// runs or is finalized. It keeps the maxConnStmts most recently used texts
// and finalizes them when the connection closes; other statements, and
// queries, go to the driver as they are.
type cachingConn struct {
	driver.Conn
	stmts map[string]*list.Element // of connStmt, most recent first
	lru   list.List
}

// connStmt is a statement a cachingConn keeps.
type connStmt struct {
	query string
	stmt  driver.Stmt
}

var (
	_ driver.ExecerContext      = (*cachingConn)(nil)
	_ driver.QueryerContext     = (*cachingConn)(nil)
	_ driver.ConnBeginTx        = (*cachingConn)(nil)
	_ driver.ConnPrepareContext = (*cachingConn)(nil)
	_ driver.Pinger             = (*cachingConn)(nil)
	_ driver.SessionResetter    = (*cachingConn)(nil)
	_ driver.Validator          = (*cachingConn)(nil)
)

// maxKeptParams bounds the parameters of a statement a cachingConn keeps:
// larger ones (a multi-row event insert of many rows, retention's DELETE
// of an id list) are mostly one-offs, hold 50-130 KB each prepared, and
// would push the hot single-row INSERTs out.
const maxKeptParams = 256

// cacheable tells whether query is a write worth keeping prepared: one
// INSERT, UPDATE or DELETE statement (SQLite prepares a script anew at
// every run anyway) of at most maxKeptParams parameters.
func cacheable(query string) bool {
	q := strings.TrimSpace(query)
	if len(q) < 6 {
		return false
	}
	switch strings.ToUpper(q[:6]) {
	case "INSERT", "UPDATE", "DELETE":
	default:
		return false
	}
	return !strings.Contains(q, ";") && strings.Count(q, "?") <= maxKeptParams
}

// stmt is query's kept statement, prepared now if it is a write not kept
// yet, or nil.
func (c *cachingConn) stmt(ctx context.Context, query string) driver.Stmt {
	if e, ok := c.stmts[query]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(connStmt).stmt
	}
	if !cacheable(query) {
		return nil
	}
	// A statement that does not prepare runs by its text, which gives its
	// error as it always did.
	s, err := c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.stmts[query] = c.lru.PushFront(connStmt{query, s})
	for c.lru.Len() > maxConnStmts {
		old := c.lru.Remove(c.lru.Back()).(connStmt)
		delete(c.stmts, old.query)
		_ = old.stmt.Close()
	}
	return s
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if s := c.stmt(ctx, query); s != nil {
		return s.(driver.StmtExecContext).ExecContext(ctx, args)
	}
	return c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
}

func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
}

func (c *cachingConn) Ping(ctx context.Context) error {
	return c.Conn.(driver.Pinger).Ping(ctx)
}

func (c *cachingConn) ResetSession(ctx context.Context) error {
	return c.Conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c *cachingConn) IsValid() bool { return c.Conn.(driver.Validator).IsValid() }

// Unwrap is the driver's own connection, for sql.Conn.Raw users of
// modernc.org/sqlite's extensions (as its connector documentation asks of
// wrappers).
func (c *cachingConn) Unwrap() driver.Conn { return c.Conn }

// Close finalizes the kept statements, then closes the connection.
func (c *cachingConn) Close() error {
	for e := c.lru.Front(); e != nil; e = c.lru.Front() {
		_ = c.lru.Remove(e).(connStmt).stmt.Close()
	}
	clear(c.stmts)
	return c.Conn.Close()
}
