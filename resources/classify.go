package resources

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/herald-dev/herald/database"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	celop "github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// Classification is a named boolean CEL expression over a row's fields and
// `now` (SPEC section 8), compiled and type-checked when its schema is
// validated.
//
// Variables: every column under its own name (id, the declared fields,
// created_at, updated_at) and `now`, the evaluation time. Types: string,
// text, enum, uuid and relation are strings; integer is int; number is
// double (ints and doubles compare with each other); boolean is bool;
// datetime is a timestamp, and so is date (midnight UTC); json is dyn.
// Fields that may be empty are nullable (`amount == null` type-checks).
// An evaluation that fails at run time (a null compared with a number,
// say) counts as false: a row that lacks what the condition needs is not
// in the class.
type Classification struct {
	Name string
	Expr string

	prg     cel.Program
	usesNow bool
	windows []Window // nil unless every use of now is narrowable
	fields  []string // the columns the expression reads
}

// Fields lists the columns the expression reads: a caller who may not read
// one of them does not see the classification's events (its outcome would
// tell something of a hidden field).
func (c *Classification) Fields() []string { return c.fields }

// Window says where a classification's outcome can flip as time passes
// with the row unchanged: between times t0 and t1, only for rows whose
// Field lies in [t0+Offset, t1+Offset]. A classification whose every use of
// `now` is a comparison (<, <=, >, >=) between `now` plus or minus a
// constant duration and a datetime or date field plus or minus a constant
// duration has one window per comparison.
type Window struct {
	Field  string
	Offset time.Duration
	// Slack widens the range on both sides where the shift is calendar
	// based (addYears: leap days).
	Slack time.Duration
}

// UsesNow tells whether the outcome depends on the time.
func (c *Classification) UsesNow() bool { return c.usesNow }

// Windows returns the narrowing windows, or nil when the expression uses
// `now` in a way that cannot be narrowed (re-evaluation then scans).
func (c *Classification) Windows() []Window { return c.windows }

// Eval evaluates the classification on an API row at time now. A run-time
// error is false (see Classification).
func (c *Classification) Eval(act Activation, now time.Time) bool {
	act.now = now
	out, _, err := c.prg.Eval(&act)
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}

// Activation binds one row's values for evaluation. Build it once per row
// with Resource.Activation and evaluate every classification on it.
type Activation struct {
	vars map[string]any
	now  time.Time
}

// ResolveName implements interpreter.Activation.
func (a *Activation) ResolveName(name string) (any, bool) {
	if name == "now" {
		return a.now, true
	}
	v, ok := a.vars[name]
	return v, ok
}

// Parent implements interpreter.Activation.
func (a *Activation) Parent() interpreter.Activation { return nil }

// Activation converts an API row to CEL values: datetimes and dates to
// timestamps, nulls to CEL's null.
func (r *Resource) Activation(row map[string]any) Activation {
	vars := make(map[string]any, len(r.Fields)+3)
	for _, f := range r.Columns() {
		if f.Name == ColDeletedAt {
			continue
		}
		v, ok := row[f.Name]
		if !ok || v == nil {
			vars[f.Name] = types.NullValue
			continue
		}
		switch f.Type {
		case TypeDatetime:
			if s, ok := v.(string); ok {
				if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
					v = t
				}
			}
		case TypeDate:
			if s, ok := v.(string); ok {
				if t, err := time.Parse(DateFormat, s); err == nil {
					v = t
				}
			}
		}
		vars[f.Name] = v
	}
	return Activation{vars: vars}
}

// ClassificationList returns the compiled classifications, by name.
func (r *Resource) ClassificationList() []*Classification { return r.compiled }

