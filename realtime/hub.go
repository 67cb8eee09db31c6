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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
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
	reason string  // why the hub dropped it
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
	ReasonChanged  = "changed" // the schema (permissions) changed
	ReasonExpired  = "expired" // the caller's token expired
)

// farewells are the last words of a stream the hub ends on purpose: a
// retry hint, so the client reconnects (and is checked again).
var farewells = map[string]string{
	ReasonShutdown: "retry: 2000\n: the server is shutting down; reconnect with Last-Event-ID\n\n",
	ReasonChanged:  "retry: 2000\n: permissions changed; reconnect with Last-Event-ID\n\n",
	ReasonExpired:  "retry: 2000\n: the token expired; reconnect with a new one\n\n",
}

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
	qmu   sync.Mutex
	queue []*Sub        // subscribers with frames to write
	qwake chan struct{} // a writer should look at the queue
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
	return &Hub{cfg: cfg, read: read, wake: make(chan struct{}, 1), qwake: make(chan struct{}, 1), m: newMetrics(cfg.Metrics),
		subs: map[*Sub]struct{}{}, byCaller: map[string]int{}}
}

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
		h.drop(s, ReasonShutdown)
	}
}

// SchemaChanged ends the streams whose views were made under an older
// schema version, with a retry hint: they reconnect under the new
// permissions. It never blocks for long.
func (h *Hub) SchemaChanged(version int) {
	h.mu.Lock()
	var old []*Sub
	for s := range h.subs {
		if s.stream.SchemaVersion != 0 && s.stream.SchemaVersion < version {
			old = append(old, s)
		}
	}
	h.mu.Unlock()
	for _, s := range old {
		h.drop(s, ReasonChanged)
	}
}

// reap drops the streams whose token expired and those whose client went
// away (a read on the connection says so at once; nothing else reads it).
// It runs at every heartbeat and when a caller reaches its limit.
func (h *Hub) reap(caller string) {
	now := time.Now()
	h.mu.Lock()
	var expired, gone []*Sub
	for s := range h.subs {
		if caller != "" && s.caller != caller {
			continue
		}
		switch {
		case !s.stream.Expires.IsZero() && now.After(s.stream.Expires):
			expired = append(expired, s)
		case s.conn != nil && !alive(s.conn):
			gone = append(gone, s)
		}
	}
	h.mu.Unlock()
	for _, s := range expired {
		h.drop(s, ReasonExpired)
	}
	for _, s := range gone {
		h.drop(s, "")
	}
}

