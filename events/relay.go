package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/herald-dev/herald/models"
)

// Consumer is a durable reader of the event log (webhook dispatch; later
// classification schedules, a broker stream). Each consumer has a cursor of
// its own in herald_consumers and reads the log at its own pace: one
// consumer's failure or slowness never stalls or re-sends another's work.
//
// The relay calls Consume from one goroutine per consumer, with the events
// after the consumer's cursor in log order, outside any transaction:
// Consume does the slow work there (matching, encoding) and returns apply,
// which the relay runs in ONE write transaction of the write path together
// with the cursor's advance past the batch. What the consumer stores and
// its cursor therefore commit together, or not at all; a batch whose
// Consume or apply fails comes again after a backoff. apply may run more
// than once (the write path re-runs a batch of transactions without a
// failed one) and must be idempotent, e.g. inserts keyed on the event. A
// nil apply stores nothing but the cursor.
type Consumer interface {
	// Name keys the cursor; it must not change across restarts.
	Name() string
	Consume(ctx context.Context, batch []Event) (apply func(tx *gorm.DB) error, err error)
}

// Committer is implemented by a Consumer that wants to know when a batch it
// stored has committed (to wake the workers that act on it). Committed is
// called from the consumer's relay goroutine and must not block.
type Committer interface{ Committed() }

// Idler is implemented by a Consumer that may have nothing to do with any
// event for a while (the webhook dispatcher while no webhook is enabled).
// The relay asks before each step and, when the answer is idle, again
// after it has read the batch's positions: when that second answer is
// idle too, it advances the cursor over the batch without reading the
// events' bodies or calling Consume. Idle must answer for what the
// consumer would do with events committed before it is called (the
// batch's), which is what Consume would decide if called instead. It is
// called from the consumer's relay goroutine.
type Idler interface {
	Idle(ctx context.Context) (bool, error)
}

// Writer runs fn in a write transaction through the write path requests
// use (resources.Store.Write). It must be safe for concurrent use.
type Writer interface {
	Write(ctx context.Context, fn func(tx *gorm.DB) error) error
}

// NewConsumerFunc returns a consumer named name that calls fn with each
// batch and stores nothing of its own: the cursor advances once fn returns
// nil. For consumers that keep their state outside the database (tests,
// in-memory caches).
func NewConsumerFunc(name string, fn func(ctx context.Context, batch []Event) error) Consumer {
	return &funcConsumer{name, fn}
}

type funcConsumer struct {
	name string
	fn   func(ctx context.Context, batch []Event) error
}

func (c *funcConsumer) Name() string { return c.name }

func (c *funcConsumer) Consume(ctx context.Context, batch []Event) (func(*gorm.DB) error, error) {
	return nil, c.fn(ctx, batch)
}

// RelayConfig configures the relay.
type RelayConfig struct {
	// BatchSize is how many events one consumer step reads. Default 500.
	BatchSize int
	// PollInterval is how often each consumer looks for events it was not
	// woken for: committed by another instance, or before a crash.
	// Default 1s.
	PollInterval time.Duration
	// MinInterval is the least time between the starts of two steps of one
	// consumer. An idle consumer runs as soon as it is woken; a busy one
	// gathers the commits of this interval into one step. Default 5ms.
	MinInterval time.Duration
	// IdleInterval replaces MinInterval after a step that passed over an
	// Idler with nothing to do: its cursor (and the events' dispatchedAt)
	// may lag that much, and the relay commits far less while, say, no
	// webhook is enabled. Default 200ms.
	IdleInterval time.Duration
	// QueryTimeout bounds each database call. Default 10s.
	QueryTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Metrics receives the relay's measurements. Optional.
	Metrics *Metrics
}

