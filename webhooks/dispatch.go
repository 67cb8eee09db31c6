package webhooks

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/models"
	"github.com/herald-dev/herald/resources"
)

// Delivery statuses.
const (
	StatusPending   = "pending"
	StatusRetrying  = "retrying"
	StatusSucceeded = "succeeded"
	StatusDead      = "dead"
)

// idsPrefix marks the event_id key of an ids-format delivery (the first
// event of its transaction): such deliveries are their own message, so
// their webhook-id is the delivery id.
const idsPrefix = "ids:"

// Dispatcher is the webhook queue's durable consumer of the event log
// (events.Consumer): for each batch after its cursor it matches the events
// to the enabled webhooks, renders each delivery's payload once, and
// returns the insert of the delivery rows, which the relay commits with
// the cursor's advance. The unique key on (event, webhook) makes a
// repeated dispatch harmless. It is safe for concurrent use.
type Dispatcher struct {
	read  *gorm.DB
	kind  database.Kind
	store *resources.Store
	now   func() time.Time
	queue *Queue

	mu      sync.Mutex
	handOff []claimed // inserted claimed by this instance, for Committed
	stored  bool      // the last step inserted deliveries: Committed wakes the queue
}

var (
	_ events.Consumer  = (*Dispatcher)(nil)
	_ events.Committer = (*Dispatcher)(nil)
	_ events.Idler     = (*Dispatcher)(nil)
)

// NewDispatcher returns the consumer; it reads webhooks and related rows
// from store's read pool and wakes queue when deliveries commit.
func NewDispatcher(store *resources.Store, queue *Queue, now func() time.Time) *Dispatcher {
	if now == nil {
		now = time.Now
	}
	return &Dispatcher{read: store.DB().Read, kind: store.DB().Kind, store: store, now: now, queue: queue}
}

// ConsumerName is the dispatcher's cursor name.
const ConsumerName = "webhooks"

// Name implements events.Consumer.
func (d *Dispatcher) Name() string { return ConsumerName }

// Idle implements events.Idler: with no enabled webhook, no event
// committed so far has anything to deliver (Consume would load the same
// empty list), so the relay may pass the batch without reading it.
func (d *Dispatcher) Idle(ctx context.Context) (bool, error) {
	var n int64
	if err := d.read.WithContext(ctx).Raw("SELECT COUNT(*) FROM (SELECT 1 FROM herald_webhooks WHERE enabled = ? LIMIT 1) w", true).
		Scan(&n).Error; err != nil {
		return false, fmt.Errorf("webhooks: any enabled: %w", err)
	}
	if n == 0 {
		d.mu.Lock()
		d.handOff, d.stored = nil, false
		d.mu.Unlock()
	}
	return n == 0, nil
}

// Consume implements events.Consumer.
func (d *Dispatcher) Consume(ctx context.Context, batch []events.Event) (func(tx *gorm.DB) error, error) {
	// A previous step whose transaction failed may have left its list.
	d.mu.Lock()
	d.handOff, d.stored = nil, false
	d.mu.Unlock()
	hooks, err := loadHooks(ctx, d.read, "enabled = ?", true)
	if err != nil || len(hooks) == 0 {
		return nil, err
	}
	targets, err := invocationTargets(ctx, d.read, batch)
	if err != nil {
		return nil, err
	}
	rel, err := relatedRows(ctx, d.store, hooks, batch)
	if err != nil {
		return nil, err
	}
	now := d.now().UTC() // SQLite compares times as text: always UTC
	rows, err := buildDeliveries(hooks, batch, targets, rel, now)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	// Deliveries this instance has room for are inserted claimed by it and
	// handed to its queue once they commit: no claim round trip between
	// the commit of a write and the first attempt of its deliveries.
	byID := make(map[string]*hook, len(hooks))
	for _, h := range hooks {
		byID[h.ID] = h
	}
	if d.queue != nil {
		tok := d.queue.token()
		extra := map[string]int{}
		for i := range rows {
			h := byID[rows[i].WebhookID]
			if lease, ok := d.queue.preclaim(h, extra[h.ID], now); ok {
				extra[h.ID]++
				rows[i].ClaimedBy, rows[i].ClaimExpiresAt = tok, &lease
			}
		}
	}
	return func(tx *gorm.DB) error {
		ins, err := insertDeliveries(tx, rows)
		if err != nil {
			return err
		}
		// The last run of apply is the one that commits.
		d.mu.Lock()
		d.handOff, d.stored = d.handOff[:0], len(ins) > 0
		for _, r := range ins {
			if r.ClaimedBy != "" {
				d.handOff = append(d.handOff, claimed{h: byID[r.WebhookID], d: r, lease: *r.ClaimExpiresAt})
			}
		}
		d.mu.Unlock()
		return nil
	}, nil
}

