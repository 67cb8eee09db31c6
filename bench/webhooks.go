package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/database"
)

// The webhook benchmark (-webhooks): on each database, a fresh Herald
// delivers to fast receivers on loopback (204 at once, nothing checked).
//
//   - latency: creates paced at -webhook-rate per second for -warmup (not
//     measured: a fresh database's connections and caches) and then
//     -duration, with 3 webhooks (event format); for every delivery, the time from the
//     event's createdAt (taken in the write's transaction, just before its
//     commit, so an upper bound of commit-to-delivery) to its arrival.
//   - throughput: -webhook-events records created in bulk requests of 1000
//     with 1 paused webhook; once the dispatcher has recorded every
//     delivery, the webhook is unpaused and deliveries per second are
//     measured from the unpause to the last arrival (claims, sends and
//     outcome records, each delivery durable).

type sink struct {
	mu       sync.Mutex
	lat      []time.Duration
	n        atomic.Int64
	first    atomic.Int64
	last     atomic.Int64
	measured bool
	from     atomic.Int64 // unix ns: events created before are warm-up, not measured
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	body, _ := io.ReadAll(r.Body)
	s.first.CompareAndSwap(0, now.UnixNano())
	s.last.Store(now.UnixNano())
	s.n.Add(1)
	if s.measured {
		var ev struct {
			CreatedAt time.Time `json:"createdAt"`
		}
		if json.Unmarshal(body, &ev) == nil && !ev.CreatedAt.IsZero() && ev.CreatedAt.UnixNano() >= s.from.Load() {
			s.mu.Lock()
			s.lat = append(s.lat, now.Sub(ev.CreatedAt))
			s.mu.Unlock()
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func startSink(s *sink) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: s}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func registerHook(ctx context.Context, client *http.Client, base, name, url string, paused bool) (string, error) {
	body := fmt.Sprintf(`{"name":%q,"url":%q,"resource":"items","paused":%v}`, name, url, paused)
	raw, err := call(ctx, client, "POST", base+"/v1/_webhooks", body, http.StatusCreated)
	if err != nil {
		return "", err
	}
	var v struct{ ID string }
	return v.ID, json.Unmarshal(raw, &v)
}

func call(ctx context.Context, client *http.Client, method, url, body string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	return raw, nil
}

// webhookVariant allows loopback receivers.
var webhookVariant = variant{name: "webhooks", apply: func(c *app.Config) { c.WebhookAllowPrivate = true }}

func runWebhookBench(ctx context.Context, opts options, stdout, stderr io.Writer) error {
	client := newClient(64)
	defer client.CloseIdleConnections()
	fmt.Fprintf(stdout, "\n%-9s %-11s %12s %10s %10s %10s\n", "db", "measure", "deliveries", "per sec", "p50", "p99")
	for _, kind := range opts.dbs {
		if err := webhookLatency(ctx, opts, client, kind, stdout, stderr); err != nil {
			return fmt.Errorf("%s latency: %w", kind, err)
		}
		if err := webhookThroughput(ctx, opts, client, kind, stdout, stderr); err != nil {
			return fmt.Errorf("%s throughput: %w", kind, err)
		}
	}
	return nil
}

func webhookLatency(ctx context.Context, opts options, client *http.Client, kind database.Kind, stdout, stderr io.Writer) error {
	t, err := startTarget(ctx, opts, kind, webhookVariant)
	if err != nil {
		return err
	}
	defer t.stop()
	s := &sink{measured: true}
	url, closeSink, err := startSink(s)
	if err != nil {
		return err
	}
	defer closeSink()
	for i := range 3 {
		if _, err := registerHook(ctx, client, t.baseURL, fmt.Sprintf("bench-%d", i), url, false); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "%s: latency at %d writes/s for %s after %s of warm-up\n", kind, opts.webhookRate, opts.duration, opts.warmup)
	interval := time.Second / time.Duration(opts.webhookRate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	s.from.Store(time.Now().Add(opts.warmup).UnixNano())
	deadline := time.Now().Add(opts.warmup + opts.duration)
	var wg sync.WaitGroup
	var writes, failed atomic.Int64
	for time.Now().Before(deadline) && ctx.Err() == nil {
		<-tick.C
		measured := time.Now().UnixNano() >= s.from.Load()
		wg.Go(func() {
			_, err := call(ctx, client, "POST", t.baseURL+"/v1/items", `{"title":"w","price":1}`, http.StatusCreated)
			if err != nil {
				failed.Add(1)
				return
			}
			if measured {
				writes.Add(1)
			}
		})
	}
	wg.Wait()
	want := 3*writes.Load() + int64(3*opts.warmup/interval)
	wait := time.Now().Add(30 * time.Second)
	for s.n.Load() < want && time.Now().Before(wait) {
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	lat := slices.Clone(s.lat)
	s.mu.Unlock()
	slices.Sort(lat)
	if len(lat) == 0 {
		return fmt.Errorf("no deliveries arrived (%d writes, %d failed)", writes.Load(), failed.Load())
	}
	stages, err := latencyStages(ctx, client, t.baseURL)
	if err != nil {
		return err
	}
	rate := float64(writes.Load()) / opts.duration.Seconds()
	fmt.Fprintf(stdout, "%-9s %-11s %12d %10.0f %10s %10s   (%d writes at %.0f/s, 3 webhooks, %d write errors)\n", kind, "latency",
		len(lat), rate*3, pct(lat, 50), pct(lat, 99), writes.Load(), rate, failed.Load())
	fmt.Fprint(stdout, stages)
	return nil
}

// latencyStages splits the latency of the first webhook's last 1000
// deliveries by stage, from the delivery log: capture to dispatch (the
// event's createdAt to the delivery row's), dispatch to the attempt's
// start (claim), and the attempt itself.
func latencyStages(ctx context.Context, client *http.Client, base string) (string, error) {
	raw, err := call(ctx, client, "GET", base+"/v1/_webhooks", "", http.StatusOK)
	if err != nil {
		return "", err
	}
	var list struct {
		Data []struct{ ID, Name string } `json:"data"`
	}
	if err := json.Unmarshal(raw, &list); err != nil || len(list.Data) == 0 {
		return "", fmt.Errorf("webhook list: %v", err)
	}
	if raw, err = call(ctx, client, "GET", base+"/v1/_webhooks/"+list.Data[0].ID+"/deliveries?limit=1000", "", http.StatusOK); err != nil {
		return "", err
	}
	var page struct {
		Data []struct {
			CreatedAt  time.Time       `json:"createdAt"`
			Payload    json.RawMessage `json:"payload"`
			AttemptLog []struct {
				At        time.Time `json:"at"`
				LatencyMS float64   `json:"latencyMs"`
			} `json:"attemptLog"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return "", err
	}
	var dispatch, claim, send []time.Duration
	for _, d := range page.Data {
		var ev struct {
			CreatedAt time.Time `json:"createdAt"`
		}
		if json.Unmarshal(d.Payload, &ev) != nil || len(d.AttemptLog) == 0 {
			continue
		}
		dispatch = append(dispatch, d.CreatedAt.Sub(ev.CreatedAt))
		claim = append(claim, d.AttemptLog[0].At.Sub(d.CreatedAt))
		send = append(send, time.Duration(d.AttemptLog[0].LatencyMS*float64(time.Millisecond)))
	}
	var b strings.Builder
	for _, st := range []struct {
		name string
		d    []time.Duration
	}{{"  capture to dispatch", dispatch}, {"  dispatch to attempt", claim}, {"  attempt", send}} {
		if len(st.d) == 0 {
			continue
		}
		slices.Sort(st.d)
		fmt.Fprintf(&b, "%-33s %10s %10s\n", st.name, pct(st.d, 50), pct(st.d, 99))
	}
	return b.String(), nil
}

func pct(sorted []time.Duration, p int) string {
	i := (len(sorted)*p + 99) / 100
	i = min(max(i-1, 0), len(sorted)-1)
	return sorted[i].Round(100 * time.Microsecond).String()
}

func webhookThroughput(ctx context.Context, opts options, client *http.Client, kind database.Kind, stdout, stderr io.Writer) error {
	t, err := startTarget(ctx, opts, kind, webhookVariant)
	if err != nil {
		return err
	}
	defer t.stop()
	s := &sink{}
	url, closeSink, err := startSink(s)
	if err != nil {
		return err
	}
	defer closeSink()
	id, err := registerHook(ctx, client, t.baseURL, "bench-rate", url, true)
	if err != nil {
		return err
	}
	n := opts.webhookEvents
	fmt.Fprintf(stderr, "%s: throughput of %d deliveries\n", kind, n)
	var body bytes.Buffer
	body.WriteString("[")
	for i := range 1000 {
		if i > 0 {
			body.WriteString(",")
		}
		body.WriteString(`{"title":"t","price":2}`)
	}
	body.WriteString("]")
	began := time.Now()
	for done := 0; done < n && ctx.Err() == nil; done += 1000 {
		if _, err := call(ctx, client, "POST", t.baseURL+"/v1/items", body.String(), http.StatusCreated); err != nil {
			return err
		}
	}
	// The webhook is paused: the deliveries are recorded, none sent. Once
	// the dispatcher has taken every event, unpause and time the sending.
	for ctx.Err() == nil {
		raw, err := call(ctx, client, "GET", t.baseURL+"/metrics", "", http.StatusOK)
		if err != nil {
			return err
		}
		if strings.Contains(string(raw), `herald_consumer_lag_events{consumer="webhooks"} 0`+"\n") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	dispatched := time.Since(began)
	if _, err := call(ctx, client, "PATCH", t.baseURL+"/v1/_webhooks/"+id, `{"paused":false}`, http.StatusOK); err != nil {
		return err
	}
	unpaused := time.Now()
	wait := time.Now().Add(5 * time.Minute)
	for s.n.Load() < int64(n) && time.Now().Before(wait) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	got := s.n.Load()
	span := time.Duration(s.last.Load()) - time.Duration(unpaused.UnixNano())
	fmt.Fprintf(stdout, "%-9s %-11s %12d %10.0f %10s %10s   (unpause to last arrival %s; %d records written and dispatched in %s)\n", kind, "throughput",
		got, float64(got)/span.Seconds(), "-", "-", span.Round(time.Millisecond), n, dispatched.Round(time.Millisecond))
	return nil
}
