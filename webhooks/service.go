package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/models"
	"github.com/herald-dev/herald/resources"
)

// RotationGrace is how long the previous secret still signs after a
// rotation.
const RotationGrace = 24 * time.Hour

// Service is the admin API's webhook operations. Writes go through the
// store's write path. It is safe for concurrent use.
type Service struct {
	store *resources.Store
	read  *gorm.DB
	kind  database.Kind
	guard *Guard
	queue *Queue
	now   func() time.Time
}

// NewService returns the service. queue is woken when deliveries are
// queued; now defaults to time.Now.
func NewService(store *resources.Store, guard *Guard, queue *Queue, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	db := store.DB()
	return &Service{store: store, read: db.Read, kind: db.Kind, guard: guard, queue: queue, now: now}
}

func (s *Service) wake() {
	if s.queue != nil {
		s.queue.Wake()
	}
}

func (s *Service) stamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Create registers a webhook from a JSON body and returns it with its
// secret (shown this once).
func (s *Service) Create(ctx context.Context, body []byte) (*View, error) {
	spec, probs, err := decodeSpec(body, Spec{})
	if err != nil {
		return nil, err
	}
	probs = append(probs, spec.validate(s.store.Schema(), s.guard)...)
	if len(probs) > 0 {
		return nil, &resources.ValidationError{Problems: probs}
	}
	now := s.stamp()
	m := &models.Webhook{ID: uuid.Must(uuid.NewV7()).String(), Secret: newSecret(), Enabled: true, CreatedAt: now, UpdatedAt: now}
	spec.apply(m)
	err = s.store.Write(ctx, func(tx *gorm.DB) error { return tx.Create(m).Error })
	if err != nil {
		return nil, s.mapErr(err)
	}
	h, err := decodeHook(m)
	if err != nil {
		return nil, err
	}
	v := h.view()
	v.Secret = m.Secret
	return &v, nil
}

// mapErr turns a unique violation on the name into a 409.
func (s *Service) mapErr(err error) error {
	msg := err.Error()
	if strings.Contains(msg, "herald_webhooks_name_key") || strings.Contains(msg, "herald_webhooks.name") {
		return &resources.ConflictError{Message: "a webhook with this name exists",
			Problems: []resources.Problem{{Field: "name", Rule: "unique", Message: "a webhook with this name exists"}}}
	}
	return err
}

func (s *Service) load(ctx context.Context, db *gorm.DB, id string) (*hook, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return nil, fmt.Errorf("webhooks: webhook %q: %w", id, models.ErrNotFound)
	}
	hooks, err := loadHooks(ctx, db, "id = ?", u.String())
	if err != nil {
		return nil, err
	}
	if len(hooks) == 0 {
		return nil, fmt.Errorf("webhooks: webhook %s: %w", id, models.ErrNotFound)
	}
	return hooks[0], nil
}

