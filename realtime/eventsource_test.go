package realtime_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
)

// TestEventSourceClientResumes drives the npm eventsource package (a real
// EventSource) under node through a dropped connection: it reconnects by
// itself with Last-Event-ID and gets every event once, in order, including
// those committed while it was away. .ci/run installs node's packages and
// sets HERALD_REQUIRE_NODE=1, under which a missing node fails the test.
func TestEventSourceClientResumes(t *testing.T) {
	dir, _ := filepath.Abs("testdata/eventsource")
	node, err := exec.LookPath("node")
	_, modErr := os.Stat(filepath.Join(dir, "node_modules", "eventsource"))
	if err != nil || modErr != nil {
		if os.Getenv("HERALD_REQUIRE_NODE") != "" {
			t.Fatalf("node or its packages missing (run npm ci in %s): %v %v", dir, err, modErr)
		}
		t.Skipf("node or the eventsource package missing (npm ci in %s)", dir)
	}
	env := start(t, database.SQLite)
	proxy := newCutProxy(t, strings.TrimPrefix(env.Server.URL, "http://"))

	const want = 15
	cmd := exec.Command(node, "client.mjs", "http://"+proxy.addr(), token(t, "u1", "user"), fmt.Sprint(want))
	cmd.Dir = dir
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan map[string]any, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				lines <- m
			}
		}
		close(lines)
	}()
	var got []string
	opens := 0
	await := func(n int) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for len(got) < n {
			select {
			case m, ok := <-lines:
				require.True(t, ok, "the client exited early")
				require.Nil(t, m["timeout"])
				if m["open"] != nil {
					opens++
				}
				if id, ok := m["id"].(string); ok {
					got = append(got, id)
				}
			case <-deadline:
				t.Fatalf("the client saw %d of %d events", len(got), n)
			}
		}
	}
	waitOpen := func(n int) {
		t.Helper()
		for opens < n {
			select {
			case m := <-lines:
				if m["open"] != nil {
					opens++
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the client did not connect")
			}
		}
	}
	waitOpen(1)
	var created []string
	for i := range 5 {
		created = append(created, createNote(t, env, map[string]any{"title": fmt.Sprint("a", i), "owner_id": "u1"}))
	}
	await(5)
	proxy.cut() // the connection drops; EventSource retries after 2 s
	for i := range 5 {
		created = append(created, createNote(t, env, map[string]any{"title": fmt.Sprint("b", i), "owner_id": "u1"}))
	}
	createNote(t, env, map[string]any{"title": "not u1's", "owner_id": "u2"})
	await(10)
	require.GreaterOrEqual(t, opens, 2, "the client reconnected")
	for i := range 5 {
		created = append(created, createNote(t, env, map[string]any{"title": fmt.Sprint("c", i), "owner_id": "u1"}))
	}
	await(want)
	logged := auditIDs(t, env, "notes.created", "u1")
	require.Equal(t, logged, got, "every event of u1's once, in order, across the reconnect")
	require.Len(t, created, want)
}

// auditIDs lists the ids of the log's events of a type whose new row is owner's.
func auditIDs(t *testing.T, env *apptest.Env, typ, owner string) []string {
	t.Helper()
	r := env.Admin("GET", "/v1/_events?limit=1000&type="+typ, nil)
	var page struct {
		Data []struct {
			ID   string `json:"id"`
			Data struct {
				New map[string]any `json:"new"`
			} `json:"data"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &page))
	var ids []string
	for _, e := range page.Data {
		if e.Data.New["owner_id"] == owner {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// cutProxy forwards TCP connections to a target and can drop them all.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{ln: ln}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
			go func() { _, _ = io.Copy(c, u); _ = c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}
