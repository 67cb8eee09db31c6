// Package dbtest gives tests a fresh Herald database on SQLite or
// PostgreSQL. PostgreSQL comes from HERALD_TEST_DATABASE_URL when set, or
// from a throwaway cluster this package starts from the installed server
// binaries (initdb and pg_ctl, a private port, a temporary directory; run as
// the postgres user when the tests run as root). Without either, PostgreSQL
// tests skip, unless HERALD_REQUIRE_POSTGRES=1, which fails them instead.
package dbtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for admin statements

	"github.com/herald-dev/herald/database"
)

// Kinds lists the engines every shared suite runs on.
var Kinds = []database.Kind{database.SQLite, database.Postgres}

var (
	clusterOnce sync.Once
	clusterURL  string // server URL without a database name
	clusterErr  error
	stopCluster func()
)

// Main runs a package's tests and stops the throwaway cluster afterwards.
// Use it from TestMain: func TestMain(m *testing.M) { dbtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if stopCluster != nil {
		stopCluster()
	}
	os.Exit(code)
}

// URL returns a database URL for a fresh, empty database of the given kind,
// dropped when the test ends. PostgreSQL tests skip (or fail under
// HERALD_REQUIRE_POSTGRES=1) when no server can be had.
func URL(t testing.TB, kind database.Kind) string {
	t.Helper()
	if kind == database.SQLite {
		return filepath.Join(t.TempDir(), "herald.db")
	}
	base, err := serverURL()
	if err != nil {
		if os.Getenv("HERALD_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL is required (HERALD_REQUIRE_POSTGRES=1) but unavailable: %v", err)
		}
		t.Skipf("skipping PostgreSQL test: %v (set HERALD_TEST_DATABASE_URL or install the PostgreSQL server)", err)
	}
	name := "herald_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	admin, err := sql.Open("pgx", withDB(base, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("dbtest: create database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", withDB(base, "postgres"))
		if err != nil {
			return
		}
		defer admin.Close()
		_, _ = admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	return withDB(base, name)
}

// Open opens a fresh database of the given kind, closed when the test ends.
func Open(t testing.TB, kind database.Kind) *database.DB {
	t.Helper()
	db, err := database.Open(context.Background(), database.Config{URL: URL(t, kind)})
	if err != nil {
		t.Fatalf("dbtest: open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// withDB replaces the database name of a postgres URL.
func withDB(base, name string) string {
	rest, query, _ := strings.Cut(base, "?")
	scheme, hostPath, _ := strings.Cut(rest, "://")
	host, _, _ := strings.Cut(hostPath, "/")
	u := scheme + "://" + host + "/" + name
	if query != "" {
		u += "?" + query
	}
	return u
}

func serverURL() (string, error) {
	clusterOnce.Do(func() {
		if u := os.Getenv("HERALD_TEST_DATABASE_URL"); u != "" {
			clusterURL = u
			return
		}
		clusterURL, clusterErr = startCluster()
	})
	return clusterURL, clusterErr
}

// binDir finds the PostgreSQL server binaries.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
		return filepath.Dir(p), nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", fmt.Errorf("no initdb on PATH or in /usr/lib/postgresql/*/bin")
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}

// startCluster runs initdb and pg_ctl in a temporary directory on a free
// port, tuned for tests (no fsync), and returns its URL.
func startCluster() (string, error) {
	c, err := newCluster()
	if err != nil {
		return "", err
	}
	stopCluster = c.remove
	return c.url, nil
}

// Cluster is a throwaway PostgreSQL server of a test's own, which the
// test may stop and start (fault tests); the shared one must not be.
type Cluster struct {
	url       string
	run       func(name string, args ...string) error
	data, dir string
	opts      string
}

// NewCluster starts a cluster for t alone, removed when t ends. It skips
// (or fails under HERALD_REQUIRE_POSTGRES=1) when no server binaries can
// be found.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := newCluster()
	if err != nil {
		if os.Getenv("HERALD_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("dbtest: a PostgreSQL cluster is required: %v", err)
		}
		t.Skipf("dbtest: no PostgreSQL cluster: %v", err)
	}
	t.Cleanup(c.remove)
	return c
}

// URL is the URL of database name on the cluster ("postgres" exists).
func (c *Cluster) URL(name string) string { return withDB(c.url, name) }

// Stop stops the server at once (as a crash or an operator would).
func (c *Cluster) Stop() error { return c.run("pg_ctl", "-D", c.data, "-m", "immediate", "stop") }

// Start starts it again on the same port and data.
func (c *Cluster) Start() error {
	return c.run("pg_ctl", "-D", c.data, "-o", c.opts, "-l", filepath.Join(c.dir, "log"), "-w", "-t", "60", "start")
}

func (c *Cluster) remove() {
	_ = c.Stop()
	_ = os.RemoveAll(c.dir)
}

func newCluster() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herald-pg-")
	if err != nil {
		return nil, err
	}
	var asUser []string
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		asUser = []string{"setpriv", "--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups", "--"}
	}
	c := &Cluster{dir: dir, data: filepath.Join(dir, "data")}
	c.run = func(name string, args ...string) error {
		argv := append(append([]string{}, asUser...), append([]string{filepath.Join(bin, name)}, args...)...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", name, err, out)
		}
		return nil
	}
	if err := c.run("initdb", "-D", c.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c.opts = fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300", port, dir)
	if err := c.Start(); err != nil {
		return nil, err
	}
	c.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		db, err := sql.Open("pgx", c.url)
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			c.remove()
			return nil, fmt.Errorf("throwaway cluster did not answer: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