// lock makes a read in a write transaction lock the rows it reads on
// PostgreSQL, so a concurrent change (the queue disabling the webhook, a
// delete) is not overwritten. SQLite has one writer.
func (s *Service) lock(tx *gorm.DB) *gorm.DB {
	if s.kind == database.Postgres {
		return tx.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	return tx
}

// List returns every webhook, oldest first.
func (s *Service) List(ctx context.Context) ([]View, error) {
	hooks, err := loadHooks(ctx, s.read, "1 = 1")
	if err != nil {
		return nil, err
	}
	out := make([]View, len(hooks))
	for i, h := range hooks {
		out[i] = h.view()
	}
	return out, nil
}

// Get returns one webhook, without its secret.
func (s *Service) Get(ctx context.Context, id string) (*View, error) {
	h, err := s.load(ctx, s.read, id)
	if err != nil {
		return nil, err
	}
	v := h.view()
	return &v, nil
}

// Update applies a partial JSON body. Re-enabling clears the disabled
// reason and the dead streak; deliveries recorded while paused go out.
func (s *Service) Update(ctx context.Context, id string, body []byte) (*View, error) {
	var out *hook
	err := s.store.Write(ctx, func(tx *gorm.DB) error {
		h, err := s.load(tx.Statement.Context, s.lock(tx), id)
		if err != nil {
			return err
		}
		spec, probs, err := decodeSpec(body, h.spec())
		if err != nil {
			return err
		}
		probs = append(probs, spec.validate(s.store.Schema(), s.guard)...)
		if len(probs) > 0 {
			return &resources.ValidationError{Problems: probs}
		}
		m := h.Webhook
		spec.apply(&m)
		m.UpdatedAt = s.stamp()
		if h.Paused && !m.Paused {
			// The backlog recorded while paused goes out in commit order
			// per row (see Queue.claimSQL).
			resumed := m.UpdatedAt
			m.ResumedAt = &resumed
		}
		if err := tx.Save(&m).Error; err != nil {
			return err
		}
		out, err = decodeHook(&m)
		return err
	})
	if err != nil {
		return nil, s.mapErr(err)
	}
	s.forget(out.ID)
	v := out.view()
	return &v, nil
}

// forget tells the local queue that a webhook changed, so the deliveries
// it holds for the webhook are sent with the new settings or not at all.
// Other instances see the change at their next claim round.
func (s *Service) forget(id string) {
	if s.queue != nil {
		s.queue.Forget(id)
	}
}

// Delete removes a webhook and its delivery log (the deliveries go with it,
// by their foreign key).
func (s *Service) Delete(ctx context.Context, id string) error {
	u, err := uuid.Parse(id)
	if err != nil {
		return fmt.Errorf("webhooks: webhook %q: %w", id, models.ErrNotFound)
	}
	err = s.store.Write(ctx, func(tx *gorm.DB) error {
		res := tx.Exec("DELETE FROM herald_webhooks WHERE id = ?", u.String())
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("webhooks: webhook %s: %w", id, models.ErrNotFound)
		}
		return nil
	})
	if err == nil {
		s.forget(u.String())
	}
	return err
}