// Relay hands committed events to its consumers, each from its own cursor,
// and keeps the dispatch watermark: the position up to which every consumer
// has taken the log, which is where events' dispatchedAt comes from.
//
// Several instances may run relays on one PostgreSQL: a consumer's step
// advances its cursor with a compare-and-set, so when two instances take
// the same batch one commits and the other rolls back and re-reads the
// cursor. Nothing a consumer stores is committed twice.
type Relay struct {
	cfg       RelayConfig
	read      *gorm.DB
	write     Writer
	consumers []Consumer
	names     []string
	// marked are the consumers whose cursors make the dispatch watermark
	// (dispatchedAt): every one but the indexer, which is bookkeeping of
	// the log, not a dispatch.
	marked []string
	wakes  []chan struct{}
	passed []bool // consumer i's last step passed it over (its loop's own)

	mu      sync.Mutex
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
}

// NewRelay returns a relay that reads the log on read and stores through
// write, for the given consumers (fixed for the relay's life).
func NewRelay(cfg RelayConfig, read *gorm.DB, write Writer, consumers ...Consumer) *Relay {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 10 * time.Second
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 5 * time.Millisecond
	}
	if cfg.IdleInterval <= 0 {
		cfg.IdleInterval = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Relay{cfg: cfg, read: read, write: write, consumers: consumers}
	for _, c := range consumers {
		r.names = append(r.names, c.Name())
		r.wakes = append(r.wakes, make(chan struct{}, 1))
		if _, ok := c.(keyConsumer); !ok {
			r.marked = append(r.marked, c.Name())
		}
	}
	r.passed = make([]bool, len(consumers))
	return r
}

// Notify wakes every consumer: events were just committed. It never blocks.
func (r *Relay) Notify() {
	for _, w := range r.wakes {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Start creates the cursors that do not exist yet and runs one loop per
// consumer until Stop; safe to call twice. A new consumer starts at the
// dispatch watermark: it takes what is committed from now on, not the
// history.
func (r *Relay) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return nil
	}
	for _, name := range r.names {
		err := r.write.Write(ctx, func(tx *gorm.DB) error {
			return tx.Exec(`INSERT INTO herald_consumers (name, position, updated_at)
  SELECT ?, COALESCE(MAX(id), 0), ? FROM herald_dispatches WHERE true ON CONFLICT (name) DO NOTHING`, name, r.cfg.Now().UTC()).Error
		})
		if err != nil {
			return fmt.Errorf("events: create cursor %s: %w", name, err)
		}
	}
	r.started = true
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	for i := range r.consumers {
		r.wg.Add(1)
		go r.loop(lctx, i)
	}
	return nil
}

// Stop stops the loops and waits for the steps in flight; safe to call
// twice. Events not yet taken stay in the log for the next start.
func (r *Relay) Stop() {
	r.mu.Lock()
	if !r.started {
		r.mu.Unlock()
		return
	}
	r.started = false
	r.cancel()
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *Relay) loop(ctx context.Context, i int) {
	defer r.wg.Done()
	ticker := time.NewTicker(r.cfg.PollInterval)
	defer ticker.Stop()
	backoff := time.Duration(0)
	var lastRun time.Time
	for {
		tick := false
		select {
		case <-ctx.Done():
			return
		case <-r.wakes[i]:
		case <-ticker.C:
			tick = true
		}
		interval := r.cfg.MinInterval
		if p, ok := r.consumers[i].(paced); ok {
			interval = p.interval()
		}
		if r.passed[i] {
			interval = r.cfg.IdleInterval
		}
		wait := max(backoff, interval-time.Since(lastRun))
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		lastRun = time.Now()
		err := r.drain(ctx, i, tick)
		if err != nil && ctx.Err() == nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			r.cfg.Logger.Error("events: relay", "consumer", r.names[i], "err", err, "retryIn", backoff)
			select {
			case r.wakes[i] <- struct{}{}:
			default:
			}
			continue
		}
		backoff = 0
	}
}

// drain runs steps of consumer i until it has caught up, then, on a poll
// tick, catches up the watermark and measures the lags. A panic becomes an
// error.
func (r *Relay) drain(ctx context.Context, i int, tick bool) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("events: relay panicked: %v", p)
		}
	}()
	for ctx.Err() == nil {
		n, err := r.step(ctx, i)
		if err != nil {
			return err
		}
		if n < r.cfg.BatchSize {
			break
		}
	}
	if tick {
		return r.maintain(ctx, i)
	}
	return nil
}

