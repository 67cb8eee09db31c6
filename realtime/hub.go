// Package realtime serves the event log as Server-Sent Events (SPEC
// section 7). A Hub per instance tails the log (it reads "id > N" from the
// read pool, the query resume needs too) and fans each event out to the
// subscribers in memory; it is not a durable consumer, so it never holds
// up webhook dispatch nor is held up by it. Each subscriber has a bounded
// buffer: one that falls behind is disconnected and resumes with
// Last-Event-ID. On PostgreSQL, instances wake each other with
// LISTEN/NOTIFY sent outside write transactions (Waker); the log stays the
// source of truth, so a lost notification only delays.
package realtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/models"
)

// HubConfig configures a Hub.
type HubConfig struct {
	// Buffer is how many events a subscriber may have waiting; one that has
	// more is disconnected. Default 256.
	Buffer int
	// MaxPerCaller caps the streams of one caller (the admin key, one user,
	// or one IP address for the public role). Default 20.
	MaxPerCaller int
	// MaxTotal caps the streams of the instance. Default 10000.
	MaxTotal int
	// PollInterval is how often the hub reads the log when nothing woke
	// it. Default 1s.
	PollInterval time.Duration
	// Heartbeat is the interval of comment lines on idle streams.
	// Default 15s.
	Heartbeat time.Duration
	// BatchSize is how many events one read of the log takes. Default 1000.
	BatchSize int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics is where the hub registers its measurements. Optional.
	Metrics prometheus.Registerer
}

// Item is one event as the hub hands it to subscribers: decoded once, and
// encoded once per distinct view (Frame).
type Item struct {
	Event *events.Event

	mu     sync.Mutex
	frames map[string][]byte
}

// Frame returns the encoded frame of this event for a view key, making it
// with make the first time the key is asked for. A nil frame means the
// view does not see the event.
func (it *Item) Frame(key string, make func() []byte) []byte {
	it.mu.Lock()
	defer it.mu.Unlock()
	if f, ok := it.frames[key]; ok {
		return f
	}
	if it.frames == nil {
		it.frames = map[string][]byte{}
	}
	f := make()
	it.frames[key] = f
	return f
}

// Sub is one stream's subscription. C delivers events in log order; a nil
// item is a heartbeat. Done is closed when the hub drops the subscription
// (Reason says why).
type Sub struct {
	C      <-chan *Item
	Done   <-chan struct{}
	c      chan *Item
	done   chan struct{}
	caller string
	filter func(*events.Event) bool
	hub    *Hub
	once   sync.Once
	reason string
}

// Why the hub dropped a subscription.
const (
	ReasonSlow     = "slow"
	ReasonShutdown = "shutdown"
)

// Reason says why the subscription ended ("" while it runs).
func (s *Sub) Reason() string {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.reason
}

// Close ends the subscription; safe to call twice.
func (s *Sub) Close() { s.hub.drop(s, "") }

// ErrShuttingDown means the hub takes no new streams (503).
var ErrShuttingDown = errors.New("realtime: shutting down")

// ErrTooMany means a stream limit is reached (429).
var ErrTooMany = errors.New("realtime: too many streams")

// LimitError is a stream limit reached: per caller or in total.
type LimitError struct{ Message string }

// Error implements error.
func (e *LimitError) Error() string { return e.Message }

// Unwrap makes errors.Is(err, ErrTooMany) true.
func (e *LimitError) Unwrap() error { return ErrTooMany }

// Hub tails the event log and fans events out to subscribers. Safe for
// concurrent use.
type Hub struct {
	cfg  HubConfig
	read *gorm.DB
	wake chan struct{}
	m    *metrics

	mu       sync.Mutex
	subs     map[*Sub]struct{}
	byCaller map[string]int
	head     int64
	closed   bool

	life    sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	started bool
}

// NewHub returns a hub reading the log on read.
func NewHub(cfg HubConfig, read *gorm.DB) *Hub {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 256
	}
	if cfg.MaxPerCaller <= 0 {
		cfg.MaxPerCaller = 20
	}
	if cfg.MaxTotal <= 0 {
		cfg.MaxTotal = 10000
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Hub{cfg: cfg, read: read, wake: make(chan struct{}, 1), m: newMetrics(cfg.Metrics),
		subs: map[*Sub]struct{}{}, byCaller: map[string]int{}}
}

// Config returns the hub's configuration, defaults filled in.
func (h *Hub) Config() HubConfig { return h.cfg }

// Wake makes the hub read the log now (events were committed). It never
// blocks.
func (h *Hub) Wake() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Start reads the log's head and tails it until Stop; safe to call twice.
func (h *Hub) Start(ctx context.Context) error {
	h.life.Lock()
	defer h.life.Unlock()
	if h.started {
		return nil
	}
	var head int64
	if err := h.read.WithContext(ctx).Raw("SELECT COALESCE(MAX(id), 0) FROM herald_events").Scan(&head).Error; err != nil {
		return fmt.Errorf("realtime: read the log's head: %w", err)
	}
	h.mu.Lock()
	h.head, h.closed = head, false
	h.mu.Unlock()
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel, h.done, h.started = cancel, make(chan struct{}), true
	go h.loop(lctx, h.done)
	return nil
}

