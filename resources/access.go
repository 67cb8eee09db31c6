package resources

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/herald-dev/herald/auth"
	"github.com/herald-dev/herald/models"
)

// The permission actions.
const (
	ActionRead   = "read"
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// ForbiddenError is a write or read the role may not do (403), naming the
// fields it touched without permission.
type ForbiddenError struct {
	Message  string
	Problems []Problem
}

// Error implements error.
func (e *ForbiddenError) Error() string { return e.Message }

// Unwrap makes errors.Is(err, models.ErrForbidden) true.
func (e *ForbiddenError) Unwrap() error { return models.ErrForbidden }

// boundRule is a permission rule with its claim resolved for one caller.
type boundRule struct {
	field  *Field
	op     string
	values []any // canonical; empty when the claim is missing
}

// access is what one caller may do with one resource for one action. A nil
// field set means every field.
type access struct {
	admin       bool
	readFields  map[string]bool
	writeFields map[string]bool
	filters     []boundRule
	checks      []boundRule
	denied      []Problem
}

// fullAccess is the admin's (and internal cascades') access. It is never
// modified: checkWritable and applyChecks do nothing for admins.
var fullAccess = &access{admin: true}

// authorize resolves the caller's permission for the action; default deny.
// A caller without credentials is told 401 (credentials would help), one
// with a role that lacks the permission 403.
func (s *Store) authorize(ctx context.Context, sc *Schema, r *Resource, action string) (*access, error) {
	p := auth.FromContext(ctx)
	if p.IsAdmin() {
		return fullAccess, nil
	}
	var perm, read *Permission
	for i := range sc.Permissions {
		pm := &sc.Permissions[i]
		if pm.Resource != r.Name || pm.Role != p.Role {
			continue
		}
		if pm.Action == action {
			perm = pm
		}
		if pm.Action == ActionRead {
			read = pm
		}
	}
	if perm == nil {
		if p.Role == auth.RolePublic {
			return nil, fmt.Errorf("resources: %s on %s needs credentials: %w", action, r.Name, models.ErrUnauthorized)
		}
		return nil, &ForbiddenError{Message: fmt.Sprintf("role %s may not %s %s", p.Role, action, r.Name)}
	}
	a := &access{readFields: map[string]bool{ColID: true}}
	if read != nil {
		if len(read.Fields) == 0 {
			a.readFields = nil
		} else {
			a.readFields[ColCreatedAt], a.readFields[ColUpdatedAt] = true, true
			for _, f := range read.Fields {
				a.readFields[f] = true
			}
		}
	}
	if len(perm.Fields) > 0 {
		a.writeFields = map[string]bool{}
		for _, f := range perm.Fields {
			a.writeFields[f] = true
		}
	}
	a.filters = bindRules(r, perm.Filters, p)
	a.checks = bindRules(r, perm.Checks, p)
	return a, nil
}

func bindRules(r *Resource, rules []Rule, p *auth.Principal) []boundRule {
	out := make([]boundRule, 0, len(rules))
	for _, rule := range rules {
		f := r.Column(rule.Field)
		br := boundRule{field: f, op: rule.Operator}
		raw := rule.Value
		if rule.Claim != "" {
			raw = claimValue(p, rule.Claim)
		}
		items := []any{raw}
		if list, ok := raw.([]any); ok {
			items = list
		}
		for _, it := range items {
			if it == nil {
				continue
			}
			if cv, err := f.coerce(it); err == nil {
				br.values = append(br.values, cv)
			}
		}
		out = append(out, br)
	}
	return out
}

// claimValue reads a claim by dotted path; "sub" falls back to the user id.
func claimValue(p *auth.Principal, path string) any {
	var cur any = p.Claims
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			cur = nil
			break
		}
		cur = m[part]
	}
	if cur == nil && path == "sub" && p.UserID != "" {
		return p.UserID
	}
	return cur
}

// addRowFilters restricts a query to the rows the caller may touch. A rule
// whose claim is missing matches nothing.
func (a *access) addRowFilters(b *sqlBuilder) {
	if a == nil || a.admin {
		return
	}
	for _, rule := range a.filters {
		if len(rule.values) == 0 {
			b.add("1 = 0")
			continue
		}
		switch rule.op {
		case "neq":
			b.addFilter(Filter{Field: rule.field, Op: "neq", Value: rule.values[0]})
		case "in":
			b.addFilter(Filter{Field: rule.field, Op: "in", List: rule.values})
		default:
			b.addFilter(Filter{Field: rule.field, Op: "eq", Value: rule.values[0]})
		}
	}
}

func (a *access) readable(name string) bool {
	return a.admin || a.readFields == nil || a.readFields[name]
}