// RotateSecret gives the webhook a new secret and returns it (shown this
// once); the previous one still signs, beside it, for RotationGrace.
func (s *Service) RotateSecret(ctx context.Context, id string) (*View, error) {
	var v View
	err := s.store.Write(ctx, func(tx *gorm.DB) error {
		h, err := s.load(tx.Statement.Context, s.lock(tx), id)
		if err != nil {
			return err
		}
		now := s.stamp()
		until := now.Add(RotationGrace)
		m := h.Webhook
		m.PreviousSecret, m.PreviousSecretUntil, m.Secret, m.UpdatedAt = m.Secret, &until, newSecret(), now
		if err := tx.Save(&m).Error; err != nil {
			return err
		}
		h.Webhook = m
		v = h.view()
		v.Secret = m.Secret
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.forget(v.ID)
	return &v, nil
}

// DeliveryView is a delivery as the admin API shows it.
type DeliveryView struct {
	ID            string          `json:"id"`
	WebhookID     string          `json:"webhookId"`
	EventID       string          `json:"eventId"`
	EventType     string          `json:"eventType"`
	ResourceName  string          `json:"resourceName,omitempty"`
	ResourceID    string          `json:"resourceId,omitempty"`
	Status        string          `json:"status"`
	Attempts      int             `json:"attempts"`
	NextAttemptAt *time.Time      `json:"nextAttemptAt"`
	CreatedAt     time.Time       `json:"createdAt"`
	UpdatedAt     time.Time       `json:"updatedAt"`
	AttemptLog    []Attempt       `json:"attemptLog"`
	Payload       json.RawMessage `json:"payload"`
}

func deliveryView(d *models.Delivery) DeliveryView {
	v := DeliveryView{ID: strconv.FormatInt(d.ID, 10), WebhookID: d.WebhookID, EventID: strings.TrimPrefix(d.EventID, idsPrefix),
		EventType: d.EventType, ResourceName: d.ResourceName, ResourceID: d.ResourceID, Status: d.Status,
		Attempts: d.Attempts, CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC(), Payload: json.RawMessage(d.Payload)}
	if d.Status == StatusPending || d.Status == StatusRetrying {
		t := d.NextAttemptAt.UTC()
		v.NextAttemptAt = &t
	}
	_ = json.Unmarshal([]byte(d.AttemptLog), &v.AttemptLog)
	if v.AttemptLog == nil {
		v.AttemptLog = []Attempt{}
	}
	if !json.Valid(v.Payload) {
		v.Payload = json.RawMessage("null")
	}
	return v
}

// Test queues a ping to the webhook and returns its delivery.
func (s *Service) Test(ctx context.Context, id string) (*DeliveryView, error) {
	h, err := s.load(ctx, s.read, id)
	if err != nil {
		return nil, err
	}
	if err := usable(h); err != nil {
		return nil, err
	}
	now := s.stamp()
	body, err := marshal(pingPayload{Type: pingType, WebhookID: h.ID, Timestamp: now})
	if err != nil {
		return nil, err
	}
	d := newDelivery(h, uuid.Must(uuid.NewV7()).String(), pingType, "", "", now, body, "", now)
	if err := s.store.Write(ctx, func(tx *gorm.DB) error { d.ID = 0; return tx.Create(&d).Error }); err != nil {
		return nil, err
	}
	s.wake()
	v := deliveryView(&d)
	return &v, nil
}

// usable refuses to queue a message for a disabled webhook: it would
// never be sent (409).
func usable(h *hook) error {
	if h.Enabled {
		return nil
	}
	return &resources.ConflictError{Message: "the webhook is disabled (" + h.DisabledReason + "); enable it first",
		Problems: []resources.Problem{{Field: "enabled", Rule: "enabled", Message: "the webhook is disabled"}}}
}

// InvokeResult answers a manual invocation.
type InvokeResult struct {
	EventID string `json:"eventId"`
}

// Invoke records a manual event (R.manual, op MANUAL in the hasura
// format) of a row's current state, for this webhook only. The body is
// {"resourceId"}, plus "resource" when the webhook's resource is "*".
func (s *Service) Invoke(ctx context.Context, id string, body []byte) (*InvokeResult, error) {
	h, err := s.load(ctx, s.read, id)
	if err != nil {
		return nil, err
	}
	if err := usable(h); err != nil {
		return nil, err
	}
	var req struct {
		Resource   string `json:"resource"`
		ResourceID string `json:"resourceId"`
	}
	if err := strictDecode(body, &req); err != nil {
		return nil, err
	}
	resource := h.Resource
	var probs []resources.Problem
	if resource == "*" {
		resource = req.Resource
		if resource == "" {
			probs = append(probs, resources.Problem{Field: "resource", Rule: "required", Message: `the webhook's resource is "*": name the resource`})
		}
	} else if req.Resource != "" && req.Resource != resource {
		probs = append(probs, resources.Problem{Field: "resource", Rule: "match", Message: "must be the webhook's resource " + resource})
	}
	if req.ResourceID == "" {
		probs = append(probs, resources.Problem{Field: "resourceId", Rule: "required", Message: "the id of the row to send"})
	}
	if len(probs) > 0 {
		return nil, &resources.ValidationError{Problems: probs}
	}
	row, _, err := s.store.Get(ctx, resource, req.ResourceID, url.Values{})
	if err != nil {
		return nil, err
	}
	rowID, _ := row["id"].(string)
	var res InvokeResult
	err = s.store.Write(ctx, func(tx *gorm.DB) error {
		eid, err := events.Append(tx, events.NewEvent{Type: resource + ".manual", Resource: resource, ResourceID: rowID,
			Data: events.Data{New: row}})
		if err != nil {
			return err
		}
		res.EventID = eid
		return tx.Exec("INSERT INTO herald_invocations (event_id, webhook_id) VALUES (?, ?)", eid, h.ID).Error
	})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// ReplayResult answers a replay.
type ReplayResult struct {
	Queued int64 `json:"queued"`
}

// Replay queues, for the webhook, every event of the log created in
// [since, until) that matches it and has no delivery to it yet (what it
// missed while disabled, or before it existed). Existing deliveries are
// left alone: redeliver those.
func (s *Service) Replay(ctx context.Context, id string, body []byte) (*ReplayResult, error) {
	h, err := s.load(ctx, s.read, id)
	if err != nil {
		return nil, err
	}
	var req struct {
		Since string `json:"since"`
		Until string `json:"until"`
	}
	if err := strictDecode(body, &req); err != nil {
		return nil, err
	}
	var probs []resources.Problem
	since, err := time.Parse(time.RFC3339Nano, req.Since)
	if err != nil {
		probs = append(probs, resources.Problem{Field: "since", Rule: "datetime", Message: "an RFC 3339 date-time is required"})
	}
	until := s.now()
	if req.Until != "" {
		if until, err = time.Parse(time.RFC3339Nano, req.Until); err != nil {
			probs = append(probs, resources.Problem{Field: "until", Rule: "datetime", Message: "must be an RFC 3339 date-time"})
		}
	}
	if len(probs) == 0 && !until.After(since) {
		probs = append(probs, resources.Problem{Field: "until", Rule: "min", Message: "must be after since"})
	}
	if len(probs) > 0 {
		return nil, &resources.ValidationError{Problems: probs}
	}
	audit := events.NewAudit(s.read)
	var res ReplayResult
	q := events.Query{Since: since, Until: until, Limit: 500}
	if h.Resource != "*" && len(h.related) == 0 { // related webhooks take other resources' events too
		q.Resource = h.Resource
	}
	for {
		page, err := audit.List(ctx, q)
		if err != nil {
			return nil, err
		}
		targets, err := invocationTargets(ctx, s.read, page.Data)
		if err != nil {
			return nil, err
		}
		rel, err := relatedRows(ctx, s.store, []*hook{h}, page.Data)
		if err != nil {
			return nil, err
		}
		rows, err := buildDeliveries([]*hook{h}, page.Data, targets, rel, s.now())
		if err != nil {
			return nil, err
		}
		if len(rows) > 0 {
			var n int64
			err = s.store.Write(ctx, func(tx *gorm.DB) (err error) {
				ins, err := insertDeliveries(tx, rows)
				n = int64(len(ins))
				return err
			})
			if err != nil {
				return nil, err
			}
			res.Queued += n
		}
		if page.Meta.Next == nil {
			break
		}
		q.After, _ = strconv.ParseInt(*page.Meta.Next, 10, 64)
	}
	s.wake()
	return &res, nil
}

// DeliveryPage is a page of the delivery log.
type DeliveryPage struct {
	Data []DeliveryView `json:"data"`
	Meta struct {
		Next *string `json:"next"`
	} `json:"meta"`
}

// Deliveries answers the webhook's delivery log, newest first; status
// filters, before (a delivery id) pages back, limit defaults to 50 (at
// most 1000).
func (s *Service) Deliveries(ctx context.Context, id string, params url.Values) (*DeliveryPage, error) {
	h, err := s.load(ctx, s.read, id)
	if err != nil {
		return nil, err
	}
	limit := 50
	tx := s.read.WithContext(ctx).Where("webhook_id = ?", h.ID)
	for k, vs := range params {
		v := vs[0]
		switch k {
		case "status":
			switch v {
			case StatusPending, StatusRetrying, StatusSucceeded, StatusDead:
				tx = tx.Where("status = ?", v)
			default:
				return nil, &events.QueryError{Param: "status", Message: "must be pending, retrying, succeeded or dead"}
			}
		case "limit":
			if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
				return nil, &events.QueryError{Param: "limit", Message: "must be an integer from 1 to 1000"}
			}
		case "before":
			b, err := strconv.ParseInt(v, 10, 64)
			if err != nil || b < 1 {
				return nil, &events.QueryError{Param: "before", Message: "must be a delivery id"}
			}
			tx = tx.Where("id < ?", b)
		default:
			return nil, &events.QueryError{Param: k, Message: "unknown parameter (status, limit, before)"}
		}
	}
	var rows []models.Delivery
	if err := tx.Order("id DESC").Limit(limit + 1).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("webhooks: deliveries: %w", err)
	}
	page := &DeliveryPage{Data: make([]DeliveryView, 0, len(rows))}
	if len(rows) > limit {
		rows = rows[:limit]
		next := strconv.FormatInt(rows[len(rows)-1].ID, 10)
		page.Meta.Next = &next
	}
	for i := range rows {
		page.Data = append(page.Data, deliveryView(&rows[i]))
	}
	return page, nil
}

// Redeliver queues a delivery again at once, with a fresh round of
// attempts (its log keeps the earlier ones). The same payload bytes and
// webhook-id go out.
func (s *Service) Redeliver(ctx context.Context, deliveryID string) (*DeliveryView, error) {
	id, err := strconv.ParseInt(deliveryID, 10, 64)
	if err != nil || id < 1 {
		return nil, fmt.Errorf("webhooks: delivery %q: %w", deliveryID, models.ErrNotFound)
	}
	var d models.Delivery
	err = s.store.Write(ctx, func(tx *gorm.DB) error {
		now := s.stamp()
		res := tx.Exec(`UPDATE herald_deliveries SET status = ?, attempts = 0, next_attempt_at = ?, claimed_by = '',
  claim_expires_at = NULL, updated_at = ? WHERE id = ? AND (status IN (?, ?) OR claimed_by = '' OR claim_expires_at < ?)`,
			StatusPending, now, now, id, StatusSucceeded, StatusDead, now)
		if res.Error != nil {
			return res.Error
		}
		var rows []models.Delivery
		if err := tx.Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return fmt.Errorf("webhooks: delivery %d: %w", id, models.ErrNotFound)
		}
		if res.RowsAffected == 0 {
			return &resources.ConflictError{Message: "the delivery is being attempted right now"}
		}
		d = rows[0]
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.wake()
	v := deliveryView(&d)
	return &v, nil
}

// strictDecode decodes a JSON object body into v, refusing unknown keys
// and trailing data (422 for a field's problem, 400 for a body that is
// not JSON).
func strictDecode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return &resources.ValidationError{Problems: []resources.Problem{{Field: ute.Field, Rule: "type", Message: "has the wrong type"}}}
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return &resources.ValidationError{Problems: []resources.Problem{{Field: strings.Trim(f, `"`), Rule: "unknown", Message: "unknown field"}}}
		}
		return &BodyError{"the body must be a JSON object: " + err.Error()}
	}
	if trailing(body, dec) {
		return &BodyError{"the body has data after the JSON value"}
	}
	return nil
}

// OldestHeld implements events.Holder: events of unfinished deliveries
// stay in the log.
func (s *Service) OldestHeld(ctx context.Context) (time.Time, bool, error) {
	var rows []models.Delivery
	// Deliveries of a disabled webhook wait for it to be enabled again,
	// maybe for ever; they carry their payloads and need no event.
	err := s.read.WithContext(ctx).Select("event_created_at").
		Where("status IN ? AND webhook_id IN (SELECT id FROM herald_webhooks WHERE enabled = ?)", []string{StatusPending, StatusRetrying}, true).
		Order("event_created_at").Limit(1).Find(&rows).Error
	if err != nil || len(rows) == 0 {
		return time.Time{}, false, err
	}
	return rows[0].EventCreatedAt, true, nil
}

var _ events.Holder = (*Service)(nil)
