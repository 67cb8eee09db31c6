package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
)

const notesSchema = `
resources:
  - name: notes
    fields:
      - {name: body, type: string, required: true}
      - {name: writer, type: integer, required: true, filterable: true}
`

// outcome is what the clients saw during the shutdown.
type outcome struct {
	mu       sync.Mutex
	created  []string    // ids answered 201
	statuses map[int]int // other statuses and how often
	failed   int         // requests that got no answer (refused, reset)
}

func TestGracefulShutdown(t *testing.T) {
	url := filepath.Join(t.TempDir(), "herald.db")
	cfg := newConfig(t, url, writeSchema(t, notesSchema))
	cfg.ShutdownTimeout = 20 * time.Second
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := app.New(context.Background(), cfg, app.Options{Logger: log, Out: io.Discard})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()

	client := &http.Client{Timeout: 30 * time.Second}
	post := func(writer, i int) (int, string, error) {
		req, err := http.NewRequest("POST", "http://"+addr+"/v1/notes",
			strings.NewReader(fmt.Sprintf(`{"body":"note %d/%d","writer":%d}`, writer, i, writer)))
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Authorization", "Bearer "+apptest.AdminKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		var body struct {
			ID string `json:"id"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil && resp.StatusCode == 201 {
			return 0, "", err
		}
		return resp.StatusCode, body.ID, nil
	}

	const writers, perWriter = 8, 300
	out := &outcome{statuses: map[int]int{}}
	var answered atomic.Int64
	busy := make(chan struct{}) // closed when the writers have had 50 answers
	var busyOnce sync.Once
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				status, id, err := post(w, i)
				out.mu.Lock()
				switch {
				case err != nil:
					out.failed++
				case status == 201:
					out.created = append(out.created, id)
				default:
					out.statuses[status]++
				}
				out.mu.Unlock()
				if err != nil {
					return // the server is gone
				}
				if answered.Add(1) == 50 {
					busyOnce.Do(func() { close(busy) })
				}
			}
		}()
	}

	// Shut down while the writers are busy.
	select {
	case <-busy:
	case <-time.After(20 * time.Second):
		t.Fatal("the writers got no answers")
	}
	cancel()
	select {
	case err := <-served:
		require.NoError(t, err, "Serve returns nil after a graceful shutdown")
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after the context was cancelled")
	}
	wg.Wait()

	out.mu.Lock()
	defer out.mu.Unlock()
	t.Logf("created %d, other answers %v, unanswered %d", len(out.created), out.statuses, out.failed)
	require.GreaterOrEqual(t, len(out.created), 50)
	require.Less(t, len(out.created), writers*perWriter, "the shutdown came while writers were still busy")

	t.Run("new connections are refused", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			conn.Close()
		}
		require.Error(t, err, "the listener is closed")
	})

	t.Run("acknowledged creates are committed", func(t *testing.T) {
		env := apptest.StartConfig(t, database.SQLite, newConfig(t, url, filepath.Join(t.TempDir(), "missing.yaml")))
		resp := env.Admin("GET", "/v1/notes?_limit=1", nil)
		require.Equal(t, 200, resp.Status, "%s", resp.Body)
		total := resp.JSON()["meta"].(map[string]any)["total"]
		require.Equal(t, float64(len(out.created)), total, "the database holds exactly the acknowledged creates")
		for _, id := range out.created {
			require.Equal(t, 200, env.Admin("GET", "/v1/notes/"+id, nil).Status, "note %s was acknowledged", id)
		}
	})

	t.Run("requests in flight are not failed", func(t *testing.T) {
		for status := range out.statuses {
			require.Less(t, status, 500, "a request in flight must not fail because of the shutdown: %v", out.statuses)
		}
	})
}

// TestSlowClientsAreCutOff: a client that trickles its body is cut off
// after HERALD_READ_TIMEOUT and an idle keep-alive connection is closed
// after HERALD_IDLE_TIMEOUT, while other clients are served.
func TestSlowClientsAreCutOff(t *testing.T) {
	cfg := newConfig(t, filepath.Join(t.TempDir(), "herald.db"), writeSchema(t, notesSchema))
	cfg.ReadTimeout, cfg.IdleTimeout = 500*time.Millisecond, 500*time.Millisecond
	addr, _, _ := serve(t, cfg, io.Discard)

	closedWithin := func(conn net.Conn, within time.Duration) bool {
		_ = conn.SetReadDeadline(time.Now().Add(within))
		buf := make([]byte, 4096)
		for {
			if _, err := conn.Read(buf); err != nil {
				var ne net.Error
				return !(errors.As(err, &ne) && ne.Timeout())
			}
		}
	}

	// A trickling body: 1 byte every 100 ms of a 1,000-byte body.
	trickle, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer trickle.Close()
	_, err = fmt.Fprintf(trickle, "POST /v1/notes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", apptest.AdminKey)
	require.NoError(t, err)
	go func() {
		for range 50 {
			if _, err := trickle.Write([]byte(" ")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	// An idle keep-alive connection after one request.
	idle, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer idle.Close()
	_, err = fmt.Fprint(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)

	// Others are served meanwhile.
	resp, err := http.Get("http://" + addr + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	require.True(t, closedWithin(trickle, 3*time.Second), "the trickling client was cut off")
	require.True(t, closedWithin(idle, 3*time.Second), "the idle connection was closed")
}

// TestBodiesClientsGiveUpOn: a declared body over HERALD_MAX_BODY is
// refused before it is sent, and a client that hangs up mid-body is not
// logged as a server error.
func TestBodiesClientsGiveUpOn(t *testing.T) {
	cfg := newConfig(t, filepath.Join(t.TempDir(), "herald.db"), writeSchema(t, notesSchema))
	var logs syncBuffer
	addr, _, _ := serve(t, cfg, &logs)

	big, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer big.Close()
	_, err = fmt.Fprintf(big, "POST /v1/notes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n", apptest.AdminKey)
	require.NoError(t, err)
	_ = big.SetReadDeadline(time.Now().Add(3 * time.Second))
	status, err := bufio.NewReader(big).ReadString('\n')
	require.NoError(t, err, "answered before the body was sent")
	require.Contains(t, status, " 413 ")

	// No credentials and a body of unknown length, never sent: 401 at
	// once, before any of it is read.
	anon, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer anon.Close()
	_, err = fmt.Fprintf(anon, "POST /v1/notes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
	require.NoError(t, err)
	_ = anon.SetReadDeadline(time.Now().Add(3 * time.Second))
	status, err = bufio.NewReader(anon).ReadString('\n')
	require.NoError(t, err, "answered before the body was sent")
	require.Contains(t, status, " 401 ")

	gone, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, err = fmt.Fprintf(gone, "POST /v1/notes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"body\":", apptest.AdminKey)
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, gone.Close())
	time.Sleep(300 * time.Millisecond)
	require.NotContains(t, logs.String(), "level=ERROR", "a client hanging up is not a server error")
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestShutdownTimeoutCapsTheExit: with a write stuck behind a lock
// another session holds (HERALD_WRITE_TIMEOUT 30 s), Serve returns within
// HERALD_SHUTDOWN_TIMEOUT (1 s, plus a second) of the signal instead of
// waiting for the write path to drain.
func TestShutdownTimeoutCapsTheExit(t *testing.T) {
	if !slices.Contains(dbtest.Kinds, database.Postgres) {
		t.Skip("PostgreSQL is not available")
	}
	cfg := newConfig(t, dbtest.URL(t, database.Postgres), writeSchema(t, notesSchema))
	cfg.ShutdownTimeout, cfg.WriteTimeout, cfg.RequestTimeout = time.Second, 30*time.Second, time.Minute
	addr, cancel, served := serve(t, cfg, io.Discard)
	base := "http://" + addr

	bg := context.Background()
	locker, err := pgx.Connect(bg, cfg.DatabaseURL)
	require.NoError(t, err)
	defer locker.Close(bg)
	tx, err := locker.Begin(bg)
	require.NoError(t, err)
	defer tx.Rollback(bg)
	_, err = tx.Exec(bg, "LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	go func() { // stuck until the lock goes or its 30 s pass
		_, _ = apptest.Send(http.DefaultClient, base, "POST", "/v1/notes", map[string]any{"body": "x", "writer": 1}, apptest.AdminKey)
	}()
	time.Sleep(300 * time.Millisecond)
	began := time.Now()
	cancel()
	select {
	case <-served:
	case <-time.After(40 * time.Second):
		t.Fatal("Serve did not return")
	}
	require.Less(t, time.Since(began), 4*time.Second, "the exit is capped by the shutdown timeout")
}

// serve runs Herald with cfg on a loopback listener through Serve (with
// the server's timeouts, unlike apptest) and returns its address, the
// shutdown signal and Serve's result. Logs go to log.
func serve(t *testing.T, cfg app.Config, log io.Writer) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	a, err := app.New(context.Background(), cfg, app.Options{Logger: slog.New(slog.NewTextHandler(log, nil)), Out: io.Discard})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	return ln.Addr().String(), cancel, served
}

// TestStartupLogNamesTheConsole: the start-up line says where the admin
// console is, and it is served there.
func TestStartupLogNamesTheConsole(t *testing.T) {
	cfg := newConfig(t, filepath.Join(t.TempDir(), "herald.db"), writeSchema(t, notesSchema))
	var logs syncBuffer
	addr, _, _ := serve(t, cfg, &logs)
	want := "console=http://" + addr + "/_/"
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), want) }, 10*time.Second, 10*time.Millisecond,
		"the start-up log names %s: %s", want, logs.String())
	resp, err := http.Get("http://" + addr + "/_/")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
}