// checkReadable refuses filters, sorts, projections and includes on fields
// the caller may not read: using them would leak their values.
func (a *access) checkReadable(lq *ListQuery) error {
	var probs []Problem
	deny := func(name string) {
		if !a.readable(name) {
			probs = append(probs, Problem{Field: name, Rule: "permission", Message: "is not readable by this role"})
		}
	}
	for _, f := range lq.Filters {
		deny(f.Field.Name)
	}
	for _, k := range lq.Sort {
		deny(k.Field.Name)
	}
	for _, n := range lq.Fields {
		deny(n)
	}
	for _, n := range lq.Include {
		deny(n)
	}
	if len(probs) > 0 {
		return &ForbiddenError{Message: "the request names fields this role may not read", Problems: probs}
	}
	return nil
}

// project keeps the fields asked for (all when fields is empty) that the
// caller may read, and any expansion.
func (a *access) project(row Row, fields []string) Row {
	if len(fields) == 0 && (a.admin || a.readFields == nil) {
		return row
	}
	out := make(Row, len(row))
	for k, v := range row {
		if k == ExpandKey {
			out[k] = v
			continue
		}
		if (len(fields) == 0 || slices.Contains(fields, k)) && a.readable(k) {
			out[k] = v
		}
	}
	return out
}

func (a *access) writable(name string) bool {
	return a.admin || a.writeFields == nil || a.writeFields[name]
}

// checkWritable notes a written field outside the role's write fields.
func (a *access) checkWritable(name string) {
	if a.writable(name) {
		return
	}
	a.denied = append(a.denied, Problem{Field: name, Rule: "permission", Message: "is not writable by this role"})
}

// applyChecks forces checked fields to the caller's claim: absent ones are
// filled, a different value is refused (403).
func (a *access) applyChecks(vals map[string]any) []Problem {
	if a.admin {
		return nil
	}
	for _, rule := range a.checks {
		name := rule.field.Name
		v, present := vals[name]
		if len(rule.values) == 0 {
			a.denied = append(a.denied, Problem{Field: name, Rule: "check", Message: "the token lacks the claim this field must match"})
			continue
		}
		if !present {
			if rule.op == "eq" {
				vals[name] = rule.values[0]
			} else {
				// Only eq says what to fill in; anything else must be sent.
				a.denied = append(a.denied, Problem{Field: name, Rule: "check", Message: "must be given, matching the caller's " + rule.field.Name})
			}
			continue
		}
		match := false
		for _, want := range rule.values {
			if sameValue(Output(v), Output(want)) {
				match = true
			}
		}
		if rule.op == "neq" {
			match = !match
		}
		if !match {
			a.denied = append(a.denied, Problem{Field: name, Rule: "check", Message: "must match the caller's " + name})
		}
	}
	return nil
}

// forbidden reports the fields checkWritable and applyChecks refused.
func (a *access) forbidden() error {
	if a.admin || len(a.denied) == 0 {
		return nil
	}
	return &ForbiddenError{Message: "the write touches fields this role may not set", Problems: a.denied}
}

// View is what one caller may read of one resource's rows, in plain types
// (rows in API form, field names). It answers the questions of
// events.Reader, so that one redaction (events.Redact) serves record
// history and realtime streams, without resources importing events: api
// hands a View to events.Redact. A record's history (RecordView) shows
// every side of the record's events, since the caller may read the record
// now; a stream (StreamView) checks each side against the read
// permission's row filters. It is immutable and safe for concurrent use.
type View struct {
	r      *Resource
	a      *access
	fields []string // narrows the readable fields (a stream's fields); nil: all
	rows   bool     // Visible checks rows against soft delete and the row filters
}

// Admin reports that the caller is the admin.
func (v *View) Admin() bool { return v.a.admin }

// Whole reports that the caller sees rows whole: the admin, not narrowed
// to some fields.
func (v *View) Whole() bool { return v.a.admin && len(v.fields) == 0 }

// Project keeps, of a row, the fields the caller sees (Readable); row is
// not modified.
func (v *View) Project(row map[string]any) map[string]any {
	return v.a.project(row, v.fields)
}

// Readable reports whether the caller sees the field: readable, and among
// the fields asked for when the view was narrowed.
func (v *View) Readable(name string) bool {
	return v.a.readable(name) && (len(v.fields) == 0 || slices.Contains(v.fields, name))
}

// ClassificationReadable reports whether the caller may read every field
// the resource's named classification reads (false when there is none).
func (v *View) ClassificationReadable(name string) bool {
	cl := v.r.Classification(name)
	if cl == nil {
		return false
	}
	for _, f := range cl.Fields() {
		if !v.a.readable(f) {
			return false
		}
	}
	return true
}

// RecordView checks that the caller may read the record (admins: that the
// resource exists, since the record may be gone) and returns their view.
func (s *Store) RecordView(ctx context.Context, resource, id string) (*View, error) {
	_, r, a, err := s.resolve(ctx, resource, ActionRead)
	if err != nil {
		return nil, err
	}
	if a.admin {
		return &View{r: r, a: a}, nil
	}
	row, err := s.findOne(s.db.Read.WithContext(ctx), r, a, id, false, noLock)
	if err != nil {
		return nil, err
	}
	if row == nil {
		return nil, fmt.Errorf("resources: %s %s: %w", r.Name, id, models.ErrNotFound)
	}
	return &View{a: a, r: r}, nil
}