// errCursorMoved means another instance advanced the cursor first.
var errCursorMoved = errors.New("events: another instance advanced the cursor")

// step hands consumer i the batch after its cursor and stores the result
// with the advanced cursor. It returns the batch's size.
func (r *Relay) step(ctx context.Context, i int) (int, error) {
	c, name := r.consumers[i], r.names[i]
	qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
	defer cancel()
	cursor, err := r.cursor(qctx, name)
	if err != nil {
		return 0, err
	}
	var (
		now   time.Time // when the batch is taken: after it was read
		batch []Event
		apply func(tx *gorm.DB) error
		last  int64
		n     int
	)
	idle := false
	r.passed[i] = false
	if kc, ok := c.(keyConsumer); ok {
		// The positions only: the consumer copies what it needs itself.
		ids, err := readPositions(r.read.WithContext(qctx), cursor, r.cfg.BatchSize)
		if err != nil {
			return 0, fmt.Errorf("events: read after cursor %s: %w", name, err)
		}
		if len(ids) == 0 {
			return 0, nil
		}
		now = r.cfg.Now().UTC().Truncate(time.Microsecond)
		last, n = ids[len(ids)-1], len(ids)
		apply = kc.consumeRange(cursor, last)
	} else if idler, ok := c.(Idler); ok {
		if idle, err = idler.Idle(qctx); err != nil {
			return 0, fmt.Errorf("events: consumer %s: %w", name, err)
		}
	}
	if idle {
		// The positions only (no bodies to read and decode), then ask
		// again: only events committed before an "idle" answer may be
		// passed over, and those are the ones read before it.
		var heads []models.Event
		if err := r.read.WithContext(qctx).Select("id", "event_type", "created_at").Where("id > ?", cursor).
			Order("id").Limit(r.cfg.BatchSize).Find(&heads).Error; err != nil {
			return 0, fmt.Errorf("events: read after cursor %s: %w", name, err)
		}
		if len(heads) == 0 {
			return 0, nil
		}
		if idle, err = c.(Idler).Idle(qctx); err != nil {
			return 0, fmt.Errorf("events: consumer %s: %w", name, err)
		}
		last, n = heads[len(heads)-1].ID, len(heads)
		now = r.cfg.Now().UTC().Truncate(time.Microsecond)
		if idle {
			// Enough of each event for the metrics.
			batch = make([]Event, len(heads))
			for j, h := range heads {
				batch[j] = Event{ID: h.ID, EventType: h.EventType, CreatedAt: h.CreatedAt}
			}
		}
	}
	if !idle && apply == nil {
		var rows []models.Event
		q := r.read.WithContext(qctx).Where("id > ?", cursor).Order("id").Limit(r.cfg.BatchSize)
		if last > 0 {
			q = q.Where("id <= ?", last) // the batch Idle was asked about, no more
		}
		if err := q.Find(&rows).Error; err != nil {
			return 0, fmt.Errorf("events: read after cursor %s: %w", name, err)
		}
		if len(rows) == 0 {
			return 0, nil
		}
		now = r.cfg.Now().UTC().Truncate(time.Microsecond)
		batch = make([]Event, len(rows))
		for j := range rows {
			if batch[j], err = fromModel(&rows[j]); err != nil {
				return 0, fmt.Errorf("events: decode event %d: %w", rows[j].ID, err)
			}
			batch[j].DispatchedAt = &now
		}
		if apply, err = c.Consume(qctx, batch); err != nil {
			return 0, fmt.Errorf("events: consumer %s: %w", name, err)
		}
		last, n = rows[len(rows)-1].ID, len(rows)
	}
	err = r.write.Write(qctx, func(tx *gorm.DB) error {
		// The cursor first: its row lock makes a second instance taking
		// the same batch wait here, then find the cursor moved.
		res := tx.Exec("UPDATE herald_consumers SET position = ?, updated_at = ? WHERE name = ? AND position = ?",
			last, now, name, cursor)
		if res.Error != nil {
			return fmt.Errorf("events: advance cursor %s: %w", name, res.Error)
		}
		if res.RowsAffected != 1 {
			return errCursorMoved
		}
		if apply != nil {
			if err := apply(tx); err != nil {
				return fmt.Errorf("events: consumer %s: store: %w", name, err)
			}
		}
		return r.mark(tx, now)
	})
	if errors.Is(err, errCursorMoved) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if cm, ok := c.(Committer); ok {
		cm.Committed()
	}
	r.passed[i] = idle
	if i == 0 {
		// Counted once, as the first consumer takes the events.
		r.cfg.Metrics.dispatched(batch, now)
	}
	return n, nil
}

