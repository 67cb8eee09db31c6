package realtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// channel is the PostgreSQL notification channel of committed events.
const channel = "herald_events"

// Waker wakes the hubs of every instance on one PostgreSQL when any of them
// commits events: Poke (after a local commit) sends a NOTIFY, batched, in
// a statement of its own, never from a write transaction (a NOTIFY there
// takes a database-wide lock at commit that serialises every committing
// transaction); a dedicated connection LISTENs and calls onNotify for other
// instances' notifications. The log stays the source of truth: a lost
// notification only delays until the hub's next poll.
type Waker struct {
	url      string
	onNotify func()
	log      *slog.Logger
	self     string
	poke     chan struct{}

	mu      sync.Mutex
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
}

// NewWaker returns a waker for the database at url; it holds two
// connections of its own, one to listen and one to notify.
func NewWaker(url string, onNotify func(), log *slog.Logger) *Waker {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	if log == nil {
		log = slog.Default()
	}
	return &Waker{url: url, onNotify: onNotify, log: log, self: hex.EncodeToString(b), poke: make(chan struct{}, 1)}
}

// Poke schedules a notification: events were committed here. It never
// blocks.
func (w *Waker) Poke() {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// Start runs the listener and the notifier until Stop; safe to call twice.
func (w *Waker) Start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return
	}
	w.started = true
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(2)
	go w.listen(ctx)
	go w.notify(ctx)
}

// Stop stops both and waits for them; safe to call twice.
func (w *Waker) Stop() {
	w.mu.Lock()
	if !w.started {
		w.mu.Unlock()
		return
	}
	w.started = false
	w.cancel()
	w.mu.Unlock()
	w.wg.Wait()
}

// notify sends at most one NOTIFY per 2 ms: the commits of that time share
// it. It keeps a connection of its own whose session has
// synchronous_commit off (a notification that a crash loses only delays
// the others until their poll: it need not wait for its commit's fsync,
// which would compete with the writes' own), so each notification is one
// statement and one round trip, not a transaction of four through the pool.
func (w *Waker) notify(ctx context.Context) {
	defer w.wg.Done()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.poke:
		}
		nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		// A connection that died while idle (a restarted server, an idle
		// timeout) fails the first statement: reconnect and send again, so
		// this notification is not lost.
		var err error
		for attempt := 0; attempt < 2; attempt++ {
			if conn == nil {
				if conn, err = w.connect(nctx, NotifyApplication, "SET synchronous_commit = off"); err != nil {
					break
				}
			}
			if _, err = conn.Exec(nctx, "SELECT pg_notify($1, $2)", channel, w.self); err == nil {
				break
			}
			_ = conn.Close(context.WithoutCancel(ctx))
			conn = nil
		}
		if err != nil && ctx.Err() == nil {
			w.log.Warn("realtime: notify", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// The application_name of the waker's connections in pg_stat_activity,
// unless the database URL names one.
const (
	NotifyApplication = "herald realtime notify"
	ListenApplication = "herald realtime listen"
)

// connect opens a connection of the waker's own, named app unless the URL
// names it, and runs setup on it. (Session settings are set by a
// statement, not as startup parameters, which poolers such as PgBouncer
// refuse; application_name is one they pass on.)
func (w *Waker) connect(ctx context.Context, app, setup string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(w.url)
	if err != nil {
		return nil, err
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = app
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if setup != "" {
		if _, err := conn.Exec(ctx, setup); err != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	return conn, nil
}

// listen keeps a LISTEN connection, reconnecting after failures.
func (w *Waker) listen(ctx context.Context) {
	defer w.wg.Done()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := w.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("realtime: listen", "err", err, "retryIn", backoff)
		w.onNotify() // something may have been missed while down
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (w *Waker) listenOnce(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := w.connect(cctx, ListenApplication, "")
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload != w.self {
			w.onNotify()
		}
	}
}
