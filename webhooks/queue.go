package webhooks

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/time/rate"
	"gorm.io/gorm"

	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/models"
)

// QueueConfig configures the delivery queue.
type QueueConfig struct {
	// Instance names this process in claims. Default: random.
	Instance string
	// Concurrency is how many deliveries to one webhook are in flight at
	// once, so a slow endpoint holds at most this many. Default 16.
	Concurrency int
	// MaxClaimed caps the deliveries this instance holds claimed (being
	// sent or waiting for a sender) in all. Default 4096.
	MaxClaimed int
	// MaxPrefetch caps the deliveries claimed ahead for one webhook. A
	// webhook gets as many as its senders can send in about a second at its
	// recent latency, at least Concurrency. Default 512.
	MaxPrefetch int
	// PollInterval is how often the queue looks for due deliveries it was
	// not woken for (retries, other instances' work). Default 1s.
	PollInterval time.Duration
	// LeaseMargin is added to a webhook's timeout to make a claim's lease:
	// a claim older than that (its instance died) is taken over. Default 10s.
	LeaseMargin time.Duration
	// UserAgent is sent with every delivery. Default "Herald/dev".
	UserAgent string
	// Guard checks targets at connect time. Default: private targets refused.
	Guard *Guard
	// TracerProvider makes a client span per attempt. Default: no-op.
	TracerProvider trace.TracerProvider
	// Logger defaults to slog.Default(); Now to time.Now.
	Logger *slog.Logger
	Now    func() time.Time
	// Jitter returns a random duration in [0, d]: full jitter of a retry's
	// backoff. Default uniform; tests make it deterministic.
	Jitter func(d time.Duration) time.Duration
	// Metrics receives the measurements. Optional.
	Metrics *Metrics
	// Client sends the deliveries. Default: a client whose dialer is
	// Guard's, that follows no redirects and uses no proxy.
	Client *http.Client
}

// Queue delivers the rows of herald_deliveries: it claims due deliveries
// in batches (with a lease, so each attempt is made by one instance at a
// time), sends each with the webhook's signature, auth and headers under
// its timeout, and records the outcomes in batches. Claims and records go
// through the write path (events.Writer). Per-webhook concurrency limits
// and timeouts keep one slow or failing endpoint from delaying the others.
type Queue struct {
	cfg    QueueConfig
	read   *gorm.DB
	write  events.Writer
	kind   database.Kind
	client *http.Client
	tracer trace.Tracer
	prop   propagation.TraceContext

	wake    chan struct{}
	results chan result
	seq     atomic.Int64 // claim tokens

	mu   sync.Mutex
	live map[string]*hook // enabled, unpaused webhooks as of the last claim round
	// forgotten are webhooks changed since (Forget), by when.
	forgotten map[string]time.Time
	lanes     map[string]*lane
	claimed   int // claimed and not yet recorded, in all lanes
	nextDue   time.Time

	life      sync.Mutex
	started   bool
	running   atomic.Bool        // started, for preclaim without the life lock
	cancel    context.CancelFunc // the claim loop
	cancelOut context.CancelFunc // sends in flight
	out       context.Context    // the sends' context
	loopDone  chan struct{}
	recDone   chan struct{}
	senders   sync.WaitGroup
}

