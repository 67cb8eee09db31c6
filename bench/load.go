package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"path"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// op is a request pattern a measurement repeats.
type op string

const (
	// opCreate is POST /v1/items with one record: a write plus its event.
	opCreate op = "create"
	// opRead is GET /v1/items/{id} of a random record created earlier in the
	// run (the seed, plus what create measurements made).
	opRead op = "read"
	// opList is GET /v1/items?_limit=20&price__gt=10: a filtered page and
	// its total count.
	opList op = "list"
)

func opNames() []string { return []string{string(opCreate), string(opRead), string(opList)} }

func lookupOp(name string) (op, bool) {
	if slices.Contains(opNames(), name) {
		return op(name), true
	}
	return "", false
}

const (
	listQuery = "/v1/items?_limit=20&price__gt=10"
	// requestTimeout bounds one request, so a stuck server cannot hold a
	// measurement past its deadline for long.
	requestTimeout = 30 * time.Second
)

// newClient returns the one HTTP client of a run: keep-alive connections,
// at least one idle connection kept per client, and a dialer that refuses
// anything but loopback.
func newClient(maxClients int) *http.Client {
	dialer := &net.Dialer{
		Timeout:   5 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("bench: refusing to dial non-loopback address %s", address)
			}
			return nil
		},
	}
	tr := &http.Transport{
		Proxy:               nil, // never a proxy: traffic stays on loopback
		DialContext:         dialer.DialContext,
		MaxIdleConns:        2 * maxClients,
		MaxIdleConnsPerHost: maxClients,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// loader drives one target.
type loader struct {
	client  *http.Client
	baseURL string
	// ids are the records read picks from; only changed between
	// measurements, so workers share it without a lock.
	ids []string
	// latBuf backs the workers' latency slices: allocated once per target,
	// its length is the cap on requests per measurement.
	latBuf []time.Duration
}

// measurement is what one timed run of an op at a number of clients saw.
type measurement struct {
	requests int
	errors   int // non-2xx answers and transport errors
	elapsed  time.Duration
	p50, p99 time.Duration
	capped   bool   // the request cap ended it before the deadline
	firstErr string // a sample error, for diagnosis
}

func (m measurement) reqPerSec() float64 {
	if m.elapsed <= 0 {
		return 0
	}
	return float64(m.requests) / m.elapsed.Seconds()
}

// workerResult is one worker's share of a measurement.
type workerResult struct {
	lat      []time.Duration
	errors   int
	firstErr string
	created  []string
}

// measure runs clients workers issuing o back to back until d has passed
// (requests in flight at the deadline finish and count) or the request cap
// is reached.
func (l *loader) measure(ctx context.Context, o op, clients int, d time.Duration, seed uint64) measurement {
	per := len(l.latBuf) / clients
	results := make([]workerResult, clients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range clients {
		// Three-index slices: a worker's appends never reach its neighbour's.
		lat := l.latBuf[w*per : w*per : (w+1)*per]
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			<-start
			results[w] = l.worker(ctx, o, w, lat, rng, time.Now().Add(d))
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	m := measurement{elapsed: time.Since(began)}

	var all []time.Duration
	for _, r := range results {
		m.requests += len(r.lat)
		m.errors += r.errors
		if m.firstErr == "" {
			m.firstErr = r.firstErr
		}
		if len(r.lat) == cap(r.lat) {
			m.capped = true
		}
		l.ids = append(l.ids, r.created...)
	}
	all = make([]time.Duration, 0, m.requests)
	for _, r := range results {
		all = append(all, r.lat...)
	}
	slices.Sort(all)
	m.p50, m.p99 = percentile(all, 0.50), percentile(all, 0.99)
	return m
}

func (l *loader) worker(ctx context.Context, o op, w int, lat []time.Duration, rng *rand.Rand, deadline time.Time) workerResult {
	var res workerResult
	body := make([]byte, 0, 128)
	for n := 0; len(lat) < cap(lat) && ctx.Err() == nil; n++ {
		t0 := time.Now()
		if !t0.Before(deadline) {
			break
		}
		var req *http.Request
		var err error
		switch o {
		case opCreate:
			body = appendItem(body[:0], w, n, rng)
			// A fresh copy per request: the transport may still read a
			// body after Do returns on an error.
			req, err = http.NewRequestWithContext(ctx, http.MethodPost, l.baseURL+"/v1/items", bytes.NewReader(bytes.Clone(body)))
			if err == nil {
				req.Header.Set("Content-Type", "application/json")
			}
		case opRead:
			id := l.ids[rng.IntN(len(l.ids))]
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, l.baseURL+"/v1/items/"+id, nil)
		case opList:
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, l.baseURL+listQuery, nil)
		}
		if err != nil {
			res.fail(err.Error())
			break
		}
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := l.client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				break // interrupted: not the server's failure
			}
			lat = append(lat, time.Since(t0))
			res.fail(err.Error())
			continue
		}
		var sample []byte
		if resp.StatusCode/100 != 2 {
			sample, _ = io.ReadAll(io.LimitReader(resp.Body, 300))
		}
		// Drain so the connection goes back to the pool.
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		lat = append(lat, time.Since(t0))
		if resp.StatusCode/100 != 2 {
			res.fail(fmt.Sprintf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, bytes.TrimSpace(sample)))
			continue
		}
		if o == opCreate {
			if loc := resp.Header.Get("Location"); loc != "" {
				res.created = append(res.created, path.Base(loc))
			}
		}
	}
	res.lat = lat
	return res
}

