package resources

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/herald-dev/herald/auth"
	"github.com/herald-dev/herald/events"
)

// StreamView is what one caller may see of a resource's events on a
// realtime stream: the rows its read permission lets it read (row filters
// checked in memory against the old and the new row, as the SQL of reads
// checks them against stored rows), projected to its read fields and then
// to the fields it asked for. It is immutable and safe for concurrent use.
type StreamView struct {
	r      *Resource
	a      *access
	fields []string
	key    string
}

// StreamView checks that the caller may read resource and returns its view
// of the resource's events; fields (comma-separated, may be empty) narrows
// the projection as the list API's fields does.
func (s *Store) StreamView(ctx context.Context, resource, fields string) (*StreamView, error) {
	_, r, a, err := s.resolve(ctx, resource, ActionRead)
	if err != nil {
		return nil, err
	}
	fs, err := parseFields(r, fields)
	if err != nil {
		return nil, err
	}
	if err := a.checkReadable(&ListQuery{Fields: fs}); err != nil {
		return nil, err
	}
	v := &StreamView{r: r, a: a, fields: fs}
	v.key = v.makeKey(auth.FromContext(ctx))
	return v, nil
}

// makeKey identifies what the view shows: callers with equal keys see the
// same frames, so a frame is encoded once per key.
func (v *StreamView) makeKey(p *auth.Principal) string {
	if v.a.admin {
		return "admin|" + v.r.Name + "|" + strings.Join(v.fields, ",")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|", p.Role, v.r.Name, strings.Join(v.fields, ","))
	for _, rule := range v.a.filters {
		fmt.Fprintf(&b, "%s %s %v;", rule.field.Name, rule.op, rule.values)
	}
	return b.String()
}

// Key identifies the frames this view produces (see makeKey).
func (v *StreamView) Key() string { return v.key }

// Resource is the resource the view is of.
func (v *StreamView) Resource() string { return v.r.Name }

// Visible tells whether a row (in its API form, as events carry it) is one
// the caller may read: not soft-deleted, and matching every row filter of
// its read permission, with SQL's semantics (a missing claim matches
// nothing; eq and in never match null; neq keeps null, as reads do).
func (v *StreamView) Visible(row map[string]any) bool {
	if row == nil {
		return false
	}
	if v.r.SoftDelete && row[ColDeletedAt] != nil {
		return false
	}
	if v.a.admin {
		return true
	}
	for _, rule := range v.a.filters {
		if len(rule.values) == 0 {
			return false
		}
		val := row[rule.field.Name]
		switch rule.op {
		case "neq":
			if val != nil && sameValue(Output(val), Output(rule.values[0])) {
				return false
			}
		case "in":
			if val == nil || !slices.ContainsFunc(rule.values, func(w any) bool { return sameValue(Output(val), Output(w)) }) {
				return false
			}
		default:
			if val == nil || !sameValue(Output(val), Output(rule.values[0])) {
				return false
			}
		}
	}
	return true
}

// Apply returns the caller's view of e, and false when the caller may not
// see it at all. An event is seen when the row was visible before or after
// it; a side the caller may not see is null (so an update that moves a row
// into or out of view arrives with old or new null, and the delete of a
// visible row always arrives). Rows keep the readable fields, then those
// asked for; the change lists name readable fields only; of the session
// variables, only userId and role remain (as in record history). e is not
// modified.
func (v *StreamView) Apply(e *events.Event) (events.Event, bool) {
	out := *e
	oldOK, newOK := v.Visible(e.Data.Old), v.Visible(e.Data.New)
	if !oldOK && !newOK {
		return out, false
	}
	if v.a.admin && len(v.fields) == 0 {
		return out, true
	}
	out.Data.Old, out.Data.New = nil, nil
	if oldOK {
		out.Data.Old = v.a.project(e.Data.Old, v.fields)
	}
	if newOK {
		out.Data.New = v.a.project(e.Data.New, v.fields)
	}
	keep := func(names []string) []string {
		kept := []string{}
		for _, n := range names {
			if v.a.readable(n) && (len(v.fields) == 0 || slices.Contains(v.fields, n)) {
				kept = append(kept, n)
			}
		}
		return kept
	}
	out.Data.Changes = events.Changes{Added: keep(e.Data.Changes.Added), Updated: keep(e.Data.Changes.Updated),
		Removed: keep(e.Data.Changes.Removed)}
	if !v.a.admin {
		who := map[string]any{}
		for _, k := range []string{"userId", "role"} {
			if val, ok := e.SessionVariables[k]; ok {
				who[k] = val
			}
		}
		out.SessionVariables = who
	}
	return out, true
}