// NewQueue returns a queue reading on read and writing through write.
func NewQueue(cfg QueueConfig, read *gorm.DB, write events.Writer, kind database.Kind) *Queue {
	if cfg.Instance == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		cfg.Instance = hex.EncodeToString(b)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.MaxClaimed <= 0 {
		cfg.MaxClaimed = 4096
	}
	if cfg.MaxPrefetch <= 0 {
		cfg.MaxPrefetch = 512
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.LeaseMargin <= 0 {
		cfg.LeaseMargin = 10 * time.Second
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "Herald/dev"
	}
	if cfg.Guard == nil {
		cfg.Guard = &Guard{}
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = noop.NewTracerProvider()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(d time.Duration) time.Duration {
			if d <= 0 {
				return 0
			}
			return time.Duration(mrand.Int64N(int64(d) + 1))
		}
	}
	q := &Queue{cfg: cfg, read: read, write: write, kind: kind, client: cfg.Client,
		tracer: cfg.TracerProvider.Tracer("github.com/herald-dev/herald/webhooks"),
		wake:   make(chan struct{}, 1), lanes: map[string]*lane{}, live: map[string]*hook{}}
	if q.client == nil {
		q.client = &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // a proxy would connect on the guard's behalf
				DialContext:         cfg.Guard.Dialer().DialContext,
				MaxIdleConns:        1024,
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: 10 * time.Second,
				ForceAttemptHTTP2:   true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return q
}

// token returns a new claim token: this instance's name and a sequence
// number. Outcomes are recorded only for rows still holding the token of
// the claim they were sent under, so a claim that was taken over (its
// lease ran out) cannot overwrite the newer claim's state.
func (q *Queue) token() string {
	return q.cfg.Instance + "/" + strconv.FormatInt(q.seq.Add(1), 10)
}

// Wake tells the queue that deliveries may be due. It never blocks.
func (q *Queue) Wake() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Start runs the queue until Stop; safe to call twice.
func (q *Queue) Start() {
	q.life.Lock()
	defer q.life.Unlock()
	if q.started {
		return
	}
	q.started = true
	q.running.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	out, cancelOut := context.WithCancel(context.Background())
	q.cancel, q.cancelOut, q.out = cancel, cancelOut, out
	q.loopDone, q.recDone = make(chan struct{}), make(chan struct{})
	q.results = make(chan result, 1024)
	go q.recorder(q.results, q.recDone)
	go q.loop(ctx, out, q.loopDone)
}

// Stop stops claiming, hands the attempts in flight back to the queue
// (their claims are released without counting an attempt) and waits for
// the outcomes to be recorded; safe to call twice.
func (q *Queue) Stop() {
	q.life.Lock()
	defer q.life.Unlock()
	if !q.started {
		return
	}
	q.started = false
	q.running.Store(false)
	q.cancel()
	<-q.loopDone
	q.cancelOut()
	q.senders.Wait()
	// What was claimed but not sent goes back to the queue.
	q.mu.Lock()
	var left []claimed
	for _, l := range q.lanes {
		left = append(left, l.queue...)
		l.queue = nil
	}
	q.claimed -= len(left)
	q.mu.Unlock()
	for _, c := range left {
		q.results <- result{c: c, released: true}
	}
	close(q.results)
	<-q.recDone
}

func (q *Queue) loop(ctx, out context.Context, done chan struct{}) {
	defer close(done)
	metricsEvery := 5 * time.Second
	var lastMetrics time.Time
	backoff := time.Duration(0)
	for {
		wait := q.cfg.PollInterval
		q.mu.Lock()
		if !q.nextDue.IsZero() {
			wait = min(wait, max(q.nextDue.Sub(q.cfg.Now()), time.Millisecond))
		}
		q.mu.Unlock()
		wait = max(wait, backoff)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-q.wake:
		case <-timer.C:
		}
		timer.Stop()
		q.mu.Lock()
		if !q.nextDue.IsZero() && !q.nextDue.After(q.cfg.Now()) {
			q.nextDue = time.Time{} // this round claims what was due
		}
		q.mu.Unlock()
		n, err := q.safeClaim(ctx, out)
		if err != nil && ctx.Err() == nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			q.cfg.Logger.Error("webhooks: claim", "err", err, "retryIn", backoff)
			continue
		}
		backoff = 0
		if n > 0 {
			q.Wake() // there may be more
		}
		if q.cfg.Metrics != nil && time.Since(lastMetrics) > metricsEvery {
			lastMetrics = time.Now()
			if err := q.measure(ctx); err != nil && ctx.Err() == nil {
				q.cfg.Logger.Warn("webhooks: queue metrics", "err", err)
			}
		}
	}
}

func (q *Queue) safeClaim(ctx, out context.Context) (n int, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("webhooks: claim panicked: %v", p)
		}
	}()
	return q.claim(ctx, out)
}

// claimed is a delivery claimed by this instance, with its webhook and the
// end of its claim's lease.
type claimed struct {
	h     *hook
	d     models.Delivery
	lease time.Time
}

// lane is one webhook's deliveries claimed by this instance: a queue of
// claimed deliveries and up to Concurrency senders working through it.
type lane struct {
	queue   []claimed
	active  int
	limiter *rate.Limiter
	latency time.Duration // moving average of attempt latency
}

// prefetch is how many deliveries l may hold: what its senders send in
// about a second at its recent latency (and rate limit), from 1 to
// MaxPrefetch. A lane not measured yet gets Concurrency.
func (q *Queue) prefetch(l *lane) int {
	n := q.cfg.Concurrency
	if l.latency > 0 {
		n = min(max(int(time.Second/max(l.latency, time.Millisecond))*q.cfg.Concurrency, q.cfg.Concurrency), q.cfg.MaxPrefetch)
	}
	if l.limiter != nil {
		n = min(n, max(1, int(float64(l.limiter.Limit())+0.999)))
	}
	return n
}

