package realtime_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/realtime"
)

// TestResumeUnderConcurrentWriters: a client that disconnects every few
// dozen frames and comes back with Last-Event-ID, while 6 writers create
// notes, ends with every event of the log exactly once, in order.
func TestResumeUnderConcurrentWriters(t *testing.T) {
	const writers, perWriter = 6, 60
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			var wg sync.WaitGroup
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
			for w := range writers {
				wg.Go(func() {
					for i := range perWriter {
						r, err := apptest.Send(client, env.Server.URL, "POST", "/v1/notes",
							map[string]any{"title": fmt.Sprintf("w%d-%d", w, i), "n": i}, apptest.AdminKey)
						if err != nil || r.Status != http.StatusCreated {
							t.Errorf("create: %v %+v", err, r)
							return
						}
					}
				})
			}
			var got []int64
			var roundStarts []string
			last := "0" // from the start of the log: the writers are already busy
			for round := 0; len(got) < writers*perWriter; round++ {
				require.Less(t, round, 200, "too many rounds")
				hdr := []string{"Last-Event-ID", last}
				roundStarts = append(roundStarts, last)
				s, resp := open(t, env.Server.URL, "/v1/notes/stream", apptest.AdminKey, hdr...)
				require.Equal(t, http.StatusOK, resp.StatusCode)
				for range 25 {
					if len(got) == writers*perWriter {
						break
					}
					f, ok := s.tryNext(10 * time.Second)
					if !ok {
						seen := map[int64]bool{}
						for _, id := range got {
							seen[id] = true
						}
						var missing []string
						r := env.Admin("GET", "/v1/_events?limit=1000&resource=notes", nil)
						for _, m := range regexp.MustCompile(`"id":"(\d+)","eventId"`).FindAllStringSubmatch(string(r.Body), -1) {
							id, _ := strconv.ParseInt(m[1], 10, 64)
							if !seen[id] {
								missing = append(missing, m[1])
							}
						}
						t.Fatalf("round %d: no frame after %d of %d (last %s, err %v); missing %v; rounds %v; %s", round, len(got), writers*perWriter, last, s.err,
							missing, roundStarts, grepLines(string(env.Do("GET", "/metrics", nil, "").Body), "herald_sse"))
					}
					id, err := strconv.ParseInt(f.ID, 10, 64)
					require.NoError(t, err)
					got = append(got, id)
					last = f.ID
				}
				s.close()
			}
			wg.Wait()
			var logged []int64
			after := int64(0)
			for {
				page, err := events.NewAudit(env.App.DB().Read).List(context.Background(), events.Query{Resource: "notes", After: after, Limit: 1000})
				require.NoError(t, err)
				for _, e := range page.Data {
					logged = append(logged, e.ID)
				}
				if page.Meta.Next == nil {
					break
				}
				after = logged[len(logged)-1]
			}
			require.Equal(t, logged, got, "every event once, in log order, across reconnects")
		})
	}
}

// TestResetWhenTheLogMovedOn: resuming from an id whose successors
// retention removed gets event: reset first, then what the log still has.
func TestResetWhenTheLogMovedOn(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			s, _ := open(t, env.Server.URL, "/v1/notes/stream", apptest.AdminKey)
			for i := range 3 {
				createNote(t, env, map[string]any{"title": fmt.Sprint("old", i)})
			}
			first := s.next(t, 5*time.Second)
			s.close()
			require.Eventually(t, func() bool {
				r := env.Admin("GET", "/v1/_events?limit=10", nil)
				return !strings.Contains(string(r.Body), `"dispatchedAt":null`)
			}, 10*time.Second, 20*time.Millisecond, "the old events are dispatched")
			later := func() time.Time { return time.Now().Add(2 * time.Hour) }
			n, err := events.NewRetention(events.RetentionConfig{Retention: time.Hour, Now: later}, env.App.DB().Write).Sweep(context.Background())
			require.NoError(t, err)
			require.EqualValues(t, 3, n)
			fresh := createNote(t, env, map[string]any{"title": "new"})

			r, resp := open(t, env.Server.URL, "/v1/notes/stream?lastEventId="+first.ID, apptest.AdminKey)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			reset := r.next(t, 5*time.Second)
			require.Equal(t, "reset", reset.Event)
			require.Contains(t, reset.Data, `"lastEventId":"`+first.ID+`"`)
			e := r.next(t, 5*time.Second).event(t)
			require.Equal(t, fresh, e.ResourceID, "then the retained log")
		})
	}
}

