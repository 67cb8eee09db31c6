// Package realtime serves the event log as Server-Sent Events (SPEC
// section 7). A Hub per instance tails the log (it reads "id > N" from the
// read pool, the query resume needs too) and fans each event out to the
// subscribers in memory; it is not a durable consumer, so it never holds
// up webhook dispatch nor is held up by it. A stream's connection is taken
// over from net/http once its headers and replay are written: the hub
// appends frames to each subscriber's bounded buffer and a few writer
// goroutines send them, so an idle stream costs no goroutine (a few KiB in
// all). One that falls behind is disconnected and resumes with
// Last-Event-ID. On PostgreSQL, instances wake each other with
// LISTEN/NOTIFY sent outside write transactions (Waker); the log stays the
// source of truth, so a lost notification only delays.
package realtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/models"
)

// HubConfig configures a Hub.
type HubConfig struct {
	// Buffer is how many bytes of frames a subscriber may have waiting;
	// one that has more is disconnected. Default 1 MiB.
	Buffer int
	// Writers is how many goroutines write frames to connections.
	// Default 4.
	Writers int
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

// Sub is one stream's subscription. Until it is attached to its
// connection (after the replay), the events it gets wait as items; then
// as encoded frames in a byte buffer that the hub's writers send.
type Sub struct {
	caller string
	stream *Stream
	hub    *Hub

	// Guarded by hub.mu.
	reason string
	early  []*Item // before attach
	conn   net.Conn
	last   int64 // events up to it were replayed

	mu      sync.Mutex // pending and queued
	pending []byte
	queued  bool
}

// Why the hub dropped a subscription.
const (
	ReasonSlow     = "slow"
	ReasonShutdown = "shutdown"
)

// Close ends the subscription (and closes its connection); safe to call
// twice.
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
	cfg   HubConfig
	read  *gorm.DB
	wake  chan struct{}
	ready chan *Sub // subscribers with frames to write
	m     *metrics

	mu       sync.Mutex
	subs     map[*Sub]struct{}
	byCaller map[string]int
	head     int64
	closed   bool

	life    sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	writers sync.WaitGroup
	started bool
}

// NewHub returns a hub reading the log on read.
func NewHub(cfg HubConfig, read *gorm.DB) *Hub {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 1 << 20
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 4
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
	return &Hub{cfg: cfg, read: read, wake: make(chan struct{}, 1), ready: make(chan *Sub, 4096), m: newMetrics(cfg.Metrics),
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
	h.writers.Add(h.cfg.Writers)
	for range h.cfg.Writers {
		go h.writer(lctx)
	}
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
	h.writers.Wait()
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
		s.mu.Lock()
		s.pending = append(s.pending, "retry: 2000\n: the server is shutting down; reconnect with Last-Event-ID\n\n"...)
		s.mu.Unlock()
		h.drop(s, ReasonShutdown)
	}
}

// Subscribe registers a stream of caller's. st.Filter picks the events it
// gets, live from now on: events after the hub's head at the time of the
// call, which it returns (Serve replays what came before).
func (h *Hub) Subscribe(caller string, st *Stream) (*Sub, int64, error) {
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
	s := &Sub{caller: caller, stream: st, hub: h}
	h.subs[s] = struct{}{}
	h.byCaller[caller]++
	h.m.clients.Inc()
	return s, h.head, nil
}

// attach gives s its connection: the items that came since it subscribed
// (after last, the replay's end) become frames, in order, and from then on
// the writers send what it gets.
func (h *Hub) attach(s *Sub, conn net.Conn, last int64) {
	h.mu.Lock()
	s.last = last
	h.mu.Unlock()
	for {
		h.mu.Lock()
		if _, ok := h.subs[s]; !ok {
			h.mu.Unlock()
			_ = conn.Close()
			return
		}
		early := s.early
		s.early = nil
		if len(early) == 0 {
			// Nothing came meanwhile: from now on the hub delivers directly.
			s.conn = conn
			h.mu.Unlock()
			break
		}
		h.mu.Unlock()
		for _, it := range early {
			if !h.add(s, it) {
				_ = conn.Close()
				return
			}
		}
	}
	h.kick(s)
}