// claim takes due deliveries of every enabled, unpaused webhook whose lane
// has room, in one write transaction, and queues them on their lanes.
func (q *Queue) claim(ctx, out context.Context) (int, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	started := time.Now()
	hooks, err := loadHooks(qctx, q.read, "enabled = ? AND paused = ?", true, false)
	if err != nil {
		return 0, err
	}
	type want struct {
		h     *hook
		n     int
		lease time.Time
	}
	var wants []want
	now := q.cfg.Now().UTC()
	q.mu.Lock()
	live := make(map[string]*hook, len(hooks))
	for _, h := range hooks {
		live[h.ID] = h
	}
	for id := range q.lanes {
		if live[id] == nil && len(q.lanes[id].queue) == 0 && q.lanes[id].active == 0 {
			delete(q.lanes, id)
		}
	}
	for id, at := range q.forgotten {
		if at.Before(started) {
			delete(q.forgotten, id) // this round read the change
		} else {
			delete(live, id)
		}
	}
	q.live = live
	room := q.cfg.MaxClaimed - q.claimed
	for _, h := range hooks {
		l := q.lane(h)
		backlog := len(l.queue) + l.active
		n := min(q.prefetch(l)-backlog, room)
		if n <= 0 || (backlog > 0 && n < q.cfg.Concurrency) {
			continue // full, or not worth a claim yet
		}
		wants = append(wants, want{h, n, q.leaseFor(h, l, backlog+n, now)})
	}
	q.mu.Unlock()
	if len(wants) == 0 {
		return 0, nil
	}
	// When the room runs out, the webhooks first in line take it: a new
	// order each round, so that no webhook is always last.
	mrand.Shuffle(len(wants), func(i, j int) { wants[i], wants[j] = wants[j], wants[i] })
	var got []claimed
	tok := q.token()
	err = q.write.Write(qctx, func(tx *gorm.DB) error {
		got = got[:0]
		// The room is spent on what is claimed, not on what is wanted:
		// webhooks with nothing due must not starve the others (with
		// more webhooks than MaxClaimed/MaxPrefetch, the last ones never
		// got a claim).
		left := room
		for _, w := range wants { // in a new random order each round (below)
			n := min(w.n, left)
			if n <= 0 {
				break
			}
			var rows []models.Delivery
			// Find, not Scan: Scan formats the statement with its values
			// for a logger that is never called.
			if err := tx.Raw(q.claimSQL(w.h.Ordered, w.h.ResumedAt != nil), tok, w.lease, now, w.h.ID, now, now, n).
				Find(&rows).Error; err != nil {
				return fmt.Errorf("webhooks: claim: %w", err)
			}
			left -= len(rows)
			for _, d := range rows {
				d.ClaimedBy = tok
				got = append(got, claimed{w.h, d, w.lease})
			}
			if w.h.ResumedAt != nil && len(rows) < w.n {
				// The paused backlog is sent (or in flight): back to
				// unconstrained claims once none of it is left.
				if err := tx.Exec(`UPDATE herald_webhooks SET resumed_at = NULL WHERE id = ? AND NOT EXISTS (
  SELECT 1 FROM herald_deliveries d WHERE d.webhook_id = ? AND d.status IN ('pending', 'retrying') AND d.created_at <= ?)`,
					w.h.ID, w.h.ID, *w.h.ResumedAt).Error; err != nil {
					return fmt.Errorf("webhooks: end of backlog: %w", err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	q.mu.Lock()
	q.enqueue(got)
	q.mu.Unlock()
	return len(got), nil
}

// claimSQL takes up to n due, unclaimed (or lease-expired) deliveries of
// one webhook, oldest first. For an ordered webhook, and for the backlog a
// webhook recorded while paused, only deliveries with no earlier
// unfinished one for the same row. On PostgreSQL SKIP LOCKED
// lets instances claim side by side; SQLite has one writer.
func (q *Queue) claimSQL(ordered, resumed bool) string {
	var b strings.Builder
	b.WriteString(`UPDATE herald_deliveries SET claimed_by = ?, claim_expires_at = ?, updated_at = ?
WHERE id IN (SELECT d.id FROM herald_deliveries d
  WHERE d.webhook_id = ? AND d.status IN ('pending', 'retrying') AND d.next_attempt_at <= ?
    AND (d.claim_expires_at IS NULL OR d.claim_expires_at < ?)`)
	switch {
	case ordered:
		b.WriteString(`
    AND NOT EXISTS (SELECT 1 FROM herald_deliveries p WHERE p.webhook_id = d.webhook_id
      AND p.resource_id = d.resource_id AND p.status IN ('pending', 'retrying') AND p.id < d.id)`)
	case resumed:
		// The backlog recorded while the webhook was paused goes out in
		// commit order per row, as for an ordered webhook.
		b.WriteString(`
    AND (d.created_at > (SELECT w.resumed_at FROM herald_webhooks w WHERE w.id = d.webhook_id)
      OR NOT EXISTS (SELECT 1 FROM herald_deliveries p WHERE p.webhook_id = d.webhook_id
        AND p.resource_id = d.resource_id AND p.status IN ('pending', 'retrying') AND p.id < d.id))`)
	}
	b.WriteString(`
  ORDER BY d.id LIMIT ?`)
	if q.kind == database.Postgres {
		b.WriteString(" FOR UPDATE SKIP LOCKED")
	}
	b.WriteString(`)
RETURNING id, webhook_id, event_id, event_type, resource_name, resource_id, event_created_at, payload, traceparent,
  status, attempts, next_attempt_at, attempt_log, created_at`)
	return b.String()
}

// preclaim tells whether this instance takes a new delivery of h at once
// (the dispatcher inserts it claimed and hands it over after commit), with
// extra more of h's already taken in this batch, and gives the lease.
// Ordered and paused webhooks go through claims, as do webhooks whose
// lane is full.
func (q *Queue) preclaim(h *hook, extra int, now time.Time) (time.Time, bool) {
	if h == nil || h.Ordered || h.Paused || !h.Enabled || h.ResumedAt != nil {
		return time.Time{}, false
	}
	running := q.running.Load()
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.lane(h)
	backlog := len(l.queue) + l.active + extra
	if !running || backlog >= q.prefetch(l) || q.claimed+extra >= q.cfg.MaxClaimed {
		return time.Time{}, false
	}
	return q.leaseFor(h, l, backlog+1, now), true
}

// leaseFor is the lease of a claim that puts l's backlog at n: the wait
// behind the backlog at the lane's recent pace, plus the attempt's
// timeout and the margin. A delivery whose lease would run out while it
// waits is handed back instead of sent.
func (q *Queue) leaseFor(h *hook, l *lane, n int, now time.Time) time.Time {
	waves := time.Duration(n/q.cfg.Concurrency + 1)
	wait := waves * 2 * max(l.latency, 10*time.Millisecond)
	if l.limiter != nil {
		wait += time.Duration(float64(n) / float64(l.limiter.Limit()) * float64(time.Second))
	}
	return now.Add(h.timeout + q.cfg.LeaseMargin + wait).UTC()
}

// handOff queues deliveries claimed at insertion on their lanes.
func (q *Queue) handOff(cs []claimed) {
	q.life.Lock()
	defer q.life.Unlock()
	if !q.started {
		return // their leases expire and a claim takes them
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	// The dispatcher read these webhooks just now: a webhook registered
	// since the last claim round is live, not gone (its deliveries would
	// be handed back and wait for the next round).
	if q.live == nil {
		q.live = map[string]*hook{}
	}
	for _, c := range cs {
		if c.h == nil {
			continue
		}
		if _, gone := q.forgotten[c.h.ID]; !gone && (q.live[c.h.ID] == nil || q.live[c.h.ID].UpdatedAt.Before(c.h.UpdatedAt)) {
			q.live[c.h.ID] = c.h
		}
	}
	q.enqueue(cs)
}

// enqueue puts claimed deliveries on their lanes and starts senders.
// q.mu held, queue running.
func (q *Queue) enqueue(cs []claimed) {
	for _, c := range cs {
		if c.h == nil {
			continue
		}
		l := q.lane(c.h)
		l.queue = append(l.queue, c)
		q.claimed++
		for l.active < q.cfg.Concurrency && l.active < len(l.queue) {
			l.active++
			q.senders.Add(1)
			go q.work(q.out, l)
		}
	}
}

// lane returns h's lane, with its rate limiter set to h's rate limit.
// q.mu held.
func (q *Queue) lane(h *hook) *lane {
	l := q.lanes[h.ID]
	if l == nil {
		l = &lane{}
		q.lanes[h.ID] = l
	}
	switch {
	case h.RateLimit <= 0:
		l.limiter = nil
	case l.limiter == nil || l.limiter.Limit() != rate.Limit(h.RateLimit):
		l.limiter = rate.NewLimiter(rate.Limit(h.RateLimit), 1) // no burst above the rate
	}
	return l
}

// work is one sender of lane l: it sends the lane's queued deliveries one
// after the other until the queue is empty or the queue stops.
func (q *Queue) work(ctx context.Context, l *lane) {
	defer q.senders.Done()
	for {
		q.mu.Lock()
		if len(l.queue) == 0 || ctx.Err() != nil {
			l.active--
			q.mu.Unlock()
			q.Wake()
			return
		}
		c := l.queue[0]
		l.queue = l.queue[1:]
		lim := l.limiter
		cur := q.live[c.h.ID]
		q.mu.Unlock()
		var r result
		switch {
		case cur == nil || !cur.UpdatedAt.Equal(c.h.UpdatedAt):
			// Paused, disabled, deleted or changed since the claim: hand
			// it back (a claim with the current settings takes it, or not).
			r = result{c: c, released: true}
		case q.cfg.Now().Add(c.h.timeout).After(c.lease):
			r = result{c: c, released: true} // its lease would run out mid-attempt
		default:
			r = q.attempt(ctx, c, lim)
		}
		q.mu.Lock()
		if !r.released {
			if l.latency == 0 {
				l.latency = r.latency
			} else {
				l.latency = (7*l.latency + r.latency) / 8
			}
		}
		low := len(l.queue) < q.prefetch(l)/2
		q.claimed--
		q.mu.Unlock()
		q.results <- r
		if low {
			q.Wake()
		}
	}
}

// Attempt is one entry of a delivery's attempt log.
type Attempt struct {
	Attempt         int               `json:"attempt"`
	At              time.Time         `json:"at"`
	StatusCode      int               `json:"statusCode,omitempty"`
	LatencyMS       float64           `json:"latencyMs"`
	Error           string            `json:"error,omitempty"`
	Response        string            `json:"response,omitempty"`
	ResponseHeaders map[string]string `json:"responseHeaders,omitempty"`
}

// maxLog bounds the attempts a delivery's log keeps (the newest).
const maxLog = 100

// result is the outcome of one attempt, to record.
type result struct {
	c        claimed
	released bool // handed back unattempted (shutdown)
	attempt  Attempt
	status   string
	next     time.Time
	gone     bool // 410: disable the webhook
	latency  time.Duration
}

// attempt sends one delivery and decides what comes next.
func (q *Queue) attempt(ctx context.Context, c claimed, lim *rate.Limiter) (r result) {
	r.c = c
	defer func() {
		if p := recover(); p != nil {
			q.cfg.Logger.Error("webhooks: send panicked", "delivery", c.d.ID, "panic", p)
			r = result{c: c, released: true}
		}
	}()
	if lim != nil {
		// Wait for the rate limit only if the attempt still ends within
		// the claim's lease; otherwise hand the delivery back.
		res := lim.Reserve()
		delay := res.Delay()
		if !res.OK() || q.cfg.Now().Add(delay+c.h.timeout).After(c.lease) {
			res.Cancel()
			return result{c: c, released: true}
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				res.Cancel()
				return result{c: c, released: true}
			case <-t.C:
			}
		}
	}
	if ctx.Err() != nil {
		return result{c: c, released: true}
	}
	at := q.cfg.Now()
	code, hdr, body, err := q.send(ctx, c)
	latency := q.cfg.Now().Sub(at)
	if err != nil && ctx.Err() != nil {
		return result{c: c, released: true} // shutting down: hand it back
	}
	a := Attempt{Attempt: c.d.Attempts + 1, At: at.UTC(), StatusCode: code, LatencyMS: float64(latency.Microseconds()) / 1000,
		Response: body, ResponseHeaders: maskHeaders(hdr)}
	if err != nil {
		a.Error = err.Error()
	}
	r.attempt = a
	now := q.cfg.Now().UTC()
	switch {
	case err == nil && code >= 200 && code < 300:
		r.status, r.next = StatusSucceeded, now
	case a.Attempt >= c.h.MaxAttempts:
		r.status, r.next = StatusDead, now
	default:
		r.status = StatusRetrying
		r.next = now.Add(backoff(c.h.initial, c.h.maxBackoff, a.Attempt, hdr, now, q.cfg.Jitter))
	}
	r.gone = err == nil && code == http.StatusGone
	r.latency = latency
	q.cfg.Metrics.attempted(r.status, latency)
	return r
}

// backoff is the delay before the attempt after attempt n (1-based): a
// Retry-After answer's (capped at maxInterval), else full jitter over
// initial * 2^(n-1), capped at maxInterval.
func backoff(initial, maxInterval time.Duration, n int, hdr http.Header, now time.Time, jitter func(time.Duration) time.Duration) time.Duration {
	if ra, ok := retryAfter(hdr, now); ok {
		return min(ra, maxInterval)
	}
	d := initial << min(n-1, 30)
	if d <= 0 || d > maxInterval {
		d = maxInterval
	}
	return jitter(d)
}

// send makes one HTTP attempt; it returns the status code, the response
// headers and the first KiB of the body, or the error.
func (q *Queue) send(ctx context.Context, c claimed) (int, http.Header, string, error) {
	h, d := c.h, &c.d
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	if d.Traceparent != "" {
		ctx = q.prop.Extract(ctx, propagation.MapCarrier{"traceparent": d.Traceparent})
	}
	parent := trace.SpanContextFromContext(ctx)
	ctx, span := q.tracer.Start(ctx, "webhook "+d.EventType, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("herald.webhook.id", h.ID), attribute.Int64("herald.delivery.id", d.ID),
			attribute.Int("herald.delivery.attempt", d.Attempts+1), attribute.String("http.request.method", "POST")))
	defer span.End()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, strings.NewReader(d.Payload))
	if err != nil {
		return 0, nil, "", err
	}
	for k, v := range h.headers {
		req.Header.Set(k, v)
	}
	deliveryID := strconv.FormatInt(d.ID, 10)
	msgID := d.EventID
	if strings.HasPrefix(msgID, idsPrefix) {
		msgID = deliveryID
	}
	now := q.cfg.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", q.cfg.UserAgent)
	req.Header.Set("X-Herald-Event-Type", d.EventType)
	req.Header.Set("X-Herald-Delivery-Id", deliveryID)
	req.Header.Set("X-Herald-Attempt", strconv.Itoa(d.Attempts+1))
	req.Header.Set("webhook-id", msgID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	switch h.AuthType {
	case AuthHMAC:
		secrets := []string{h.Secret}
		if h.PreviousSecret != "" && h.PreviousSecretUntil != nil && now.Before(*h.PreviousSecretUntil) {
			secrets = append(secrets, h.PreviousSecret)
		}
		req.Header.Set("webhook-signature", sign(secrets, msgID, now.Unix(), []byte(d.Payload)))
	case AuthBearer:
		req.Header.Set("Authorization", "Bearer "+h.auth.Token)
	case AuthBasic:
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(h.auth.Username+":"+h.auth.Password)))
	}
	out := ctx
	if !span.IsRecording() && parent.IsValid() {
		// Nothing records spans here (no exporter): pass the originating
		// trace's sampling decision on, not this process's "not sampled",
		// or a receiver that samples by its parent would drop its part.
		out = trace.ContextWithSpanContext(ctx, span.SpanContext().WithTraceFlags(parent.TraceFlags()))
	}
	q.prop.Inject(out, propagation.HeaderCarrier(req.Header))
	resp, err := q.client.Do(req)
	if err != nil {
		span.SetStatus(codes.Error, "send failed")
		return 0, nil, "", cleanErr(err)
	}
	defer resp.Body.Close()
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	head := make([]byte, 1024)
	n, _ := io.ReadFull(resp.Body, head)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		span.SetStatus(codes.Error, resp.Status)
	}
	return resp.StatusCode, resp.Header, string(bytes.ToValidUTF8(head[:n], []byte("\uFFFD"))), nil
}

// cleanErr shortens a client error for the attempt log.
func cleanErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("timeout: no answer within the webhook's timeout")
	}
	return err
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		return time.Duration(min(s, 1<<31)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// maskHeaders copies response headers for the log, masking those that
// carry credentials.
func maskHeaders(h http.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string]string, len(h))
	for k, vs := range h {
		v := strings.Join(vs, ", ")
		lk := strings.ToLower(k)
		switch {
		case lk == "authorization", lk == "proxy-authorization", lk == "cookie", lk == "set-cookie",
			lk == "www-authenticate", lk == "proxy-authenticate",
			strings.Contains(lk, "token"), strings.Contains(lk, "secret"), strings.Contains(lk, "password"),
			strings.Contains(lk, "api-key"), strings.Contains(lk, "apikey"), strings.Contains(lk, "signature"):
			v = "***"
		}
		if len(v) > 256 {
			v = v[:256]
		}
		out[k] = v
	}
	return out
}

