package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
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
