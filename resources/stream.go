package resources

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/herald-dev/herald/auth"
)

// StreamView is what one caller may see of a resource's events on a
// realtime stream: the rows its read permission lets it read (row filters
// checked in memory against the old and the new row, as the SQL of reads
// checks them against stored rows), projected to its read fields and then
// to the fields it asked for. Its View answers events.Redact. It is
// immutable and safe for concurrent use.
type StreamView struct {
	View
	key     string
	version int
	expires time.Time
}

// StreamView checks that the caller may read resource and returns its view
// of the resource's events; fields (comma-separated, may be empty) narrows
// the projection as the list API's fields does.
func (s *Store) StreamView(ctx context.Context, resource, fields string) (*StreamView, error) {
	version := s.SchemaVersion()
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
	p := auth.FromContext(ctx)
	v := &StreamView{View: View{r: r, a: a, fields: fs, rows: true}, version: version}
	v.key = v.makeKey(p)
	if exp, ok := p.Claims["exp"].(float64); ok {
		v.expires = time.Unix(int64(exp), 0)
	}
	return v, nil
}

// SchemaVersion is the version of the schema the view was made under: a
// stream must not outlive it (its permissions may have changed).
func (v *StreamView) SchemaVersion() int { return v.version }

// Expires is when the caller's token expires (zero: never): a stream must
// not outlive it.
func (v *StreamView) Expires() time.Time { return v.expires }

// makeKey identifies what the view shows: callers with equal keys see the
// same frames, so a frame is encoded once per key. It is an unambiguous
// encoding of everything the view's answers depend on: the schema
// version, the resource, the read fields, the bound row filters and
// fields.
func (v *StreamView) makeKey(p *auth.Principal) string {
	type rule struct {
		F, Op string
		V     []any
	}
	k := struct {
		Version int
		R       string
		Admin   bool
		Read    []string
		Filters []rule
		Fields  []string
	}{Version: v.version, R: v.r.Name, Admin: v.a.admin, Fields: v.fields}
	if !v.a.admin {
		for name := range v.a.readFields {
			k.Read = append(k.Read, name)
		}
		slices.Sort(k.Read)
		if v.a.readFields == nil {
			k.Read = []string{"*"}
		}
		for _, r := range v.a.filters {
			vals := make([]any, len(r.values))
			for i, x := range r.values {
				vals[i] = Output(x)
			}
			k.Filters = append(k.Filters, rule{r.field.Name, r.op, vals})
		}
	}
	b, _ := json.Marshal(k)
	return string(b)
}

// Key identifies the frames this view produces (see makeKey).
func (v *StreamView) Key() string { return v.key }

// Resource is the resource the view is of.
func (v *StreamView) Resource() string { return v.r.Name }

// Visible tells whether a row (in its API form, as events carry it; nil
// when an event has no such side) is one the caller may read. Of a
// record's history, every side is: the caller may read the record now. On
// a stream, the row must be there, not soft-deleted, and match every row
// filter of the read permission, with SQL's semantics (a missing claim
// matches nothing; eq and in never match null; neq keeps null, as reads
// do).
func (v *View) Visible(row map[string]any) bool {
	if !v.rows {
		return true
	}
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
		// Compared as canonical values (exact integers, times), as SQL
		// compares them; a value that does not coerce equals nothing.
		match := false
		if val != nil {
			if cv, err := rule.field.coerce(val); err == nil {
				switch rule.op {
				case "in":
					match = slices.ContainsFunc(rule.values, func(w any) bool { return sameCanonical(cv, w) })
				default:
					match = sameCanonical(cv, rule.values[0])
				}
			}
		}
		switch rule.op {
		case "neq":
			if val != nil && match {
				return false
			}
		default:
			if !match {
				return false
			}
		}
	}
	return true
}

// sameCanonical compares two canonical values; integers exactly (beyond
// float64's 2^53).
func sameCanonical(a, b any) bool {
	ai, aok := a.(int64)
	bi, bok := b.(int64)
	if aok && bok {
		return ai == bi
	}
	return sameValue(Output(a), Output(b))
}