// recorder writes outcomes in batches until results is closed.
func (q *Queue) recorder(results <-chan result, done chan struct{}) {
	defer close(done)
	for r := range results {
		// Outcomes are gathered for a few milliseconds, so that a busy
		// queue records hundreds per transaction instead of one each.
		batch := []result{r}
		linger := time.NewTimer(recordLinger)
	fill:
		for len(batch) < 500 {
			select {
			case r, ok := <-results:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			case <-linger.C:
				break fill
			}
		}
		linger.Stop()
		for try := 1; ; try++ {
			err := q.record(batch)
			if err == nil {
				// Recorded outcomes free the next delivery of an ordered
				// row.
				q.Wake()
				break
			}
			if try == 5 {
				// The claims' leases expire and the deliveries are tried
				// again: at least once still holds.
				q.cfg.Logger.Error("webhooks: record outcomes; leaving them to the lease", "err", err, "deliveries", len(batch))
				break
			}
			time.Sleep(time.Duration(try) * 200 * time.Millisecond)
		}
	}
}

// recordLinger is how long the recorder waits for more outcomes before
// writing a batch.
const recordLinger = 5 * time.Millisecond

// record stores a batch of outcomes and the webhooks' state changes (410,
// a streak of dead deliveries) in one write transaction.
func (q *Queue) record(batch []result) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	now := q.cfg.Now().UTC()
	ups := make([]outcome, 0, len(batch))
	type streak struct {
		reset bool
		dead  int
		gone  bool
	}
	streaks := map[string]*streak{}
	var order []string
	for _, r := range batch {
		d := r.c.d
		if r.released {
			ups = append(ups, outcome{d.ID, d.Status, d.Attempts, d.NextAttemptAt.UTC(), d.AttemptLog, d.ClaimedBy})
			continue
		}
		var log []Attempt
		_ = json.Unmarshal([]byte(d.AttemptLog), &log)
		log = append(log, r.attempt)
		if len(log) > maxLog {
			log = log[len(log)-maxLog:]
		}
		lj, _ := json.Marshal(log)
		ups = append(ups, outcome{d.ID, r.status, r.attempt.Attempt, r.next.UTC(), string(lj), d.ClaimedBy})
		if r.status == StatusRetrying {
			q.mu.Lock()
			if q.nextDue.IsZero() || r.next.Before(q.nextDue) {
				q.nextDue = r.next
			}
			q.mu.Unlock()
		}
		s := streaks[d.WebhookID]
		if s == nil {
			s = &streak{}
			streaks[d.WebhookID] = s
			order = append(order, d.WebhookID)
		}
		switch r.status {
		case StatusSucceeded:
			s.reset, s.dead = true, 0
		case StatusDead:
			s.dead++
		}
		s.gone = s.gone || r.gone
	}
	var disabled []string
	err := q.write.Write(ctx, func(tx *gorm.DB) error {
		disabled = disabled[:0]
		// The SQLite driver's binding is quadratic in a statement's
		// parameters (see insertDeliveries): small statements there.
		chunk := 500
		if q.kind != database.Postgres {
			chunk = 64
		}
		for part := ups; len(part) > 0; {
			n := min(len(part), chunk)
			if err := q.recordOutcomes(tx, part[:n], now); err != nil {
				return err
			}
			part = part[n:]
		}
		for _, id := range order {
			s := streaks[id]
			var err error
			switch {
			case s.reset:
				err = tx.Exec("UPDATE herald_webhooks SET dead_streak = ? WHERE id = ?", s.dead, id).Error
			case s.dead > 0:
				err = tx.Exec("UPDATE herald_webhooks SET dead_streak = dead_streak + ? WHERE id = ?", s.dead, id).Error
			}
			if err == nil && s.dead > 0 {
				res := tx.Exec(`UPDATE herald_webhooks SET enabled = ?, disabled_reason = ?, updated_at = ?
  WHERE id = ? AND enabled = ? AND dead_streak >= ?`, false, fmt.Sprintf("%d deliveries in a row died", DeadStreakLimit), now, id, true, DeadStreakLimit)
				if err = res.Error; res.RowsAffected > 0 {
					disabled = append(disabled, id)
				}
			}
			if err == nil && s.gone {
				res := tx.Exec(`UPDATE herald_webhooks SET enabled = ?, disabled_reason = ?, updated_at = ? WHERE id = ? AND enabled = ?`,
					false, "the endpoint answered 410 Gone", now, id, true)
				if err = res.Error; res.RowsAffected > 0 {
					disabled = append(disabled, id)
				}
			}
			if err != nil {
				return fmt.Errorf("webhooks: update webhook %s: %w", id, err)
			}
		}
		return nil
	})
	if err == nil {
		for _, id := range disabled {
			q.Forget(id)
		}
	}
	return err
}

