package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
)

// TestDatabaseUnreachable: with its PostgreSQL database refusing
// connections (and every connection cut), requests get a 503 problem
// with Retry-After, never a 500, and the count shows in the metrics;
// once the database is back, requests succeed without a restart.
func TestDatabaseUnreachable(t *testing.T) {
	if !slices.Contains(dbtest.Kinds, database.Postgres) {
		t.Skip("PostgreSQL is not available")
	}
	t.Parallel()
	env := apptest.Start(t, database.Postgres, shopSchema)
	u, err := url.Parse(env.Config.DatabaseURL)
	require.NoError(t, err)
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, u.String())
	require.NoError(t, err)
	defer admin.Close(ctx)
	set := func(allow bool) {
		_, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" ALLOW_CONNECTIONS "+map[bool]string{true: "true", false: "false"}[allow])
		require.NoError(t, err)
		if !allow {
			_, err = admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
			require.NoError(t, err)
		}
	}
	r := env.Admin("POST", "/v1/customers", map[string]any{"name": "Ada", "email": "ada@example.com"})
	require.Equal(t, 201, r.Status, "%s", r.Body)

	// Writers keep creating through the outage and the recovery: none
	// gets a 500, and every write acknowledged with 201 is there after.
	ws := startWriters(env)
	time.Sleep(200 * time.Millisecond)

	set(false)
	for _, req := range []struct{ method, path string }{
		{"GET", "/v1/customers"}, {"POST", "/v1/customers"}, {"GET", "/v1/customers"}, {"GET", "/v1/_events"},
	} {
		var body any
		if req.method == "POST" {
			body = map[string]any{"name": "Bob", "email": "bob@example.com"}
		}
		r := env.Admin(req.method, req.path, body)
		require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s %s: %s", req.method, req.path, r.Body)
		require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"))
		require.NotEmpty(t, r.Header.Get("Retry-After"))
		require.Contains(t, string(r.Body), "database-unavailable")
	}
	require.Contains(t, string(env.Do("GET", "/metrics", nil, "").Body), "herald_database_unavailable_total ")
	time.Sleep(500 * time.Millisecond) // the writers meet the outage too

	set(true)
	require.Eventually(t, func() bool {
		return env.Admin("POST", "/v1/customers", map[string]any{"name": "Cy", "email": "cy@example.com"}).Status == 201
	}, 15*time.Second, 100*time.Millisecond, "writes work again without a restart")
	require.Equal(t, 200, env.Admin("GET", "/v1/customers", nil).Status)
	time.Sleep(300 * time.Millisecond)
	ws.stopAndCheck(t, env)
}

// TestFrozenTable: a table another session holds locked (a frozen
// database, as far as these requests know) answers 503 within the
// request's deadline instead of holding the client for as long as the
// lock lasts.
func TestFrozenTable(t *testing.T) {
	if !slices.Contains(dbtest.Kinds, database.Postgres) {
		t.Skip("PostgreSQL is not available")
	}
	t.Parallel()
	env := apptest.Start(t, database.Postgres, shopSchema, func(c *app.Config) {
		c.RequestTimeout = time.Second // HERALD_WRITE_TIMEOUT stays 10 s
	})
	ctx := context.Background()
	locker, err := pgx.Connect(ctx, env.Config.DatabaseURL)
	require.NoError(t, err)
	defer locker.Close(ctx)
	tx, err := locker.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)

	// A read, and eight writes at once (one runs and waits for the lock,
	// the others wait in the write queue): each answers 503 within its
	// deadline, not after the write timeout.
	var wg sync.WaitGroup
	for i := range 9 {
		wg.Go(func() {
			method, body := "POST", any(map[string]any{"name": "Ada", "email": fmt.Sprintf("a%d@example.com", i)})
			if i == 0 {
				method, body = "GET", nil
			}
			began := time.Now()
			r, err := apptest.Send(env.Server.Client(), env.Server.URL, method, "/v1/customers", body, apptest.AdminKey)
			took := time.Since(began)
			if err != nil || r.Status != http.StatusServiceUnavailable || took > 4*time.Second {
				t.Errorf("%s: %v %v after %s", method, err, r, took)
			}
		})
	}
	wg.Wait()
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, 201, env.Admin("POST", "/v1/customers", map[string]any{"name": "Ada", "email": "ada@example.com"}).Status)
}

