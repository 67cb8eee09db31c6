package events

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"gorm.io/gorm"
)

// RetentionConfig configures the retention job.
type RetentionConfig struct {
	// Retention is how long events are kept (HERALD_EVENT_RETENTION).
	// Required.
	Retention time.Duration
	// Interval between sweeps. Default 10m.
	Interval time.Duration
	// BatchSize is how many events one DELETE removes, so that a sweep
	// never holds the write lock for long. Default 1000.
	BatchSize int
	// Pause between batches, letting writers in. Default 50ms.
	Pause time.Duration
	// Holds keep events that other packages still need (the webhook
	// queue's unfinished deliveries). Optional.
	Holds []Holder
	// Logger defaults to slog.Default(); Now defaults to time.Now.
	Logger *slog.Logger
	Now    func() time.Time
}

// RemovedThroughSetting is the herald_settings key under which retention
// records the largest position it removed.
const RemovedThroughSetting = "events_removed_through"

// RemovedThrough returns the largest position retention has removed (0
// when none): a reader that has seen only up to it missed events.
func RemovedThrough(ctx context.Context, db *gorm.DB) (int64, error) {
	var vals []string
	if err := db.WithContext(ctx).Raw("SELECT value FROM herald_settings WHERE key = ?", RemovedThroughSetting).Scan(&vals).Error; err != nil {
		return 0, fmt.Errorf("events: read the retention mark: %w", err)
	}
	if len(vals) == 0 {
		return 0, nil
	}
	return strconv.ParseInt(vals[0], 10, 64)
}

// Holder keeps events from the retention job. OldestHeld returns the
// creation time of the oldest event it still needs, ok false when none;
// retention then removes only events created before it. It must be safe
// for concurrent use.
type Holder interface {
	OldestHeld(ctx context.Context) (t time.Time, ok bool, err error)
}

// Retention removes events older than the retention once every consumer
// has taken them (the dispatch watermark passed them) and no holder needs
// them any more.
type Retention struct {
	cfg RetentionConfig
	db  *gorm.DB

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewRetention returns the job on the write handle db.
func NewRetention(cfg RetentionConfig, db *gorm.DB) *Retention {
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Minute
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.Pause <= 0 {
		cfg.Pause = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Retention{cfg: cfg, db: db}
}

// Start runs sweeps until Stop; safe to call twice.
func (r *Retention) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.cfg.Interval)
		defer t.Stop()
		for {
			if _, err := r.safeSweep(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Logger.Error("events: retention sweep", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop stops the job and waits for it; safe to call twice.
func (r *Retention) Stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel = nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// safeSweep is Sweep with a panic turned into an error, so the job lives on.
func (r *Retention) safeSweep(ctx context.Context) (n int64, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("events: retention panicked: %v", p)
		}
	}()
	return r.Sweep(ctx)
}

// Sweep deletes expired, dispatched, unheld events in batches and returns
// how many.
func (r *Retention) Sweep(ctx context.Context) (int64, error) {
	cutoff := r.cfg.Now().Add(-r.cfg.Retention).UTC()
	for _, h := range r.cfg.Holds {
		t, ok, err := h.OldestHeld(ctx)
		if err != nil {
			return 0, fmt.Errorf("events: retention hold: %w", err)
		}
		if ok && t.Before(cutoff) {
			cutoff = t.UTC()
		}
	}
	var total int64
	for {
		var gone []int64
		err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var err error
			if gone, err = retentionCandidates(tx, cutoff, r.cfg.BatchSize); err != nil || len(gone) == 0 {
				return err
			}
			// The mark first, in the same transaction: a reader that sees
			// the events gone sees the mark too (realtime answers a resume
			// from at or below it with a reset). It only grows.
			if err := tx.Exec(`INSERT INTO herald_settings (key, value) VALUES (?, ?)
  ON CONFLICT (key) DO UPDATE SET value = CASE
    WHEN CAST(herald_settings.value AS bigint) < CAST(excluded.value AS bigint) THEN excluded.value
    ELSE herald_settings.value END`, RemovedThroughSetting, strconv.FormatInt(slices.Max(gone), 10)).Error; err != nil {
				return err
			}
			if err := tx.Exec("DELETE FROM herald_event_index WHERE id IN ?", gone).Error; err != nil {
				return err
			}
			return tx.Exec("DELETE FROM herald_events WHERE id IN ?", gone).Error
		})
		if err != nil {
			return total, fmt.Errorf("events: retention: %w", err)
		}
		total += int64(len(gone))
		if len(gone) < r.cfg.BatchSize {
			// Watermark steps below the oldest kept event say nothing any
			// more; the newest step always stays.
			err := r.db.WithContext(ctx).Exec(`DELETE FROM herald_dispatches
  WHERE id < (SELECT COALESCE(MIN(id), 0) FROM herald_events)
    AND id < (SELECT MAX(id) FROM herald_dispatches)`).Error
			if err != nil {
				return total, fmt.Errorf("events: retention: %w", err)
			}
			return total, nil
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(r.cfg.Pause):
		}
	}
}