// cursor reads consumer name's position.
func (r *Relay) cursor(ctx context.Context, name string) (int64, error) {
	var pos []int64
	if err := r.read.WithContext(ctx).Raw("SELECT position FROM herald_consumers WHERE name = ?", name).Scan(&pos).Error; err != nil {
		return 0, fmt.Errorf("events: read cursor %s: %w", name, err)
	}
	if len(pos) == 0 {
		return 0, fmt.Errorf("events: cursor %s does not exist", name)
	}
	return pos[0], nil
}

// mark moves the dispatch watermark to the smallest cursor of this relay's
// consumers when that passed it. Two consumers' steps committing at once on
// PostgreSQL may each miss the other's advance; maintain catches that up.
func (r *Relay) mark(tx *gorm.DB, now time.Time) error {
	err := tx.Exec(`INSERT INTO herald_dispatches (id, dispatched_at)
  SELECT m, ? FROM (SELECT MIN(position) AS m FROM herald_consumers WHERE name IN ?) c
  WHERE m > (SELECT COALESCE(MAX(id), 0) FROM herald_dispatches) ON CONFLICT (id) DO NOTHING`, now, r.marked).Error
	if err != nil {
		return fmt.Errorf("events: mark dispatched: %w", err)
	}
	return nil
}

// maintain runs on poll ticks: it moves a watermark that concurrent steps
// left behind and measures the outbox and cursor lags.
func (r *Relay) maintain(ctx context.Context, i int) error {
	qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
	defer cancel()
	var st struct {
		Head, Mark, MinCursor, Cursor int64
	}
	err := r.read.WithContext(qctx).Raw(`SELECT
  (SELECT COALESCE(MAX(id), 0) FROM herald_events) AS head,
  (SELECT COALESCE(MAX(id), 0) FROM herald_dispatches) AS mark,
  (SELECT COALESCE(MIN(position), 0) FROM herald_consumers WHERE name IN ?) AS min_cursor,
  (SELECT COALESCE(MAX(position), 0) FROM herald_consumers WHERE name = ?) AS cursor`, r.marked, r.names[i]).Scan(&st).Error
	if err != nil {
		return fmt.Errorf("events: lag: %w", err)
	}
	if st.MinCursor > st.Mark && i == 0 {
		now := r.cfg.Now().UTC().Truncate(time.Microsecond)
		if err := r.write.Write(qctx, func(tx *gorm.DB) error { return r.mark(tx, now) }); err != nil {
			return err
		}
		st.Mark = st.MinCursor
	}
	if r.cfg.Metrics == nil {
		return nil
	}
	r.cfg.Metrics.ConsumerLag.WithLabelValues(r.names[i]).Set(float64(max(st.Head-st.Cursor, 0)))
	if i != 0 {
		return nil
	}
	var oldest []models.Event
	if err := r.read.WithContext(qctx).Select("id", "created_at").Where("id > ?", st.Mark).
		Order("id").Limit(1).Find(&oldest).Error; err != nil {
		return fmt.Errorf("events: outbox lag: %w", err)
	}
	lag := 0.0
	if len(oldest) == 1 {
		lag = r.cfg.Now().Sub(oldest[0].CreatedAt).Seconds()
	}
	r.cfg.Metrics.OutboxLag.Set(lag)
	return nil
}