// outcome is the new state of one delivery.
type outcome struct {
	id       int64
	status   string
	attempts int
	next     time.Time
	log      string
	token    string // the claim it was sent under
}

// recordOutcomes writes outcomes in one statement, for deliveries this
// instance still holds claimed.
func (q *Queue) recordOutcomes(tx *gorm.DB, ups []outcome, now time.Time) error {
	var sql strings.Builder
	args := make([]any, 0, len(ups)*6+1)
	if q.kind == database.Postgres {
		sql.WriteString(`UPDATE herald_deliveries AS d SET status = v.status, attempts = v.attempts, next_attempt_at = v.next_at,
  attempt_log = v.log, claimed_by = '', claim_expires_at = NULL, updated_at = ?
FROM (VALUES `)
		args = append(args, now)
		for i, u := range ups {
			if i > 0 {
				sql.WriteString(", ")
			}
			sql.WriteString("(?::bigint, ?::text, ?::int, ?::timestamptz, ?::text, ?::text)")
			args = append(args, u.id, u.status, u.attempts, u.next, u.log, u.token)
		}
		sql.WriteString(`) AS v(id, status, attempts, next_at, log, token) WHERE d.id = v.id AND d.claimed_by = v.token`)
	} else {
		sql.WriteString(`WITH v(id, status, attempts, next_at, log, token) AS (VALUES `)
		for i, u := range ups {
			if i > 0 {
				sql.WriteString(", ")
			}
			sql.WriteString("(?, ?, ?, ?, ?, ?)")
			args = append(args, u.id, u.status, u.attempts, u.next, u.log, u.token)
		}
		sql.WriteString(`) UPDATE herald_deliveries SET status = v.status, attempts = v.attempts, next_attempt_at = v.next_at,
  attempt_log = v.log, claimed_by = '', claim_expires_at = NULL, updated_at = ?
FROM v WHERE herald_deliveries.id = v.id AND herald_deliveries.claimed_by = v.token`)
		args = append(args, now)
	}
	if err := tx.Exec(sql.String(), args...).Error; err != nil {
		return fmt.Errorf("webhooks: record outcomes: %w", err)
	}
	return nil
}

