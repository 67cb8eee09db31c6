package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/herald-dev/herald/database"
)

// runClassifyBench measures the background re-evaluation of a
// classification (-classify): on a table of -classify-rows items (inserted
// directly, as an import would leave them), the time to evaluate every row
// when a classification is added, then, after a definition change, the
// time to re-evaluate every row and the create throughput of 8 clients
// while that runs, against 8 clients just before it.
func runClassifyBench(ctx context.Context, opts options, stdout, stderr io.Writer) error {
	client := newClient(8)
	defer client.CloseIdleConnections()
	fmt.Fprintf(stdout, "\n%-9s %-22s %10s %10s %10s %12s %12s %7s\n", "db", "measure", "rows", "seconds", "rows/s",
		"transitions", "creates/s", "ratio")
	for _, kind := range opts.dbs {
		if err := classifyReevaluation(ctx, opts, client, kind, stdout, stderr); err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
	}
	return nil
}

func classifyReevaluation(ctx context.Context, opts options, client *http.Client, kind database.Kind, stdout, stderr io.Writer) error {
	t, err := startTarget(ctx, opts, kind, variant{name: "classify"})
	if err != nil {
		return err
	}
	defer func() {
		client.CloseIdleConnections()
		_ = t.stop()
	}()
	db, err := database.Open(ctx, database.Config{URL: t.dbURL, MaxConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	n := opts.classifyRows
	fmt.Fprintf(stderr, "%s: inserting %d items\n", kind, n)
	if err := insertItems(ctx, db, n); err != nil {
		return err
	}
	transitions := func() (int64, error) {
		var c int64
		err := db.Read.WithContext(ctx).Raw("SELECT count(*) FROM herald_events WHERE event_type = 'items.classified'").Scan(&c).Error
		return c, err
	}
	// until imports a schema with the classification and waits until its
	// every row is evaluated, running load meanwhile when l is set.
	until := func(expr string, l *loader) (time.Duration, measurement, error) {
		doc := benchSchema + "    classifications:\n      pricey: \"" + expr + "\"\n"
		began := time.Now()
		if _, err := call(ctx, client, "POST", t.baseURL+"/v1/_registry/import", doc, http.StatusOK); err != nil {
			return 0, measurement{}, err
		}
		var load measurement
		for {
			if l != nil {
				m := l.measure(ctx, opCreate, 8, time.Second, uint64(time.Now().UnixNano()))
				load.requests += m.requests
				load.errors += m.errors
				load.elapsed += m.elapsed
			} else {
				time.Sleep(50 * time.Millisecond)
			}
			var state []string
			if err := db.Read.WithContext(ctx).Raw("SELECT state FROM herald_classifications WHERE name = 'pricey' AND expression = ?", expr).
				Scan(&state).Error; err != nil {
				return 0, load, err
			}
			if len(state) == 1 && state[0] == "ready" {
				return time.Since(began), load, nil
			}
			if ctx.Err() != nil {
				return 0, load, ctx.Err()
			}
		}
	}

	before, err := transitions()
	if err != nil {
		return err
	}
	took, _, err := until("price != null && price >= 100", nil)
	if err != nil {
		return err
	}
	after, err := transitions()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-9s %-22s %10d %10.1f %10.0f %12d %12s %7s\n", kind, "added, idle", n, took.Seconds(),
		float64(n)/took.Seconds(), after-before, "-", "-")

	l := &loader{client: client, baseURL: t.baseURL, latBuf: make([]time.Duration, opts.maxRequests)}
	base := l.measure(ctx, opCreate, 8, opts.duration, 1)
	before = after
	took, load, err := until("price != null && price >= 50", l)
	if err != nil {
		return err
	}
	after, err = transitions()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-9s %-22s %10d %10.1f %10.0f %12d %12.0f %7.2f   (8 clients; %.0f creates/s before the change, %d errors)\n",
		kind, "changed, under writes", n, took.Seconds(), float64(n)/took.Seconds(), after-before, load.reqPerSec(),
		load.reqPerSec()/base.reqPerSec(), base.reqPerSec(), load.errors)
	return nil
}

// insertItems adds n items straight into the table, in statements of
// 100,000 rows, as rows that existed before any classification.
func insertItems(ctx context.Context, db *database.DB, n int) error {
	for done := 0; done < n; {
		k := min(n-done, 100_000)
		var sql string
		var args []any
		if db.Kind == database.Postgres {
			sql = `INSERT INTO items (id, title, price, qty, status, created_at, updated_at)
SELECT gen_random_uuid(), 'seed', i % 200, i, CASE WHEN i % 2 = 0 THEN 'active' ELSE 'draft' END, now(), now()
FROM generate_series(?::bigint, ?::bigint) AS i`
			args = []any{done + 1, done + k}
		} else {
			now := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
			sql = `WITH RECURSIVE s(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM s WHERE i < ?)
INSERT INTO items (id, title, price, qty, status, created_at, updated_at)
SELECT printf('01a00000-0000-7000-8000-%012x', i), 'seed', i % 200, i, CASE WHEN i % 2 = 0 THEN 'active' ELSE 'draft' END, ?, ?
FROM s`
			args = []any{done + 1, done + k, now, now}
		}
		if err := db.Write.WithContext(ctx).Exec(sql, args...).Error; err != nil {
			return fmt.Errorf("insert items: %w", err)
		}
		done += k
	}
	return nil
}
