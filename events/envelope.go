// Package events is Herald's transactional outbox. A GORM plugin records
// one event per row touched by every create, update and delete, inside the
// write's own transaction; a relay hands committed events, in log order, to
// the consumers registered with it (webhooks, realtime, classification) and
// marks them dispatched; an audit reader answers the event API. The package
// knows nothing of its consumers.
package events

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/herald-dev/herald/models"
)

// Event is the envelope of SPEC section 5.
type Event struct {
	ID               int64          `json:"id,string"`
	EventID          string         `json:"eventId"`
	EventType        string         `json:"eventType"`
	ResourceName     string         `json:"resourceName"`
	ResourceID       string         `json:"resourceId"`
	CreatedAt        time.Time      `json:"createdAt"`
	DispatchedAt     *time.Time     `json:"dispatchedAt"`
	Data             Data           `json:"data"`
	SessionVariables map[string]any `json:"sessionVariables"`
	TraceContext     TraceContext   `json:"traceContext"`
}

// Data is the Hasura-style change description.
type Data struct {
	Old     map[string]any `json:"old"`
	New     map[string]any `json:"new"`
	Changes Changes        `json:"changes"`
	// Classification is set on R.classified events only.
	Classification *Transition `json:"classification,omitempty"`
}

// Transition is a classification's change of outcome for one row: From
// and To are true, false or nil (no row: before create, after delete).
type Transition struct {
	Name string `json:"name"`
	From *bool  `json:"from"`
	To   *bool  `json:"to"`
}

// Changes names the fields a change added, updated and removed.
type Changes struct {
	Added   []string `json:"added"`
	Updated []string `json:"updated"`
	Removed []string `json:"removed"`
}

// TraceContext ties an event to the request and trace that caused it.
type TraceContext struct {
	TraceID       string `json:"traceId,omitempty"`
	SpanID        string `json:"spanId,omitempty"`
	ParentSpanID  string `json:"parentSpanId,omitempty"`
	RequestID     string `json:"requestId,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
}

// Event type suffixes.
const (
	OpCreated = "created"
	OpUpdated = "updated"
	OpDeleted = "deleted"
	// OpClassified is a classification's transition (package classify).
	OpClassified = "classified"
)

// Op returns an event type's operation: "created" of "orders.created".
func Op(eventType string) string {
	return eventType[strings.LastIndexByte(eventType, '.')+1:]
}

// diff computes data for a change of one row. old or new is nil for a
// create or a delete. ok is false when an update changed nothing.
func diff(old, new map[string]any) (d Data, ok bool) {
	d = Data{Old: old, New: new, Changes: Changes{Added: []string{}, Updated: []string{}, Removed: []string{}}}
	switch {
	case old == nil:
		d.Changes.Added = sortedKeys(new)
	case new == nil:
		d.Changes.Removed = sortedKeys(old)
	default:
		for k, nv := range new {
			ov, had := old[k]
			switch {
			case !had:
				d.Changes.Added = append(d.Changes.Added, k)
			case !equalValues(ov, nv):
				d.Changes.Updated = append(d.Changes.Updated, k)
			}
		}
		for k := range old {
			if _, has := new[k]; !has {
				d.Changes.Removed = append(d.Changes.Removed, k)
			}
		}
		slices.Sort(d.Changes.Added)
		slices.Sort(d.Changes.Updated)
		slices.Sort(d.Changes.Removed)
	}
	return d, old == nil || new == nil || len(d.Changes.Added)+len(d.Changes.Updated)+len(d.Changes.Removed) > 0
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// equalValues compares two API-form values; numbers compare by value.
func equalValues(a, b any) bool {
	fa, aok := a.(float64)
	fb, bok := b.(float64)
	ia, aint := a.(int64)
	ib, bint := b.(int64)
	switch {
	case aint && bok:
		return float64(ia) == fb
	case aok && bint:
		return fa == float64(ib)
	}
	return reflect.DeepEqual(a, b)
}

// RequestInfo is what the request tells about itself, carried in its
// context down to the GORM plugin.
type RequestInfo struct {
	SessionVariables map[string]any
	Trace            TraceContext
}

type requestInfoKey struct{}

// WithRequestInfo returns a context carrying info.
func WithRequestInfo(ctx context.Context, info *RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, info)
}

// RequestInfoFrom returns the context's request info, or an empty one.
func RequestInfoFrom(ctx context.Context) *RequestInfo {
	if info, ok := ctx.Value(requestInfoKey{}).(*RequestInfo); ok && info != nil {
		return info
	}
	return &RequestInfo{SessionVariables: map[string]any{}}
}

// fromModel decodes a stored row into the envelope.
func fromModel(m *models.Event) (Event, error) {
	e := Event{ID: m.ID, EventID: m.EventID, EventType: m.EventType, ResourceName: m.ResourceName,
		ResourceID: m.ResourceID, CreatedAt: m.CreatedAt.UTC(), DispatchedAt: m.DispatchedAt}
	if e.DispatchedAt != nil {
		t := e.DispatchedAt.UTC()
		e.DispatchedAt = &t
	}
	if err := json.Unmarshal([]byte(m.Data), &e.Data); err != nil {
		return e, err
	}
	if err := json.Unmarshal([]byte(m.SessionVariables), &e.SessionVariables); err != nil {
		return e, err
	}
	return e, json.Unmarshal([]byte(m.TraceContext), &e.TraceContext)
}

// FromModel decodes a stored event row into the envelope.
func FromModel(m *models.Event) (Event, error) { return fromModel(m) }