// TestSlowSubscriberIsDisconnected: a client that stops reading is cut off
// once its buffer is full, while another one gets every event promptly.
func TestSlowSubscriberIsDisconnected(t *testing.T) {
	env := start(t, database.SQLite)
	// The slow client: a raw connection that sends the request and never
	// reads, so the server's writes block once the socket buffers are full.
	conn, err := net.Dial("tcp", strings.TrimPrefix(env.Server.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /v1/notes/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", apptest.AdminKey)
	require.NoError(t, err)
	fast, _ := open(t, env.Server.URL, "/v1/notes/stream", apptest.AdminKey)
	time.Sleep(200 * time.Millisecond)
	big := strings.Repeat("x", 64<<10)
	const n = 300
	done := make(chan struct{})
	client, base := env.Server.Client(), env.Server.URL
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(done)
		// Two events a request: a burst of ten (640 KiB) sometimes put the
		// fast client, on a loaded machine, a whole buffer (1 MiB) behind.
		for i := 0; i < n; i += 2 {
			var batch []map[string]any
			for j := range 2 {
				batch = append(batch, map[string]any{"title": fmt.Sprint("big", i+j), "body": big})
			}
			select {
			case <-stop: // the test ended early: do not write to a stopped server
				return
			default:
			}
			if r, err := apptest.Send(client, base, "POST", "/v1/notes", batch, apptest.AdminKey); err != nil || r.Status != http.StatusCreated {
				t.Errorf("create: %v %v", err, r)
			}
		}
	}()
	for i := range n {
		f := fast.next(t, 20*time.Second)
		require.Contains(t, f.Data, fmt.Sprintf(`"big%d"`, i), "the fast client gets every event, in order")
	}
	<-done
	var body string
	for deadline := time.Now().Add(20 * time.Second); ; {
		body = grepLines(string(env.Do("GET", "/metrics", nil, "").Body), "herald_sse")
		if strings.Contains(body, "herald_sse_slow_disconnects_total 1\n") {
			break
		}
		require.True(t, time.Now().Before(deadline), "the slow client was not disconnected: %s", body)
		time.Sleep(50 * time.Millisecond)
	}
	require.Contains(t, body, "herald_sse_clients 1\n", "the fast one is still connected")
}

// TestTwoInstancesOnPostgres: an event committed through one instance
// reaches a subscriber of the other promptly (LISTEN/NOTIFY, not the 1 s
// poll).
func TestTwoInstancesOnPostgres(t *testing.T) {
	if !slices.Contains(dbtest.Kinds, database.Postgres) {
		t.Skip("PostgreSQL is not available")
	}
	a := start(t, database.Postgres)
	b := apptest.StartConfig(t, database.Postgres, a.Config)
	s, _ := open(t, b.Server.URL, "/v1/notes/stream", apptest.AdminKey)
	time.Sleep(200 * time.Millisecond)
	for i := range 10 {
		began := time.Now()
		id := createNote(t, a, map[string]any{"title": fmt.Sprint("cross", i)})
		e := s.next(t, 5*time.Second).event(t)
		require.Equal(t, id, e.ResourceID)
		require.Less(t, time.Since(began), 700*time.Millisecond, "woken by NOTIFY, not by the 1 s poll")
		time.Sleep(time.Duration(50+i*37%200) * time.Millisecond)
	}
	// The notifier's connection dies while idle (a server restart, an
	// idle timeout): the next notification reconnects and still goes out.
	db := a.App.DB().Write
	var killed []int
	for i := range 5 {
		// The notifier connects again at the next notification after a
		// kill: wait for its connection (a new one, not the one killed).
		var pid int
		for deadline := time.Now().Add(5 * time.Second); pid == 0; time.Sleep(20 * time.Millisecond) {
			require.NoError(t, db.Raw(`SELECT coalesce(min(pid), 0) FROM pg_stat_activity
  WHERE datname = current_database() AND application_name = ? AND pid NOT IN ?`,
				realtime.NotifyApplication, append([]int{0}, killed...)).Scan(&pid).Error)
			if pid == 0 && time.Now().After(deadline) {
				var rows []map[string]any
				_ = db.Raw(`SELECT pid, application_name, state, query FROM pg_stat_activity WHERE datname = current_database()`).Scan(&rows).Error
				t.Fatalf("kill %d: no notifier connection (killed %v); connections: %v", i, killed, rows)
			}
		}
		var ok bool
		require.NoError(t, db.Raw(`SELECT pg_terminate_backend(?)`, pid).Scan(&ok).Error)
		require.True(t, ok, "the notifier's connection was terminated")
		killed = append(killed, pid)
		time.Sleep(100 * time.Millisecond)
		began := time.Now()
		id := createNote(t, a, map[string]any{"title": fmt.Sprint("after kill ", i)})
		e := s.next(t, 5*time.Second).event(t)
		require.Equal(t, id, e.ResourceID)
		require.Less(t, time.Since(began), 700*time.Millisecond, "woken by NOTIFY on a new connection, not by the poll")
	}
}

// grepLines keeps the lines that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

// TestShutdownClosesStreamsWithRetryHint: on shutdown, streams get a retry
// hint and end, and the server does not wait its shutdown timeout for them.
func TestShutdownClosesStreamsWithRetryHint(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			cfg := env.Config
			env.Stop()
			cfg.ShutdownTimeout = 20 * time.Second
			a, err := app.New(context.Background(), cfg, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: io.Discard})
			require.NoError(t, err)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- a.Serve(ctx, ln) }()
			base := "http://" + ln.Addr().String()
			s, resp := open(t, base, "/v1/notes/stream", apptest.AdminKey)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			<-s.frames // the retry hint
			began := time.Now()
			cancel()
			var last frame
			for f := range s.frames {
				last = f
			}
			require.Equal(t, "2000", last.Retry, "the last frame is a retry hint")
			require.NotEmpty(t, last.Comments)
			select {
			case err := <-served:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return")
			}
			require.Less(t, time.Since(began), 5*time.Second, "streams do not hold the shutdown up")
		})
	}
}