// Subscribe registers a stream of caller's. st.Filter picks the events it
// gets, live from now on: events after the hub's head at the time of the
// call, which it returns (Serve replays what came before).
func (h *Hub) Subscribe(caller string, st *Stream) (*Sub, int64, error) {
	h.mu.Lock()
	full, idle := h.byCaller[caller] >= h.cfg.MaxPerCaller, len(h.subs) == 0
	h.mu.Unlock()
	// While nobody listened the hub did not follow the log: the first
	// subscriber starts at its end. An event committed after this read is
	// tailed and sent live; one before it is in the past (Serve replays
	// it when the stream resumes from an earlier id).
	var end int64
	if idle {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := h.read.WithContext(ctx).Model(&models.Event{}).Select("COALESCE(MAX(id), 0)").Scan(&end).Error
		cancel()
		if err != nil {
			return nil, 0, fmt.Errorf("realtime: read the log's end: %w", err)
		}
	}
	if full {
		h.reap(caller) // streams whose clients went away do not count
	}
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
	if len(h.subs) == 0 && end > h.head {
		h.head = end
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
			// Dropped before it was attached (a shutdown during its
			// replay): its farewell still goes out.
			bye := farewells[s.reason]
			h.mu.Unlock()
			if bye != "" {
				_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				_, _ = conn.Write([]byte(bye))
			}
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
	if bye, ok := farewells[reason]; ok {
		// What waits and the retry hint go out if they can at once. (A
		// writer may hold earlier frames; the client resumes from what it
		// got.)
		s.mu.Lock()
		rest := append(s.pending, bye...)
		s.pending = nil
		s.mu.Unlock()
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
			h.reap("")
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
		head, idle := h.head, len(h.subs) == 0
		h.mu.Unlock()
		if idle {
			// Nobody listens: nothing to read or decode. The first
			// subscriber moves the head to the log's end (Subscribe).
			return nil
		}
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
				// A row that cannot be decoded must not stop every stream.
				h.cfg.Logger.Error("realtime: skip an event", "id", rows[i].ID, "err", err)
				h.mu.Lock()
				h.head = rows[i].ID
				h.mu.Unlock()
				continue
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
	var attached, slow []*Sub
	for s := range h.subs {
		if it != nil && s.stream.Filter != nil && !s.stream.Filter(it.Event) {
			continue
		}
		if s.conn == nil {
			if it != nil {
				if len(s.early) >= maxEarly {
					slow = append(slow, s)
					continue
				}
				s.early = append(s.early, it)
			}
			continue
		}
		attached = append(attached, s)
	}
	h.mu.Unlock()
	for _, s := range slow {
		h.drop(s, ReasonSlow)
	}
	for _, s := range attached {
		h.deliver(s, it)
	}
}

// maxEarly bounds the live events a subscription may gather while its
// replay runs; one that gathers more is dropped as slow (it resumes from
// where its replay got to).
const maxEarly = 10000

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
	if exp := s.stream.Expires; !exp.IsZero() && time.Now().After(exp) {
		h.drop(s, ReasonExpired)
		return false
	}
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
	if len(s.pending) > 0 && len(s.pending)+len(f) > h.cfg.Buffer {
		// (A frame larger than the buffer still goes when nothing waits.)
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
		h.enqueue(s)
	}
}

// enqueue puts s on the writers' queue; it never blocks.
func (h *Hub) enqueue(s *Sub) {
	h.qmu.Lock()
	h.queue = append(h.queue, s)
	h.qmu.Unlock()
	select {
	case h.qwake <- struct{}{}:
	default:
	}
}

// dequeue takes the next subscriber to write, waiting for one until ctx
// ends.
func (h *Hub) dequeue(ctx context.Context) (*Sub, bool) {
	for {
		h.qmu.Lock()
		if len(h.queue) > 0 {
			s := h.queue[0]
			h.queue[0] = nil
			h.queue = h.queue[1:]
			more := len(h.queue) > 0
			h.qmu.Unlock()
			if more {
				select { // another writer may take the next one
				case h.qwake <- struct{}{}:
				default:
				}
			}
			return s, true
		}
		h.qmu.Unlock()
		select {
		case <-ctx.Done():
			return nil, false
		case <-h.qwake:
		}
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

// writer sends subscribers' pending frames. A panic is logged and the
// writer goes on.
func (h *Hub) writer(ctx context.Context) {
	defer h.writers.Done()
	for {
		s, ok := h.dequeue(ctx)
		if !ok {
			return
		}
		h.write(s)
	}
}

func (h *Hub) write(s *Sub) {
	defer func() {
		if p := recover(); p != nil {
			h.cfg.Logger.Error("realtime: writer panicked", "panic", p)
			h.drop(s, "")
		}
	}()
	h.mu.Lock()
	conn := s.conn
	_, live := h.subs[s]
	h.mu.Unlock()
	s.mu.Lock()
	buf := s.pending
	s.pending = nil
	s.mu.Unlock()
	if !live || conn == nil {
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(writeSlice))
	n, err := conn.Write(buf)
	if err == nil {
		s.mu.Lock()
		if len(s.pending) == 0 {
			s.queued = false
			if cap(buf) <= 64<<10 {
				s.pending = buf[:0] // reuse a small buffer; let a big one go
			}
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		h.enqueue(s)
		return
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		h.drop(s, "") // the client went away
		return
	}
	// The client is slow to read: keep the rest, in front, and come back
	// to it.
	s.mu.Lock()
	over := len(buf)-n+len(s.pending) > h.cfg.Buffer
	s.pending = append(buf[n:len(buf):len(buf)], s.pending...)
	s.mu.Unlock()
	if over {
		h.drop(s, ReasonSlow)
		return
	}
	time.AfterFunc(writeRetry, func() { h.enqueue(s) })
}

// decode turns a stored row into the event, as the audit API shows it,
// with numbers kept exact (permission filters compare integers beyond
// 2^53 exactly, as SQL does). dispatchedAt is left null: streams do not
// wait for dispatch.
func decode(m *models.Event) (*events.Event, error) {
	e, err := events.FromModel(m)
	if err != nil {
		return nil, fmt.Errorf("realtime: decode event %d: %w", m.ID, err)
	}
	dec := json.NewDecoder(strings.NewReader(m.Data))
	dec.UseNumber()
	e.Data = events.Data{}
	if err := dec.Decode(&e.Data); err != nil {
		return nil, fmt.Errorf("realtime: decode event %d: %w", m.ID, err)
	}
	e.DispatchedAt = nil
	return &e, nil
}