func (r *workerResult) fail(msg string) {
	r.errors++
	if r.firstErr == "" {
		r.firstErr = msg
	}
}

// appendItem appends one item's JSON to b. Prices spread over 0 to 100, so
// about nine in ten items match the list filter price > 10.
func appendItem(b []byte, w, n int, rng *rand.Rand) []byte {
	b = append(b, `{"title":"item `...)
	b = strconv.AppendInt(b, int64(w), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `","price":`...)
	b = strconv.AppendFloat(b, float64(rng.IntN(10000))/100, 'f', 2, 64)
	b = append(b, `,"qty":`...)
	b = strconv.AppendInt(b, int64(rng.IntN(100)), 10)
	b = append(b, `,"tags":["bench","w`...)
	b = strconv.AppendInt(b, int64(w), 10)
	b = append(b, `"],"status":"`...)
	switch rng.IntN(3) {
	case 0:
		b = append(b, "draft"...)
	case 1:
		b = append(b, "active"...)
	default:
		b = append(b, "archived"...)
	}
	b = append(b, `"}`...)
	return b
}

// seedItems creates n items in batches and keeps their ids for read.
func (l *loader) seedItems(ctx context.Context, n int) error {
	rng := rand.New(rand.NewPCG(1, 2))
	for done := 0; done < n; {
		batch := min(n-done, 1000) // the API's largest batch
		var body []byte
		body = append(body, '[')
		for i := range batch {
			if i > 0 {
				body = append(body, ',')
			}
			body = appendItem(body, -1, done+i, rng)
		}
		body = append(body, ']')
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.baseURL+"/v1/items", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := l.client.Do(req)
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		raw, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("seed: POST /v1/items: %d %s", resp.StatusCode, bytes.TrimSpace(raw[:min(len(raw), 300)]))
		}
		var out struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("seed: decode response: %w", err)
		}
		if len(out.Data) != batch {
			return fmt.Errorf("seed: created %d items, want %d", len(out.Data), batch)
		}
		for _, r := range out.Data {
			if r.ID == "" {
				return errors.New("seed: created item has no id")
			}
			l.ids = append(l.ids, r.ID)
		}
		done += batch
	}
	return nil
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(sorted))*p)) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