// Stop ends every subscription (reason shutdown) and the tailing; safe to
// call twice.
func (h *Hub) Stop() {
	h.life.Lock()
	defer h.life.Unlock()
	if !h.started {
		return
	}
	h.started = false
	h.Shutdown()
	h.cancel()
	<-h.done
}

// Shutdown ends every subscription with reason shutdown and refuses new
// ones; the streams close with a retry hint. Safe to call twice.
func (h *Hub) Shutdown() {
	h.mu.Lock()
	h.closed = true
	subs := make([]*Sub, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		h.drop(s, ReasonShutdown)
	}
}

// Subscribe registers a stream of caller's. filter (nil: everything) picks
// the events it gets, live from now on: events after the hub's head at the
// time of the call. Replay what came before with Replay.
func (h *Hub) Subscribe(caller string, filter func(*events.Event) bool) (*Sub, int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, 0, ErrShuttingDown
	case len(h.subs) >= h.cfg.MaxTotal:
		h.m.refused.WithLabelValues("total").Inc()
		return nil, 0, &LimitError{fmt.Sprintf("the server has its maximum of %d streams", h.cfg.MaxTotal)}
	case h.byCaller[caller] >= h.cfg.MaxPerCaller:
		h.m.refused.WithLabelValues("caller").Inc()
		return nil, 0, &LimitError{fmt.Sprintf("this caller has its maximum of %d streams", h.cfg.MaxPerCaller)}
	}
	c := make(chan *Item, h.cfg.Buffer)
	done := make(chan struct{})
	s := &Sub{C: c, Done: done, c: c, done: done, caller: caller, filter: filter, hub: h}
	h.subs[s] = struct{}{}
	h.byCaller[caller]++
	h.m.clients.Inc()
	return s, h.head, nil
}

func (h *Hub) drop(s *Sub, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	if h.byCaller[s.caller]--; h.byCaller[s.caller] <= 0 {
		delete(h.byCaller, s.caller)
	}
	s.reason = reason
	h.m.clients.Dec()
	if reason == ReasonSlow {
		h.m.slow.Inc()
	}
	close(s.done)
}

func (h *Hub) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	poll := time.NewTicker(h.cfg.PollInterval)
	defer poll.Stop()
	beat := time.NewTicker(h.cfg.Heartbeat)
	defer beat.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		case <-poll.C:
		case <-beat.C:
			h.broadcast(nil)
			continue
		}
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		if err := h.tail(ctx); err != nil && ctx.Err() == nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			h.cfg.Logger.Error("realtime: tail the log", "err", err, "retryIn", backoff)
			h.Wake()
			continue
		}
		backoff = 0
	}
}

// tail reads what was committed after the head and hands it out. A panic
// becomes an error.
func (h *Hub) tail(ctx context.Context) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("realtime: tail panicked: %v", p)
		}
	}()
	for ctx.Err() == nil {
		h.mu.Lock()
		head := h.head
		h.mu.Unlock()
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var rows []models.Event
		err := h.read.WithContext(qctx).Where("id > ?", head).Order("id").Limit(h.cfg.BatchSize).Find(&rows).Error
		cancel()
		if err != nil {
			return err
		}
		for i := range rows {
			e, err := decode(&rows[i])
			if err != nil {
				return err
			}
			h.broadcast(&Item{Event: e})
			h.mu.Lock()
			h.head = rows[i].ID
			h.mu.Unlock()
		}
		if len(rows) < h.cfg.BatchSize {
			return nil
		}
	}
	return nil
}

// broadcast offers it to every subscriber that wants it (a nil item, the
// heartbeat, to all); a subscriber whose buffer is full is dropped as slow.
func (h *Hub) broadcast(it *Item) {
	h.mu.Lock()
	var slow []*Sub
	for s := range h.subs {
		if it != nil && s.filter != nil && !s.filter(it.Event) {
			continue
		}
		select {
		case s.c <- it:
		default:
			if it != nil {
				slow = append(slow, s)
			}
		}
	}
	h.mu.Unlock()
	for _, s := range slow {
		h.drop(s, ReasonSlow)
	}
}

// decode turns a stored row into the event, as the audit API shows it.
// dispatchedAt is left null: the stream does not wait for dispatch.
func decode(m *models.Event) (*events.Event, error) {
	e, err := events.FromModel(m)
	if err != nil {
		return nil, fmt.Errorf("realtime: decode event %d: %w", m.ID, err)
	}
	e.DispatchedAt = nil
	return &e, nil
}
