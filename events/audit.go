package events

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/herald-dev/herald/models"
)

// Audit reads the event log for the audit API and record history.
type Audit struct{ db *gorm.DB }

// NewAudit returns a reader on the read handle db.
func NewAudit(db *gorm.DB) *Audit { return &Audit{db: db} }

// QueryError is a bad audit query parameter (400).
type QueryError struct{ Param, Message string }

// Error implements error.
func (e *QueryError) Error() string { return e.Param + ": " + e.Message }

// Query filters the log. Zero values do not filter.
type Query struct {
	Resource   string
	Type       string // "orders.created", or "created" for every resource
	ResourceID string
	UserID     string
	Since      time.Time
	Until      time.Time
	After      int64 // only events with a larger id
	Limit      int   // default 100, at most 1000
}

// Page is a page of events with the cursor to the next one.
type Page struct {
	Data []Event  `json:"data"`
	Meta PageMeta `json:"meta"`
}

// PageMeta holds the next cursor: an event id, or null at the end.
type PageMeta struct {
	Next *string `json:"next"`
}

// queryParams are the audit API's parameters.
var queryParams = []string{"resource", "type", "resourceId", "userId", "since", "until", "after", "limit"}

// ParseQuery reads the audit API's parameters.
func ParseQuery(v url.Values) (Query, error) {
	// Unknown parameters are refused, as on resource lists: a misspelt
	// filter (?resourceName=x) must not answer every event.
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if !slices.Contains(queryParams, k) {
			return Query{}, &QueryError{k, "unknown parameter (known: " + strings.Join(queryParams, ", ") + ")"}
		}
		if len(v[k]) > 1 {
			return Query{}, &QueryError{k, "given more than once"}
		}
	}
	q := Query{Resource: v.Get("resource"), Type: v.Get("type"), ResourceID: v.Get("resourceId"), UserID: v.Get("userId"), Limit: 100}
	var err error
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(p.name); s != "" {
			if *p.dst, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return q, &QueryError{p.name, "must be an RFC 3339 date-time"}
			}
		}
	}
	if s := v.Get("after"); s != "" {
		if q.After, err = strconv.ParseInt(s, 10, 64); err != nil || q.After < 0 {
			return q, &QueryError{"after", "must be an event id"}
		}
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 1 || q.Limit > 1000 {
			return q, &QueryError{"limit", "must be an integer from 1 to 1000"}
		}
	}
	return q, nil
}

// List answers the events matching q, oldest first. Filters on the key
// columns search the index (see keyed); without them the log is read in
// id order by its primary key.
func (a *Audit) List(ctx context.Context, q Query) (*Page, error) {
	f := &keyFilter{}
	if q.Resource != "" {
		f.add("resource_name = ?", q.Resource)
	}
	if q.Type != "" {
		if strings.Contains(q.Type, ".") {
			f.add("event_type = ?", q.Type)
		} else {
			f.add("event_type = resource_name || '.' || ?", q.Type) // a literal, never a pattern
		}
	}
	if q.ResourceID != "" {
		f.add("resource_id = ?", q.ResourceID)
	}
	if q.UserID != "" {
		f.add("user_id = ?", q.UserID)
	}
	if !q.Since.IsZero() {
		f.add("created_at >= ?", q.Since.UTC())
	}
	if !q.Until.IsZero() {
		f.add("created_at < ?", q.Until.UTC())
	}
	tx := withDispatchedAt(a.db.WithContext(ctx))
	if f.empty() {
		if q.After > 0 {
			tx = tx.Where("id > ?", q.After)
		}
		return page(tx.Order("id"), q.Limit)
	}
	return page(keyed(tx, f, q.After, 0, q.Limit+1, false), q.Limit)
}

// Get returns one event by its eventId.
func (a *Audit) Get(ctx context.Context, eventID string) (*Event, error) {
	var rows []models.Event
	f := &keyFilter{}
	f.add("event_id = ?", eventID)
	if err := keyed(withDispatchedAt(a.db.WithContext(ctx)), f, 0, 0, 1, false).Limit(1).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("events: get: %w", err)
	}
	if len(rows) == 0 {
		// Index rows the indexer has not keyed yet (after an upgrade, see
		// migration 5) may hide the event: then search the log itself.
		var unkeyed []int64
		if err := a.db.WithContext(ctx).Raw(`SELECT id FROM herald_event_index WHERE event_id IS NULL LIMIT 1`).
			Scan(&unkeyed).Error; err != nil {
			return nil, fmt.Errorf("events: get: %w", err)
		}
		if len(unkeyed) > 0 {
			if err := withDispatchedAt(a.db.WithContext(ctx)).Where("herald_events.event_id = ?", eventID).
				Limit(1).Find(&rows).Error; err != nil {
				return nil, fmt.Errorf("events: get: %w", err)
			}
		}
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("events: event %s: %w", eventID, models.ErrNotFound)
	}
	e, err := fromModel(&rows[0])
	return &e, err
}

// History answers one record's events, newest first; before (an event id)
// pages back.
func (a *Audit) History(ctx context.Context, resource, id string, before int64, limit int) (*Page, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	f := &keyFilter{}
	f.add("resource_name = ?", resource)
	f.add("resource_id = ?", id)
	return page(keyed(withDispatchedAt(a.db.WithContext(ctx)), f, 0, before, limit+1, true), limit)
}

// withDispatchedAt selects events with their dispatch time: that of the
// first watermark step at or past the event's id (a primary-key seek).
func withDispatchedAt(tx *gorm.DB) *gorm.DB {
	return tx.Model(&models.Event{}).Select("herald_events.*, " +
		"(SELECT d.dispatched_at FROM herald_dispatches d WHERE d.id >= herald_events.id ORDER BY d.id LIMIT 1) AS dispatched_at")
}

func page(tx *gorm.DB, limit int) (*Page, error) {
	var rows []models.Event
	if err := tx.Limit(limit + 1).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("events: list: %w", err)
	}
	p := &Page{Data: make([]Event, 0, len(rows))}
	if len(rows) > limit {
		rows = rows[:limit]
		next := strconv.FormatInt(rows[len(rows)-1].ID, 10)
		p.Meta.Next = &next
	}
	for i := range rows {
		e, err := fromModel(&rows[i])
		if err != nil {
			return nil, fmt.Errorf("events: decode event %d: %w", rows[i].ID, err)
		}
		p.Data = append(p.Data, e)
	}
	return p, nil
}
