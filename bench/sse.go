package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/database"
)

// The realtime benchmark (-sse). On each database, a fresh Herald serves
// streams to subscribers run in a child process (this binary with
// -sse-client), so that their CPU and memory are not Herald's:
//
//   - latency: -sse-subscribers streams of /v1/items/stream; creates paced
//     at -sse-rate per second for -duration (after -warmup); for every
//     frame of an event created in the measured time, the time from the
//     event's createdAt (taken in the write's transaction, just before
//     commit) to its receipt: p50, p99, and those frames per second.
//   - memory: -sse-idle idle streams; Herald's live heap and goroutine
//     stacks (after a GC) before and after, per stream.

// sseVariant allows many streams for the one admin key the bench uses.
var sseVariant = variant{name: "sse", apply: func(c *app.Config) {
	c.SSEMaxPerCaller, c.SSEMaxStreams = 1_000_000, 1_000_000
}}

func runSSEBench(ctx context.Context, opts options, stdout, stderr io.Writer) error {
	fmt.Fprintf(stdout, "\n%-9s %-8s %12s %12s %10s %10s\n", "db", "measure", "subscribers", "frames/s", "p50", "p99")
	for _, kind := range opts.dbs {
		if err := sseLatency(ctx, opts, kind, stdout, stderr); err != nil {
			return fmt.Errorf("%s sse latency: %w", kind, err)
		}
	}
	return sseMemory(ctx, opts, opts.dbs[0], stdout, stderr)
}

// clientProc is the child process holding the streams.
type clientProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startClients(base string, n int, measure bool) (*clientProc, error) {
	cmd := exec.Command(os.Args[0], "-sse-client", "-sse-url", base+"/v1/items/stream",
		"-sse-subscribers", strconv.Itoa(n), "-sse-measure="+strconv.FormatBool(measure))
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &clientProc{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	p.out.Buffer(make([]byte, 1<<20), 1<<20)
	if !p.out.Scan() || p.out.Text() != "ready" {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("sse clients did not connect: %q", p.out.Text())
	}
	return p, nil
}

func sseLatency(ctx context.Context, opts options, kind database.Kind, stdout, stderr io.Writer) error {
	t, err := startTarget(ctx, opts, kind, sseVariant)
	if err != nil {
		return err
	}
	defer t.stop()
	fmt.Fprintf(stderr, "%s: %d subscribers, %d writes/s for %s after %s\n", kind, opts.sseSubscribers, opts.sseRate, opts.duration, opts.warmup)
	clients, err := startClients(t.baseURL, opts.sseSubscribers, true)
	if err != nil {
		return err
	}
	defer func() { _ = clients.cmd.Process.Kill(); _ = clients.cmd.Wait() }()
	client := newClient(32)
	defer client.CloseIdleConnections()
	interval := time.Second / time.Duration(opts.sseRate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	var failed atomic.Int64
	measureFrom := time.Now().Add(opts.warmup)
	fmt.Fprintf(clients.in, "from %d\n", measureFrom.UnixNano())
	deadline := measureFrom.Add(opts.duration)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		<-tick.C
		wg.Go(func() {
			if _, err := call(ctx, client, "POST", t.baseURL+"/v1/items", `{"title":"s","price":1}`, http.StatusCreated); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	time.Sleep(time.Second) // the last frames arrive
	_ = clients.in.Close()  // the child reports and exits
	if !clients.out.Scan() {
		return fmt.Errorf("no report from the sse clients")
	}
	var rep sseReport
	if err := json.Unmarshal(clients.out.Bytes(), &rep); err != nil {
		return fmt.Errorf("sse clients' report %q: %w", clients.out.Text(), err)
	}
	fmt.Fprintf(stdout, "%-9s %-8s %12d %12.0f %10s %10s   (%d frames, %d streams ended early, %d write errors)\n", kind, "latency",
		opts.sseSubscribers, float64(rep.Frames)/opts.duration.Seconds(), time.Duration(rep.P50).Round(100*time.Microsecond),
		time.Duration(rep.P99).Round(100*time.Microsecond), rep.Frames, rep.Ended, failed.Load())
	return nil
}

func sseMemory(ctx context.Context, opts options, kind database.Kind, stdout, stderr io.Writer) error {
	t, err := startTarget(ctx, opts, kind, sseVariant)
	if err != nil {
		return err
	}
	defer t.stop()
	before := liveBytes()
	fmt.Fprintf(stderr, "%s: %d idle subscribers\n", kind, opts.sseIdle)
	clients, err := startClients(t.baseURL, opts.sseIdle, false)
	if err != nil {
		return err
	}
	defer func() { _ = clients.cmd.Process.Kill(); _ = clients.cmd.Wait() }()
	time.Sleep(time.Second)
	after := liveBytes()
	per := float64(after-before) / float64(opts.sseIdle)
	fmt.Fprintf(stdout, "%-9s %-8s %12d %12s %10s %10s   (%.1f KiB of heap and stacks per idle stream)\n", kind, "memory",
		opts.sseIdle, "-", "-", "-", per/1024)
	return nil
}

// liveBytes is the heap in use and the goroutine stacks, after a GC.
func liveBytes() uint64 {
	// Several cycles: the runtime shrinks idle goroutines' stacks by half
	// per cycle, down to what they use.
	for range 6 {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// sseReport is what the child prints at the end.
type sseReport struct {
	Frames int64 `json:"frames"`
	P50    int64 `json:"p50"`
	P99    int64 `json:"p99"`
	Ended  int64 `json:"ended"`
}

// runSSEClients is the child: it opens n streams, prints "ready", reads
// frames until stdin closes, then prints its report.
func runSSEClients(url string, n int, measure bool) error {
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}
	client := &http.Client{Transport: tr}
	var from atomic.Int64
	from.Store(1 << 62)
	var mu sync.Mutex
	var lats []int64
	var ended atomic.Int64
	var wg sync.WaitGroup
	opened := make(chan error, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			req.Header.Set("Authorization", "Bearer "+adminKey)
			resp, err := client.Do(req)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			opened <- err
			if err != nil {
				return
			}
			defer resp.Body.Close()
			r := bufio.NewReaderSize(resp.Body, 16<<10)
			var local []int64
			key := []byte(`"createdAt":"`)
			for {
				line, err := r.ReadSlice('\n')
				if err != nil {
					ended.Add(1)
					break
				}
				if !measure || !bytes.HasPrefix(line, []byte("data: ")) {
					continue
				}
				now := time.Now()
				i := bytes.Index(line, key)
				if i < 0 {
					continue
				}
				rest := line[i+len(key):]
				j := bytes.IndexByte(rest, '"')
				if j < 0 {
					continue
				}
				ts, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
				if err != nil || ts.UnixNano() < from.Load() {
					continue
				}
				local = append(local, now.Sub(ts).Nanoseconds())
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		})
	}
	for range n {
		if err := <-opened; err != nil {
			return err
		}
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if v, ok := strings.CutPrefix(in.Text(), "from "); ok {
			ns, _ := strconv.ParseInt(v, 10, 64)
			from.Store(ns)
		}
	}
	// stdin closed: stop reading and report.
	cancel()
	wg.Wait()
	slices.Sort(lats)
	rep := sseReport{Frames: int64(len(lats)), Ended: ended.Load() - int64(n)}
	if len(lats) > 0 {
		rep.P50 = lats[len(lats)*50/100]
		rep.P99 = lats[min(len(lats)*99/100, len(lats)-1)]
	}
	b, _ := json.Marshal(rep)
	fmt.Println(string(b))
	return nil
}
