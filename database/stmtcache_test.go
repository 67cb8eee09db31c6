package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

func openSQLite(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), Config{URL: filepath.Join(t.TempDir(), "t.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NotNil(t, db.stmts, "the SQLite read pool has a statement cache")
	return db
}

// TestReadsRunPrepared: a read through GORM's read handle is prepared once
// and its statement kept for the next read of the same text, from any
// goroutine; a schema change (a column added, the table rebuilt) needs
// nothing; a statement that does not prepare fails as it would by text.
func TestReadsRunPrepared(t *testing.T) {
	db := openSQLite(t)
	require.NoError(t, db.Write.Exec(`CREATE TABLE things (id TEXT PRIMARY KEY, name TEXT, at DATETIME)`).Error)
	require.NoError(t, db.Write.Exec(`INSERT INTO things VALUES ('a', 'one', '2026-12-02 10:00:00.5+00:00')`).Error)
	const q = `SELECT * FROM things WHERE id = ?`
	read := func() map[string]any {
		var rows []map[string]any
		require.NoError(t, db.Read.Raw(q, "a").Scan(&rows).Error)
		require.Len(t, rows, 1)
		return rows[0]
	}
	row := read()
	require.Equal(t, "one", row["name"])
	first := keptRead(db, q)
	require.NotNil(t, first, "the read's statement is kept")

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				var rows []map[string]any
				if err := db.Read.Raw(q, "a").Scan(&rows).Error; err != nil || len(rows) != 1 {
					t.Error(err, rows)
				}
			}
		})
	}
	wg.Wait()
	require.Same(t, first, keptRead(db, q), "reused, not prepared again")

	// A column added: the kept statement (SELECT *) reads it.
	require.NoError(t, db.Write.Exec(`ALTER TABLE things ADD COLUMN n INTEGER DEFAULT 7`).Error)
	require.EqualValues(t, 7, read()["n"])
	// The table rebuilt under the same name, as a schema change does.
	for _, ddl := range []string{
		`CREATE TABLE things_new (id TEXT PRIMARY KEY, name TEXT, at DATETIME, n INTEGER, m TEXT DEFAULT 'x')`,
		`INSERT INTO things_new (id, name, at, n) SELECT id, name, at, n FROM things`,
		`DROP TABLE things`,
		`ALTER TABLE things_new RENAME TO things`,
	} {
		require.NoError(t, db.Write.Exec(ddl).Error)
	}
	row = read()
	require.Equal(t, "x", row["m"])
	require.Equal(t, "one", row["name"])
	require.Same(t, first, keptRead(db, q))

	// The table gone: the same error as by text, and nothing kept broken.
	require.NoError(t, db.Write.Exec(`DROP TABLE things`).Error)
	var rows []map[string]any
	err := db.Read.Raw(q, "a").Scan(&rows).Error
	require.ErrorContains(t, err, "no such table")
	err = db.Read.Raw(`SELECT * FROM nothing_here`).Scan(&rows).Error
	require.ErrorContains(t, err, "no such table")
	require.NotContains(t, db.stmts.stmts, `SELECT * FROM nothing_here`, "a statement that did not prepare is not kept")
}

// keptRead is the read pool's kept statement for q, or nil.
func keptRead(db *DB, q string) *sql.Stmt {
	db.stmts.mu.Lock()
	defer db.stmts.mu.Unlock()
	if e, ok := db.stmts.stmts[q]; ok {
		return e.Value.(*cachedStmt).stmt
	}
	return nil
}

// TestStmtCacheIsBounded: the read pool keeps the maxCachedStmts most
// recently used texts; a statement let go while a run holds it is closed
// only when that run is done, and the run succeeds; a schema change lets
// every statement go.
func TestStmtCacheIsBounded(t *testing.T) {
	db := openSQLite(t)
	ctx := context.Background()
	held := db.stmts.acquire(ctx, "SELECT 'held'")
	require.NotNil(t, held)
	for i := range maxCachedStmts + 10 {
		var n int64
		require.NoError(t, db.Read.Raw(fmt.Sprintf("SELECT %d", i)).Scan(&n).Error)
		require.EqualValues(t, i, n)
		if i == 0 {
			// Used again: it stays among the most recent.
			require.NoError(t, db.Read.Raw("SELECT 0").Scan(&n).Error)
		}
	}
	require.Len(t, db.stmts.stmts, maxCachedStmts)
	require.Nil(t, keptRead(db, "SELECT 'held'"), "let go: the least recently used")
	require.Nil(t, keptRead(db, "SELECT 1"))
	require.NotNil(t, keptRead(db, fmt.Sprintf("SELECT %d", maxCachedStmts+9)))

	var s string
	require.NoError(t, held.stmt.QueryRowContext(ctx).Scan(&s), "a held statement is not closed under its run")
	require.Equal(t, "held", s)
	db.stmts.release(held)
	require.Error(t, held.stmt.QueryRowContext(ctx).Scan(&s), "closed once released")

	db.InvalidateStatements()
	require.Empty(t, db.stmts.stmts, "a schema change lets every statement go")
	var n int64
	require.NoError(t, db.Read.Raw("SELECT 5").Scan(&n).Error)
	require.EqualValues(t, 5, n)
}