func (h *Hub) drop(s *Sub, reason string) {
	h.mu.Lock()
	if _, ok := h.subs[s]; !ok {
		h.mu.Unlock()
		return
	}
	delete(h.subs, s)
	if h.byCaller[s.caller]--; h.byCaller[s.caller] <= 0 {
		delete(h.byCaller, s.caller)
	}
	s.reason = reason
	s.early = nil
	conn := s.conn
	h.m.clients.Dec()
	if reason == ReasonSlow {
		h.m.slow.Inc()
	}
	h.mu.Unlock()
	if conn == nil {
		return
	}
	// What is pending (a shutdown's retry hint) goes out if it can at once.
	s.mu.Lock()
	rest := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(rest) > 0 {
		_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = conn.Write(rest)
	}
	_ = conn.Close()
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
		}
		if len(rows) < h.cfg.BatchSize {
			return nil
		}
	}
	return nil
}

// broadcast hands it to every subscriber that wants it (a nil item, the
// heartbeat, to all); for an event, it moves the head past it under the
// same lock, so a subscription either gets the event live or starts after
// it.
func (h *Hub) broadcast(it *Item) {
	h.mu.Lock()
	if it != nil {
		h.head = it.Event.ID
	}
	var attached []*Sub
	for s := range h.subs {
		if it != nil && s.stream.Filter != nil && !s.stream.Filter(it.Event) {
			continue
		}
		if s.conn == nil {
			if it != nil {
				s.early = append(s.early, it) // bounded by the replay's length
			}
			continue
		}
		attached = append(attached, s)
	}
	h.mu.Unlock()
	for _, s := range attached {
		h.deliver(s, it)
	}
}

// deliver appends it's frame (or a heartbeat) to s's buffer and queues s
// for the writers.
func (h *Hub) deliver(s *Sub, it *Item) {
	if h.add(s, it) {
		h.kick(s)
	}
}

// add appends it's frame (or a heartbeat) to s's buffer; a subscriber
// whose buffer would be over the limit is dropped as slow (false).
func (h *Hub) add(s *Sub, it *Item) bool {
	var f []byte
	switch {
	case it == nil:
		f = heartbeat
	case it.Event.ID <= s.last:
		return true // replayed already
	default:
		if f = h.frameOf(it, s.stream); f == nil {
			return true
		}
		h.m.frames.Inc()
	}
	s.mu.Lock()
	if len(s.pending)+len(f) > h.cfg.Buffer {
		s.mu.Unlock()
		h.drop(s, ReasonSlow)
		return false
	}
	s.pending = append(s.pending, f...)
	s.mu.Unlock()
	return true
}

// kick queues s for the writers when it has frames and is not queued.
func (h *Hub) kick(s *Sub) {
	s.mu.Lock()
	queue := len(s.pending) > 0 && !s.queued
	s.queued = s.queued || queue
	s.mu.Unlock()
	if queue {
		h.ready <- s
	}
}

var heartbeat = []byte(": keep-alive\n\n")

// writeSlice bounds one write: a client that does not take the bytes in
// that time is retried later (writeRetry), so it holds a writer only
// briefly; one that never takes them fills its buffer and is dropped.
const (
	writeSlice = 20 * time.Millisecond
	writeRetry = 50 * time.Millisecond
)

// writer sends subscribers' pending frames.
func (h *Hub) writer(ctx context.Context) {
	defer h.writers.Done()
	for {
		var s *Sub
		select {
		case <-ctx.Done():
			return
		case s = <-h.ready:
		}
		h.mu.Lock()
		conn := s.conn
		_, live := h.subs[s]
		h.mu.Unlock()
		s.mu.Lock()
		buf := s.pending
		s.pending = nil
		s.mu.Unlock()
		if !live || conn == nil {
			continue
		}
		_ = conn.SetWriteDeadline(time.Now().Add(writeSlice))
		n, err := conn.Write(buf)
		if err == nil {
			s.mu.Lock()
			if len(s.pending) == 0 {
				s.queued = false
				s.pending = buf[:0] // reuse the buffer
				s.mu.Unlock()
				continue
			}
			s.mu.Unlock()
			h.ready <- s
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			h.drop(s, "") // the client went away
			continue
		}
		// The client is slow to read: keep the rest, in front, and come
		// back to it.
		s.mu.Lock()
		over := len(buf)-n+len(s.pending) > h.cfg.Buffer
		s.pending = append(buf[n:len(buf):len(buf)], s.pending...)
		s.mu.Unlock()
		if over {
			h.drop(s, ReasonSlow)
			continue
		}
		time.AfterFunc(writeRetry, func() {
			select {
			case h.ready <- s:
			default:
				s.mu.Lock()
				s.queued = false
				s.mu.Unlock()
			}
		})
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