// Classification returns the named classification, or nil.
func (r *Resource) Classification(name string) *Classification {
	for _, c := range r.compiled {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// maxExprLen bounds a classification's source; maxEvalCost bounds one
// evaluation (a comprehension over a large json array, say).
const (
	maxExprLen  = 4096
	maxEvalCost = 1_000_000
)

// celReserved are CEL's keywords and reserved words: a field with one of
// these names cannot be named in an expression, so it is not declared.
var celReserved = []string{"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
	"function", "if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"}

// compileClassifications type-checks r's classifications, reporting each
// problem under path "resources[i].classifications.<name>".
func compileClassifications(r *Resource, path string, add func(path, rule, format string, args ...any)) {
	r.compiled = nil
	if len(r.Classifications) == 0 {
		return
	}
	names := make([]string, 0, len(r.Classifications))
	for n := range r.Classifications {
		names = append(names, n)
	}
	sort.Strings(names)
	env, err := r.celEnv()
	if err != nil {
		add(path+".classifications", "expression", "classifications of %s: %s", r.Name, err.Error())
		return
	}
	for _, n := range names {
		src := r.Classifications[n]
		cp := path + ".classifications." + n
		if !nameRE.MatchString(n) {
			add(cp, "pattern", "classification name %q must match ^[a-z][a-z0-9_]{0,62}$", n)
			continue
		}
		if strings.TrimSpace(src) == "" || len(src) > maxExprLen {
			add(cp, "expression", "classification %s of %s: an expression of 1 to %d characters is required", n, r.Name, maxExprLen)
			continue
		}
		checked, iss := env.Compile(src)
		if iss.Err() != nil {
			add(cp, "expression", "classification %s of %s: %s", n, r.Name, iss.Err().Error())
			continue
		}
		if !checked.OutputType().IsExactType(types.BoolType) {
			add(cp, "expression", "classification %s of %s: the expression is %s, not bool", n, r.Name, checked.OutputType())
			continue
		}
		prg, err := env.Program(checked, cel.CostLimit(maxEvalCost))
		if err != nil {
			add(cp, "expression", "classification %s of %s: %s", n, r.Name, err.Error())
			continue
		}
		c := &Classification{Name: n, Expr: src, prg: prg}
		c.usesNow, c.windows = narrow(r, checked.NativeRep().Expr())
		for _, ref := range checked.NativeRep().ReferenceMap() {
			if ref.Name != "now" && r.Column(ref.Name) != nil && !slices.Contains(c.fields, ref.Name) {
				c.fields = append(c.fields, ref.Name)
			}
		}
		slices.Sort(c.fields)
		r.compiled = append(r.compiled, c)
	}
}

// celEnv declares r's columns and now.
func (r *Resource) celEnv() (*cel.Env, error) {
	opts := []cel.EnvOption{cel.Variable("now", cel.TimestampType), cel.CrossTypeNumericComparisons(true), addYears}
	for _, f := range r.Columns() {
		if f.Name == ColDeletedAt || slices.Contains(celReserved, f.Name) {
			continue
		}
		if f.Name == "now" {
			return nil, fmt.Errorf("a field named now hides the evaluation time: rename it to use classifications")
		}
		var t *cel.Type
		switch f.Type {
		case TypeInteger:
			t = cel.IntType
		case TypeNumber:
			t = cel.DoubleType
		case TypeBoolean:
			t = cel.BoolType
		case TypeDatetime, TypeDate:
			t = cel.TimestampType
		case TypeJSON:
			t = cel.DynType
		default:
			t = cel.StringType
		}
		if !f.Required && t != cel.DynType && t != cel.TimestampType {
			t = cel.NullableType(t)
		}
		opts = append(opts, cel.Variable(f.Name, t))
	}
	return cel.NewEnv(opts...)
}

// addYears is ts.addYears(n): the same calendar day and time n years
// later (Go's AddDate: 29 February plus one year is 1 March), so that
// "a person becomes an adult" is birth_date.addYears(18) <= now.
var addYears = cel.Function("addYears", cel.MemberOverload("timestamp_addYears_int",
	[]*cel.Type{cel.TimestampType, cel.IntType}, cel.TimestampType,
	cel.BinaryBinding(func(ts, n ref.Val) ref.Val {
		t, ok1 := ts.Value().(time.Time)
		y, ok2 := n.Value().(int64)
		if !ok1 || !ok2 || y > 10000 || y < -10000 {
			return types.NewErr("addYears: bad arguments")
		}
		return types.Timestamp{Time: t.AddDate(int(y), 0, 0)}
	})))

// narrow finds the windows of e (see Window): usesNow tells whether e
// mentions now at all, windows is nil unless every mention is narrowable.
func narrow(r *Resource, e ast.Expr) (usesNow bool, windows []Window) {
	total, covered := 0, 0
	var walk func(e ast.Expr)
	walk = func(e ast.Expr) {
		switch e.Kind() {
		case ast.IdentKind:
			if e.AsIdent() == "now" {
				total++
			}
			return
		case ast.CallKind:
			call := e.AsCall()
			if len(call.Args()) == 2 && slices.Contains([]string{celop.Less, celop.LessEquals,
				celop.Greater, celop.GreaterEquals}, call.FunctionName()) {
				a, b := call.Args()[0], call.Args()[1]
				if w, ok := comparisonWindow(r, a, b); ok {
					windows = append(windows, w)
					covered++
				} else if w, ok := comparisonWindow(r, b, a); ok {
					windows = append(windows, w)
					covered++
				}
			}
			if call.IsMemberFunction() {
				walk(call.Target())
			}
			for _, a := range call.Args() {
				walk(a)
			}
		case ast.SelectKind:
			walk(e.AsSelect().Operand())
		case ast.ListKind:
			for _, el := range e.AsList().Elements() {
				walk(el)
			}
		case ast.MapKind:
			for _, en := range e.AsMap().Entries() {
				walk(en.AsMapEntry().Key())
				walk(en.AsMapEntry().Value())
			}
		case ast.StructKind:
			for _, f := range e.AsStruct().Fields() {
				walk(f.AsStructField().Value())
			}
		case ast.ComprehensionKind:
			c := e.AsComprehension()
			for _, x := range []ast.Expr{c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result()} {
				walk(x)
			}
		}
	}
	walk(e)
	if total == 0 {
		return false, nil
	}
	if covered < total {
		return true, nil
	}
	return true, windows
}

// comparisonWindow reads "field ± d1 OP now ± d2" (fieldSide, nowSide).
func comparisonWindow(r *Resource, fieldSide, nowSide ast.Expr) (Window, bool) {
	nowID, dn, ok := shifted(nowSide)
	if !ok || nowID != "now" {
		return Window{}, false
	}
	fid, df, ok := shifted(fieldSide)
	if !ok {
		return Window{}, false
	}
	f := r.Column(fid)
	if f == nil || (f.Type != TypeDatetime && f.Type != TypeDate) {
		return Window{}, false
	}
	return Window{Field: fid, Offset: dn.by - df.by, Slack: df.slack + dn.slack}, true
}

// maxShift bounds the shifts narrowing accepts (a time.Duration holds
// about 292 years); expressions that shift further are scanned.
const (
	maxShiftYears = 200
	maxShift      = maxShiftYears * 366 * 24 * time.Hour
)

// shift is how far an expression moves its identifier in time.
type shift struct{ by, slack time.Duration }

// shifted reads "ident", "x + duration('…')", "x - duration('…')" or
// "x.addYears(n)" over such an x.
func shifted(e ast.Expr) (string, shift, bool) {
	switch e.Kind() {
	case ast.IdentKind:
		return e.AsIdent(), shift{}, true
	case ast.CallKind:
		call := e.AsCall()
		fn := call.FunctionName()
		if fn == "addYears" && call.IsMemberFunction() && len(call.Args()) == 1 && call.Args()[0].Kind() == ast.LiteralKind {
			n, ok := call.Args()[0].AsLiteral().Value().(int64)
			id, base, ok2 := shifted(call.Target())
			if !ok || !ok2 {
				return "", shift{}, false
			}
			if n < -maxShiftYears || n > maxShiftYears {
				return "", shift{}, false // beyond a time.Duration: scan instead
			}
			// A year is 365 or 366 days: 365.2425 on average, off by at
			// most a day or two over any span.
			base.by += time.Duration(float64(n) * 365.2425 * 24 * float64(time.Hour))
			base.slack += 2 * 24 * time.Hour
			return id, base, base.by.Abs() <= maxShift
		}
		if (fn != celop.Add && fn != celop.Subtract) || len(call.Args()) != 2 {
			return "", shift{}, false
		}
		id, base, ok := shifted(call.Args()[0])
		if !ok {
			return "", shift{}, false
		}
		d, ok := durationLiteral(call.Args()[1])
		if !ok {
			return "", shift{}, false
		}
		if fn == celop.Subtract {
			d = -d
		}
		if d.Abs() > maxShift {
			return "", shift{}, false
		}
		base.by += d
		return id, base, base.by.Abs() <= maxShift
	}
	return "", shift{}, false
}

// durationLiteral reads duration('…') with a constant string.
func durationLiteral(e ast.Expr) (time.Duration, bool) {
	if e.Kind() != ast.CallKind {
		return 0, false
	}
	call := e.AsCall()
	if call.FunctionName() != "duration" || len(call.Args()) != 1 || call.Args()[0].Kind() != ast.LiteralKind {
		return 0, false
	}
	var lit ref.Val = call.Args()[0].AsLiteral()
	s, ok := lit.Value().(string)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// ScanLive reads up to limit live rows of resource with ids after after,
// in id order, inside tx (a handle of Store.Write). With windows, only the
// rows whose window field lies in [t0+Offset, t1+Offset] for some window:
// an indexed range query (wantedIndexes). On PostgreSQL the rows are
// locked against concurrent updates until tx ends, so a background
// evaluation and a write of the same row take turns. It is for the
// classification jobs; it applies no permissions.
func (s *Store) ScanLive(tx *gorm.DB, resource, after string, limit int, windows []Window, t0, t1 time.Time) ([]Row, error) {
	r := s.Schema().Resource(resource)
	if r == nil {
		return nil, nil
	}
	b := &sqlBuilder{kind: s.db.Kind}
	if after != "" {
		b.add(q(ColID)+" > ?", after)
	}
	if r.SoftDelete {
		b.add(q(ColDeletedAt) + " IS NULL")
	}
	if len(windows) > 0 {
		var ors []string
		var args []any
		for _, w := range windows {
			f := r.Column(w.Field)
			if f == nil {
				return nil, fmt.Errorf("resources: classification window on unknown field %s.%s", resource, w.Field)
			}
			lo, hi := t0.Add(w.Offset-w.Slack).UTC(), t1.Add(w.Offset+w.Slack).UTC()
			if f.Type == TypeDate {
				ors = append(ors, q(f.Name)+" BETWEEN ? AND ?")
				args = append(args, lo.Format(DateFormat), hi.Format(DateFormat))
				continue
			}
			ors = append(ors, q(f.Name)+" BETWEEN ? AND ?")
			args = append(args, toDB(s.db.Kind, f, lo.Truncate(time.Microsecond)), toDB(s.db.Kind, f, hi.Add(time.Microsecond).Truncate(time.Microsecond)))
		}
		b.add("("+strings.Join(ors, " OR ")+")", args...)
	}
	sql := selectFrom(r) + b.where() + " ORDER BY " + q(ColID) + fmt.Sprintf(" LIMIT %d", limit)
	if s.db.Kind == database.Postgres {
		sql += " FOR NO KEY UPDATE"
	}
	return selectRows(tx, r, sql, b.args...)
}

// Referencing returns, for each of ids, the ids of the live rows of
// resource whose relation field holds it, read on db (a read snapshot of
// the caller's). The webhook dispatcher uses it for relation-aware
// webhooks.
func (s *Store) Referencing(db *gorm.DB, resource, field string, ids []string) (map[string][]string, error) {
	r := s.Schema().Resource(resource)
	if r == nil || len(ids) == 0 {
		return nil, nil
	}
	f := r.Field(field)
	if f == nil || f.Type != TypeRelation {
		return nil, fmt.Errorf("resources: %s.%s is not a relation", resource, field)
	}
	out := map[string][]string{}
	for len(ids) > 0 {
		part := ids[:min(len(ids), 500)]
		ids = ids[len(part):]
		sql := "SELECT " + q(ColID) + ", " + q(field) + " FROM " + q(r.Name) + " WHERE " + q(field) + " IN ?"
		if r.SoftDelete {
			sql += " AND " + q(ColDeletedAt) + " IS NULL"
		}
		var rows []map[string]any
		if err := db.Raw(sql+" ORDER BY "+q(ColID), part).Find(&rows).Error; err != nil {
			return nil, fmt.Errorf("resources: rows referencing %s: %w", resource, err)
		}
		for _, row := range rows {
			id, err := systemFields[ColID].fromDB(row[ColID])
			if err != nil {
				return nil, err
			}
			to, err := f.fromDB(row[field])
			if err != nil {
				return nil, err
			}
			ts, _ := to.(string)
			out[ts] = append(out[ts], id.(string))
		}
	}
	return out, nil
}
