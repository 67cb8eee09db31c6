package database

import (
	"context"
	"database/sql"
	"sync"
)

// maxCachedStmts bounds the statements a stmtCache keeps; statements past
// it run by their text, as without the cache.
const maxCachedStmts = 1024

// stmtCache is the SQLite read pool as GORM sees it (a gorm.ConnPool): it
// runs each statement prepared, keeping it for the next run of the same
// text. modernc.org/sqlite keeps a prepared statement compiled between
// runs, and database/sql keeps one per connection of the pool, while a
// statement run by its text is parsed and planned anew every time: about
// a third of the database's time for a read of one record.
//
// Unlike GORM's own PrepareStmt mode it never closes a statement while
// the pool is open (GORM's cache evicts and expires statements, and one
// closed between its lookup and its use fails the query with "statement is
// closed"): it keeps the first maxCachedStmts texts and runs the rest by
// text. A schema change needs nothing: SQLite prepares a statement again
// when the schema it was compiled against has changed. Transactions get
// a plain *sql.Tx, whose statements are not cached.
type stmtCache struct {
	db *sql.DB

	mu    sync.RWMutex
	stmts map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, stmts: make(map[string]*sql.Stmt)}
}

// stmt is query's prepared statement, or nil when the cache is full or
// the statement does not prepare (it then runs by its text, and its error
// comes from that run, as without the cache).
func (c *stmtCache) stmt(ctx context.Context, query string) *sql.Stmt {
	c.mu.RLock()
	s, ok := c.stmts[query]
	full := len(c.stmts) >= maxCachedStmts
	c.mu.RUnlock()
	if ok || full {
		return s
	}
	s, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if have, ok := c.stmts[query]; ok {
		_ = s.Close() // prepared twice at once: keep the first
		return have
	}
	if len(c.stmts) >= maxCachedStmts {
		_ = s.Close()
		return nil
	}
	c.stmts[query] = s
	return s
}

func (c *stmtCache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := c.stmt(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return c.db.ExecContext(ctx, query, args...)
}

func (c *stmtCache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := c.stmt(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return c.db.QueryContext(ctx, query, args...)
}

func (c *stmtCache) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := c.stmt(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
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

// close closes the cached statements (the pool is closed after them).
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, s := range c.stmts {
		_ = s.Close()
		delete(c.stmts, q)
	}
}
