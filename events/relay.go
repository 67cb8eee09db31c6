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

// Consumer receives committed events. The relay calls Consume from one
// goroutine with batches in log order (increasing ids), each event at
// least once: a batch is marked dispatched only after every consumer
// returned nil, so after a crash or an error the same events come again.
// Consume must return promptly (queue work, don't do it) and honour ctx.
type Consumer interface {
	Consume(ctx context.Context, batch []Event) error
}

// ConsumerFunc adapts a function to Consumer.
type ConsumerFunc func(ctx context.Context, batch []Event) error

// Consume implements Consumer.
func (f ConsumerFunc) Consume(ctx context.Context, batch []Event) error { return f(ctx, batch) }

// RelayConfig configures the relay.
type RelayConfig struct {
	// Dialect of the database (SQLite or Postgres).
	Dialect Dialect
	// BatchSize is how many events one dispatch reads. Default 500.
	BatchSize int
	// PollInterval is how often the relay looks for events it was not woken
	// for: committed by another instance, or before a crash. Default 1s.
	PollInterval time.Duration
	// MinInterval is the least time between the starts of two dispatch
	// runs. A relay idle for longer runs as soon as it is woken; a busy one
	// gathers the commits of this interval into one run instead of running
	// after every commit. Default 5ms.
	MinInterval time.Duration
	// QueryTimeout bounds each database call. Default 10s.
	QueryTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Metrics receives the relay's measurements. Optional.
	Metrics *Metrics
}

// relayLockKey is the PostgreSQL advisory lock held by the one instance
// that dispatches at a time ("hrelay").
const relayLockKey = 0x68726c6179

// Relay moves committed events from the log to the consumers and marks
// them dispatched.
type Relay struct {
	cfg       RelayConfig
	db        *gorm.DB
	consumers []Consumer
	wake      chan struct{}

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	started bool
}

// NewRelay returns a relay on the write handle db.
func NewRelay(cfg RelayConfig, db *gorm.DB) *Relay {
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Relay{cfg: cfg, db: db, wake: make(chan struct{}, 1)}
}

// Register adds a consumer. Call it before Start.
func (r *Relay) Register(c Consumer) { r.consumers = append(r.consumers, c) }

// Notify wakes the relay: events were just committed. It never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Start runs the relay until Stop; safe to call twice.
func (r *Relay) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return
	}
	r.started = true
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go r.loop(ctx, r.done)
}

// Stop stops the relay and waits for the dispatch in flight; safe to call
// twice. Undispatched events stay in the log for the next start.
func (r *Relay) Stop() {
	r.mu.Lock()
	if !r.started {
		r.mu.Unlock()
		return
	}
	r.started = false
	r.cancel()
	done := r.done
	r.mu.Unlock()
	<-done
}

func (r *Relay) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	ticker := time.NewTicker(r.cfg.PollInterval)
	defer ticker.Stop()
	backoff := time.Duration(0)
	var lastRun time.Time
	for {
		tick := false
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-ticker.C:
			tick = true
		}
		wait := max(backoff, r.cfg.MinInterval-time.Since(lastRun))
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		lastRun = time.Now()
		err := r.drain(ctx, tick)
		if err != nil && ctx.Err() == nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			r.cfg.Logger.Error("events: relay", "err", err, "retryIn", backoff)
			r.Notify()
			continue
		}
		backoff = 0
	}
}

// drain dispatches until the log has nothing undispatched, then, when
// asked, measures the outbox lag. A panic becomes an error.
func (r *Relay) drain(ctx context.Context, measure bool) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("events: relay panicked: %v", p)
		}
	}()
	for ctx.Err() == nil {
		n, err := r.DispatchOnce(ctx)
		if err != nil {
			return err
		}
		if n < r.cfg.BatchSize {
			break
		}
	}
	if measure {
		return r.observeLag(ctx)
	}
	return nil
}

// watermark is the id up to which events are dispatched.
func watermark(tx *gorm.DB) (int64, error) {
	var mark int64
	if err := tx.Raw("SELECT COALESCE(MAX(id), 0) FROM herald_dispatches").Scan(&mark).Error; err != nil {
		return 0, fmt.Errorf("events: read watermark: %w", err)
	}
	return mark, nil
}

// errNotLeader means another instance holds the relay lock.
var errNotLeader = errors.New("events: another instance is relaying")

// DispatchOnce hands one batch of undispatched events to the consumers and
// marks it dispatched. It returns how many events it dispatched.
func (r *Relay) DispatchOnce(ctx context.Context) (int, error) {
	qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
	defer cancel()
	var n int
	err := r.db.WithContext(qctx).Transaction(func(tx *gorm.DB) error {
		if r.cfg.Dialect == Postgres {
			// Losing a dispatched mark in a crash only means the events go
			// out again, which at-least-once allows; so the mark need not
			// wait for its own fsync.
			if err := tx.Exec("SET LOCAL synchronous_commit = off").Error; err != nil {
				return err
			}
			var got bool
			if err := tx.Raw("SELECT pg_try_advisory_xact_lock(?)", relayLockKey).Scan(&got).Error; err != nil {
				return err
			}
			if !got {
				return errNotLeader
			}
		}
		mark, err := watermark(tx)
		if err != nil {
			return err
		}
		var rows []models.Event
		sel := tx.Where("id > ?", mark).Order("id").Limit(r.cfg.BatchSize)
		if len(r.consumers) == 0 {
			// Nobody reads the payloads: the metrics need only these.
			sel = sel.Select("id", "event_type", "created_at")
		}
		if err := sel.Find(&rows).Error; err != nil {
			return fmt.Errorf("events: read undispatched: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		batch := make([]Event, len(rows))
		ids := make([]int64, len(rows))
		for i := range rows {
			ids[i] = rows[i].ID
			if len(r.consumers) == 0 {
				batch[i] = Event{ID: rows[i].ID, EventType: rows[i].EventType, CreatedAt: rows[i].CreatedAt}
				continue
			}
			e, err := fromModel(&rows[i])
			if err != nil {
				return fmt.Errorf("events: decode event %d: %w", rows[i].ID, err)
			}
			batch[i] = e
		}
		now := r.cfg.Now().UTC().Truncate(time.Microsecond)
		for i := range batch {
			batch[i].DispatchedAt = &now
		}
		for _, c := range r.consumers {
			if err := c.Consume(ctx, batch); err != nil {
				return fmt.Errorf("events: consumer: %w", err)
			}
		}
		if err := tx.Create(&models.Dispatch{ID: ids[len(ids)-1], DispatchedAt: now}).Error; err != nil {
			return fmt.Errorf("events: mark dispatched: %w", err)
		}
		n = len(batch)
		r.cfg.Metrics.dispatched(batch, now)
		return nil
	})
	if errors.Is(err, errNotLeader) {
		return 0, nil
	}
	return n, err
}

// observeLag records the age of the oldest undispatched event.
func (r *Relay) observeLag(ctx context.Context) error {
	if r.cfg.Metrics == nil {
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
	defer cancel()
	mark, err := watermark(r.db.WithContext(qctx))
	if err != nil {
		return err
	}
	var oldest []models.Event
	if err := r.db.WithContext(qctx).Select("id", "created_at").Where("id > ?", mark).
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