// writeConn is the SQLite write connection's cachingConn.
func writeConn(t *testing.T, db *DB) (cc *cachingConn) {
	t.Helper()
	sqlDB, err := db.Write.DB()
	require.NoError(t, err)
	conn, err := sqlDB.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Raw(func(dc any) error {
		cc = dc.(*cachingConn)
		return nil
	}))
	return cc
}

// TestWritesRunPrepared: the write connection keeps the INSERT, UPDATE and
// DELETE statements it runs in transactions prepared, and reuses them; a
// constraint error from a kept statement reads as before and leaves it
// usable; a column added and a table dropped need nothing; a statement
// that does not prepare fails as it would by text.
func TestWritesRunPrepared(t *testing.T) {
	db := openSQLite(t)
	require.NoError(t, db.Write.Exec(`CREATE TABLE things (id TEXT PRIMARY KEY, name TEXT NOT NULL)`).Error)
	const ins = `INSERT INTO things (id, name) VALUES (?, ?)`
	write := func(sql string, args ...any) error {
		return db.Write.Transaction(func(tx *gorm.DB) error {
			_, err := Exec(tx, sql, args...)
			return err
		})
	}
	require.NoError(t, write(ins, "a", "one"))
	cc := writeConn(t, db)
	kept := keptWrite(cc, ins)
	require.NotNil(t, kept, "the INSERT is kept")
	require.NoError(t, write(ins, "b", "two"))
	require.ErrorContains(t, write(ins, "a", "again"), "UNIQUE constraint failed: things.id")
	require.ErrorContains(t, write(ins, "c", nil), "NOT NULL constraint failed: things.name")
	require.NoError(t, write(ins, "c", "three"))
	require.Same(t, kept, keptWrite(cc, ins), "reused, not prepared again")
	require.NoError(t, write(`UPDATE things SET name = ? WHERE id = ?`, "uno", "a"))
	require.NoError(t, write(`DELETE FROM things WHERE id = ?`, "b"))
	require.NotNil(t, keptWrite(cc, `UPDATE things SET name = ? WHERE id = ?`))
	require.NotNil(t, keptWrite(cc, `DELETE FROM things WHERE id = ?`))

	var names []string
	require.NoError(t, db.Read.Raw(`SELECT name FROM things ORDER BY id`).Scan(&names).Error)
	require.Equal(t, []string{"uno", "three"}, names)

	require.NoError(t, db.Write.Exec(`ALTER TABLE things ADD COLUMN n INTEGER DEFAULT 7`).Error)
	require.NoError(t, write(ins, "d", "four"))
	var n int
	require.NoError(t, db.Read.Raw(`SELECT n FROM things WHERE id = 'd'`).Scan(&n).Error)
	require.Equal(t, 7, n)
	require.Nil(t, keptWrite(cc, `ALTER TABLE things ADD COLUMN n INTEGER DEFAULT 7`), "only writes are kept")

	// The most recently used texts are kept, the rest finalized.
	for i := range maxConnStmts + 5 {
		require.NoError(t, write(fmt.Sprintf(`INSERT INTO things (id, name) VALUES (?, '%d')`, i), fmt.Sprint("x", i)))
	}
	require.Len(t, cc.stmts, maxConnStmts)
	require.Equal(t, maxConnStmts, cc.lru.Len())
	require.Nil(t, keptWrite(cc, ins), "let go: the least recently used")
	require.NoError(t, write(ins, "f", "six"), "and prepared again when used again")
	require.NotNil(t, keptWrite(cc, ins))

	require.NoError(t, db.Write.Exec(`DROP TABLE things`).Error, "a kept statement holds no lock")
	require.ErrorContains(t, write(ins, "e", "five"), "no such table: things")
	require.ErrorContains(t, write(`INSERT INTO nothing_here VALUES (?)`, 1), "no such table: nothing_here")
	require.Nil(t, keptWrite(cc, `INSERT INTO nothing_here VALUES (?)`))
}

// TestCacheableWrites: one INSERT, UPDATE or DELETE of at most
// maxKeptParams parameters is kept; scripts, queries, DDL and long
// parameter lists are not.
func TestCacheableWrites(t *testing.T) {
	for q, want := range map[string]bool{
		`INSERT INTO t (a) VALUES (?)`:                                             true,
		"  update t SET a = ? WHERE id = ?":                                        true,
		`DELETE FROM t WHERE id = ?`:                                               true,
		`INSERT INTO t (a) VALUES (?);`:                                            false,
		`INSERT INTO t VALUES (1); DELETE FROM t`:                                  false,
		`SELECT * FROM t`:                                                          false,
		`ALTER TABLE t ADD COLUMN b TEXT`:                                          false,
		`WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x`:                       false,
		`DELETE FROM t WHERE id IN (` + strings.Repeat("?,", maxKeptParams) + `?)`: false,
	} {
		require.Equal(t, want, cacheable(q), q)
	}
}

// keptWrite is the write connection's kept statement for q, or nil.
func keptWrite(cc *cachingConn, q string) driver.Stmt {
	if e, ok := cc.stmts[q]; ok {
		return e.Value.(connStmt).stmt
	}
	return nil
}
