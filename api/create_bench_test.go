package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
)

// benchSchema is the record of the side-by-side benchmark with PocketBase
// (bench/pocketbase): four plain fields.
const benchSchema = `
resources:
  - name: posts
    fields:
      - {name: title, type: string}
      - {name: body, type: text}
      - {name: views, type: integer}
      - {name: published, type: boolean}
`

const benchPost = `{"title":"hello world","body":"a small body for the create benchmark","views":42,"published":true}`

// benchCreate sends one create through the HTTP handler, in-process.
func benchCreate(tb testing.TB, h http.Handler) {
	req := httptest.NewRequest("POST", "/v1/posts", strings.NewReader(benchPost))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apptest.AdminKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		tb.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
}

// BenchmarkCreate measures the create path (HTTP handler, validation,
// group-commit writer, row and event insert, commit) with one client, on
// SQLite, with events on and off: CPU and allocations per create. Run
// with -benchmem; bench/create-path.txt keeps the figures of the last
// change to the path, so a regression shows.
func BenchmarkCreate(b *testing.B) {
	for _, events := range []bool{true, false} {
		name := "events-on"
		if !events {
			name = "events-off"
		}
		b.Run(name, func(b *testing.B) {
			env := apptest.Start(b, database.SQLite, benchSchema, func(c *app.Config) { c.DisableEvents = !events })
			h := env.App.Handler()
			benchCreate(b, h)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				benchCreate(b, h)
			}
		})
	}
}

// BenchmarkCreateParallel is BenchmarkCreate with GOMAXPROCS*8 clients
// (-cpu sets GOMAXPROCS), where group commit shares transactions.
func BenchmarkCreateParallel(b *testing.B) {
	env := apptest.Start(b, database.SQLite, benchSchema)
	h := env.App.Handler()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchCreate(b, h)
		}
	})
}

// BenchmarkReadFreshVsRestarted reads one record by id with 8 clients per
// core, in a process that
// created its tables at start-up (a new database, as on a first
// `go run .`) and in one restarted on the same database: the two must
// cost the same.
func BenchmarkReadFreshVsRestarted(b *testing.B) {
	for _, restarted := range []bool{false, true} {
		name := "fresh"
		if restarted {
			name = "restarted"
		}
		b.Run(name, func(b *testing.B) {
			env := apptest.Start(b, database.SQLite, benchSchema)
			if restarted {
				cfg := env.Config
				env.Stop()
				env = apptest.StartConfig(b, database.SQLite, cfg)
			}
			h := env.App.Handler()
			var ids []string
			for range 200 {
				req := httptest.NewRequest("POST", "/v1/posts", strings.NewReader(benchPost))
				req.Header.Set("Authorization", "Bearer "+apptest.AdminKey)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				ids = append(ids, rec.Header().Get("Location"))
			}
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest("GET", ids[n.Add(1)%int64(len(ids))], nil)
					req.Header.Set("Authorization", "Bearer "+apptest.AdminKey)
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Errorf("read: %d %s", rec.Code, rec.Body)
						return
					}
				}
			})
		})
	}
}

// BenchmarkRawCeiling is what the database allows a create, without
// Herald: through the same driver and connection settings (database.Open,
// SQLite), one transaction per create with the record's INSERT and, for
// "row+event", the event's INSERT into a table shaped like herald_events
// (primary key and eventId key), then COMMIT. Compare BenchmarkCreate in
// the same run: the difference is Herald's HTTP, validation, capture and
// group-commit work.
func BenchmarkRawCeiling(b *testing.B) {
	for _, withEvent := range []bool{true, false} {
		name := "row+event"
		if !withEvent {
			name = "row"
		}
		b.Run(name, func(b *testing.B) {
			db, err := database.Open(b.Context(), database.Config{URL: dbtest.URL(b, database.SQLite)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = db.Close() })
			sqlDB, err := db.Write.DB()
			if err != nil {
				b.Fatal(err)
			}
			for _, ddl := range []string{
				`CREATE TABLE posts (id text PRIMARY KEY, title text, body text, views integer, published boolean,
  created_at datetime NOT NULL, updated_at datetime NOT NULL)`,
				`CREATE TABLE herald_events (id integer PRIMARY KEY AUTOINCREMENT, event_id text NOT NULL,
  event_type text NOT NULL, resource_name text NOT NULL, resource_id text NOT NULL, user_id text,
  created_at datetime NOT NULL, data text NOT NULL, session_variables text NOT NULL, trace_context text NOT NULL)`,
			} {
				if _, err := sqlDB.Exec(ddl); err != nil {
					b.Fatal(err)
				}
			}
			// An event's data as Herald writes it for benchPost.
			data := `{"old":null,"new":{"body":"a small body for the create benchmark","created_at":"2026-12-02T06:43:05.123456Z",` +
				`"id":"01a23554-91cd-7e21-899b-01030bcb7d31","published":true,"title":"hello world",` +
				`"updated_at":"2026-12-02T06:43:05.123456Z","views":42},"changes":{"added":["body","created_at","id",` +
				`"published","title","updated_at","views"],"removed":[],"updated":[]}}`
			session := `{"ip":"127.0.0.1","role":"admin","userAgent":"Go-http-client/1.1"}`
			trace := `{"traceId":"cb52d2ac2b36479949e9022dca2c9c60","spanId":"c8ccabb5472b9891","requestId":"01a2356f-c830-72e2-8cd2-fc78c71bde95"}`
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				id, eventID := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
				now := time.Now().UTC()
				tx, err := sqlDB.Begin()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.Exec(`INSERT INTO posts (id, title, body, views, published, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
					id, "hello world", "a small body for the create benchmark", 42, true, now, now); err != nil {
					b.Fatal(err)
				}
				if withEvent {
					if _, err := tx.Exec(`INSERT INTO herald_events (event_id, event_type, resource_name, resource_id, user_id, created_at, data,
  session_variables, trace_context) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
						eventID, "posts.created", "posts", id, "", now, data, session, trace); err != nil {
						b.Fatal(err)
					}
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