// Committed implements events.Committer: deliveries claimed at insertion
// go to the queue's senders, and the queue wakes for the others.
func (d *Dispatcher) Committed() {
	if d.queue == nil {
		return
	}
	d.mu.Lock()
	cs, stored := d.handOff, d.stored
	d.handOff, d.stored = nil, false
	d.mu.Unlock()
	if !stored {
		// Nothing to send: a step whose events matched no webhook (most
		// steps when few webhooks listen) must not cost a claim round.
		return
	}
	d.queue.handOff(cs)
	d.queue.Wake()
}

// loadHooks reads the webhooks matching a condition.
func loadHooks(ctx context.Context, db *gorm.DB, where string, args ...any) ([]*hook, error) {
	var ms []models.Webhook
	if err := db.WithContext(ctx).Where(where, args...).Order("id").Find(&ms).Error; err != nil {
		return nil, fmt.Errorf("webhooks: load webhooks: %w", err)
	}
	out := make([]*hook, 0, len(ms))
	for i := range ms {
		h, err := decodeHook(&ms[i])
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// invocationTargets maps the manual events of batch to the webhook each
// was invoked for: a manual event goes to that webhook only.
func invocationTargets(ctx context.Context, db *gorm.DB, batch []events.Event) (map[string]string, error) {
	var ids []string
	for i := range batch {
		if events.Op(batch[i].EventType) == "manual" {
			ids = append(ids, batch[i].EventID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var rows []struct{ EventID, WebhookID string }
	if err := db.WithContext(ctx).Raw("SELECT event_id, webhook_id FROM herald_invocations WHERE event_id IN ?", ids).
		Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("webhooks: invocations: %w", err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.EventID] = r.WebhookID
	}
	return out, nil
}

// matches tells whether h takes e as one of its own events (a related
// webhook also takes the events relatedRows finds for it).
func (h *hook) matches(e *events.Event, targets map[string]string) bool {
	o := events.Op(e.EventType)
	if o == "manual" {
		return targets[e.EventID] == h.ID
	}
	if h.Resource != "*" && h.Resource != e.ResourceName {
		return false
	}
	if h.classification != nil {
		return o == events.OpClassified && h.classification.matches(e.Data.Classification)
	}
	switch o {
	case "created", "updated", "deleted":
	default:
		return false
	}
	if !slices.Contains(h.events, o) {
		return false
	}
	if o == "updated" && len(h.fields) > 0 {
		for _, f := range h.fields {
			if slices.Contains(e.Data.Changes.Updated, f) {
				return true
			}
		}
		return false
	}
	return true
}

// buildDeliveries renders the deliveries of batch for hooks. For the ids
// format, the rows of one transaction go in one delivery: the events of
// one request are consecutive in the log and share its request id. (A
// transaction larger than the relay's batch, 500 events, is split in two
// deliveries.)
//
// rel holds the source rows of related webhooks (relatedRows): an event
// that touches some goes to the webhook, naming them.
func buildDeliveries(hooks []*hook, batch []events.Event, targets map[string]string, rel map[string]map[int][]string,
	now time.Time) ([]models.Delivery, error) {
	now = now.UTC()
	var out []models.Delivery
	for _, h := range hooks {
		if h.Format == FormatIDs {
			out = append(out, idsDeliveries(h, batch, targets, rel[h.ID], now)...)
			continue
		}
		for i := range batch {
			e := &batch[i]
			var related *relatedPayload
			if ids := rel[h.ID][i]; len(ids) > 0 {
				related = &relatedPayload{Resource: h.Resource, IDs: ids}
			}
			if related == nil && !h.matches(e, targets) {
				continue
			}
			body, err := render(h, e, related)
			if err != nil {
				return nil, fmt.Errorf("webhooks: render event %s: %w", e.EventID, err)
			}
			out = append(out, newDelivery(h, e.EventID, e.EventType, e.ResourceName, e.ResourceID, e.CreatedAt,
				body, traceparent(e.TraceContext), now))
		}
	}
	return out, nil
}

func idsDeliveries(h *hook, batch []events.Event, targets map[string]string, rel map[int][]string, now time.Time) []models.Delivery {
	var out []models.Delivery
	var first *events.Event
	var rows []string
	flush := func() {
		if first != nil {
			body, _ := marshal(idsPayload{HookID: h.ID, Rows: rows})
			out = append(out, newDelivery(h, idsPrefix+first.EventID, first.EventType, first.ResourceName, "",
				first.CreatedAt, body, traceparent(first.TraceContext), now))
		}
		first, rows = nil, nil
	}
	run := ""
	for i := range batch {
		e := &batch[i]
		req := e.TraceContext.RequestID
		if req == "" || req != run {
			flush()
		}
		run = req
		var ids []string
		if h.matches(e, targets) {
			ids = append(ids, e.ResourceID)
		}
		ids = append(ids, rel[i]...)
		if len(ids) == 0 {
			continue
		}
		if first == nil {
			first = e
		}
		for _, id := range ids {
			if !slices.Contains(rows, id) {
				rows = append(rows, id)
			}
		}
	}
	flush()
	return out
}

func newDelivery(h *hook, eventID, eventType, resource, resourceID string, createdAt time.Time, body []byte, tp string, now time.Time) models.Delivery {
	return models.Delivery{WebhookID: h.ID, EventID: eventID, EventType: eventType, ResourceName: resource,
		ResourceID: resourceID, EventCreatedAt: createdAt.UTC(), Payload: string(body), Traceparent: tp,
		Status: StatusPending, NextAttemptAt: now, AttemptLog: "[]", CreatedAt: now, UpdatedAt: now}
}

// insertDeliveries inserts rows, skipping those whose (event, webhook)
// exists, and returns the rows it inserted, with their ids.
func insertDeliveries(tx *gorm.DB, rows []models.Delivery) ([]models.Delivery, error) {
	// 16 parameters a row. The SQLite driver matches each parameter to
	// its argument by a linear search (quadratic in the parameters of a
	// statement), so there statements stay small.
	chunk := 400
	if tx.Dialector.Name() == "sqlite" {
		chunk = 32
	}
	var out []models.Delivery
	for len(rows) > 0 {
		part := rows[:min(len(rows), chunk)]
		rows = rows[len(part):]
		var sql strings.Builder
		sql.WriteString(`INSERT INTO herald_deliveries (webhook_id, event_id, event_type, resource_name, resource_id,
  event_created_at, payload, traceparent, status, attempts, next_attempt_at, claimed_by, claim_expires_at, attempt_log,
  created_at, updated_at) VALUES `)
		args := make([]any, 0, len(part)*16)
		for i := range part {
			d := &part[i]
			if i > 0 {
				sql.WriteString(", ")
			}
			sql.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
			args = append(args, d.WebhookID, d.EventID, d.EventType, d.ResourceName, d.ResourceID,
				d.EventCreatedAt, d.Payload, d.Traceparent, d.Status, d.Attempts, d.NextAttemptAt, d.ClaimedBy,
				d.ClaimExpiresAt, d.AttemptLog, d.CreatedAt, d.UpdatedAt)
		}
		sql.WriteString(` ON CONFLICT (event_id, webhook_id) DO NOTHING
RETURNING id, webhook_id, event_id, event_type, resource_name, resource_id, event_created_at, payload, traceparent,
  status, attempts, next_attempt_at, claimed_by, claim_expires_at, attempt_log, created_at, updated_at`)
		var ins []models.Delivery
		// Find, not Scan: Scan formats the statement with its values for a
		// logger that is never called.
		if err := tx.Raw(sql.String(), args...).Find(&ins).Error; err != nil {
			return out, fmt.Errorf("webhooks: insert deliveries: %w", err)
		}
		out = append(out, ins...)
	}
	return out, nil
}