// Forget drops a webhook from the senders' view until the next claim
// round reads it again: deliveries it holds claimed are handed back instead
// of sent. Call it when a webhook is paused, disabled, changed or deleted.
func (q *Queue) Forget(id string) {
	q.mu.Lock()
	delete(q.live, id)
	if q.forgotten == nil {
		q.forgotten = map[string]time.Time{}
	}
	// Until a claim round that read the webhooks after now: a hand-off
	// of deliveries the dispatcher rendered before the change must not
	// bring the old settings back.
	q.forgotten[id] = time.Now()
	q.mu.Unlock()
	q.Wake()
}

// DeadStreakLimit is how many deliveries in a row may die before the
// webhook is disabled.
const DeadStreakLimit = 50

// measure reads the queue depth and the oldest pending delivery's age.
func (q *Queue) measure(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var depth int64
	due := q.read.WithContext(qctx).Model(&models.Delivery{}).Where("status IN ?", []string{StatusPending, StatusRetrying})
	if err := due.Count(&depth).Error; err != nil {
		return err
	}
	var oldest []models.Delivery
	if err := q.read.WithContext(qctx).Select("event_created_at").Where("status IN ?", []string{StatusPending, StatusRetrying}).
		Order("event_created_at").Limit(1).Find(&oldest).Error; err != nil {
		return err
	}
	q.cfg.Metrics.QueueDepth.Set(float64(depth))
	age := 0.0
	if len(oldest) == 1 {
		age = q.cfg.Now().Sub(oldest[0].EventCreatedAt).Seconds()
	}
	q.cfg.Metrics.OldestPending.Set(age)
	return nil
}