// TestUnconfirmedCommit: a COMMIT the database does not confirm (it
// waits for a synchronous standby that does not exist) answers 503
// outcome-unknown, not "retry": the row is in fact committed, and a
// client that retried would create it twice.
func TestUnconfirmedCommit(t *testing.T) {
	if !slices.Contains(dbtest.Kinds, database.Postgres) || os.Getenv("HERALD_TEST_DATABASE_URL") != "" {
		t.Skip("needs the throwaway PostgreSQL cluster (it changes a server setting)")
	}
	env := apptest.Start(t, database.Postgres, shopSchema, func(c *app.Config) {
		c.WriteTimeout = time.Second
		c.DatabaseURL += "&synchronous_commit=on" // this instance's sessions wait for standbys
	})
	u, err := url.Parse(env.Config.DatabaseURL)
	require.NoError(t, err)
	u.Path, u.RawQuery = "/postgres", "sslmode=disable"
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, u.String())
	require.NoError(t, err)
	defer admin.Close(ctx)
	setStandby := func(names string) {
		_, err := admin.Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names TO '"+names+"'")
		require.NoError(t, err)
		_, err = admin.Exec(ctx, "SELECT pg_reload_conf()")
		require.NoError(t, err)
		time.Sleep(300 * time.Millisecond)
	}
	setStandby("herald_test_no_such_standby")
	defer setStandby("")

	r := env.Admin("POST", "/v1/customers", map[string]any{"name": "Ada", "email": "ada@example.com"})
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
	require.Contains(t, string(r.Body), "outcome-unknown")

	setStandby("")
	require.Eventually(t, func() bool {
		var page struct{ Meta struct{ Total int } }
		r := env.Admin("GET", "/v1/customers?email=ada@example.com", nil)
		return r.Status == 200 && json.Unmarshal(r.Body, &page) == nil && page.Meta.Total == 1
	}, 10*time.Second, 100*time.Millisecond, "the write was in fact committed")
}

// TestDatabaseStoppedAndStarted: PostgreSQL itself stopped (immediate
// shutdown) and started again under load: clients get 503
// database-unavailable with Retry-After (never a 500), Herald recovers
// without a restart, and every acknowledged write is there.
func TestDatabaseStoppedAndStarted(t *testing.T) {
	cluster := dbtest.NewCluster(t)
	env := apptest.Start(t, database.Postgres, shopSchema, func(c *app.Config) {
		// The throwaway cluster acknowledges commits before writing them
		// (synchronous_commit=off, for speed): durable ones for this test.
		c.DatabaseURL = cluster.URL("postgres") + "&synchronous_commit=on"
		c.RequestTimeout, c.WriteTimeout = 3*time.Second, 2*time.Second
	})
	ws := startWriters(env)
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, cluster.Stop())
	time.Sleep(time.Second)
	r := env.Admin("GET", "/v1/customers", nil)
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
	require.Contains(t, string(r.Body), "database-unavailable")
	require.NoError(t, cluster.Start())
	require.Eventually(t, func() bool {
		return env.Admin("GET", "/v1/customers?_limit=1", nil).Status == 200
	}, 20*time.Second, 100*time.Millisecond, "reads work again without a restart")
	time.Sleep(500 * time.Millisecond)
	ws.stopAndCheck(t, env)
}

// outageWriters are four clients creating customers back to back through
// a database fault, keeping what they were answered.
type outageWriters struct {
	mu         sync.Mutex
	acked      []string    // ids answered 201
	statuses   map[int]int // every status, and how often
	retryAfter int         // 503s that carried Retry-After
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startWriters(env *apptest.Env) *outageWriters {
	ws := &outageWriters{statuses: map[int]int{}, stop: make(chan struct{})}
	for w := range 4 {
		ws.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-ws.stop:
					return
				default:
				}
				r, err := apptest.Send(env.Server.Client(), env.Server.URL, "POST", "/v1/customers",
					map[string]any{"name": "Writer", "email": fmt.Sprintf("w%d-%d@example.com", w, i)}, apptest.AdminKey)
				if err != nil {
					continue
				}
				ws.mu.Lock()
				ws.statuses[r.Status]++
				if r.Status == 201 {
					ws.acked = append(ws.acked, r.JSON()["id"].(string))
				}
				if r.Status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") != "" {
					ws.retryAfter++
				}
				ws.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	return ws
}

// stopAndCheck stops the writers and checks that they saw only 201 and
// 503 with Retry-After, met the fault, and that every acknowledged write
// is there.
func (ws *outageWriters) stopAndCheck(t *testing.T, env *apptest.Env) {
	t.Helper()
	close(ws.stop)
	ws.wg.Wait()
	for st := range ws.statuses {
		require.True(t, st == 201 || st == http.StatusServiceUnavailable, "writers saw %v", ws.statuses)
	}
	require.Positive(t, ws.statuses[http.StatusServiceUnavailable], "the writers met the outage: %v", ws.statuses)
	require.Equal(t, ws.statuses[http.StatusServiceUnavailable], ws.retryAfter, "every 503 carries Retry-After")
	for _, id := range ws.acked {
		require.Equal(t, 200, env.Admin("GET", "/v1/customers/"+id, nil).Status, "acknowledged %s is there", id)
	}
}
