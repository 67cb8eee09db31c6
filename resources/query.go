package resources

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/herald-dev/herald/database"
)

// Pagination limits of SPEC section 3.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Filter operators of SPEC section 3.
var filterOps = []string{"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "in", "isnull"}

// QueryError is a bad list or read parameter (400).
type QueryError struct {
	Param   string
	Message string
}

// Error implements error.
func (e *QueryError) Error() string { return e.Param + ": " + e.Message }

// Filter is one parsed field__op=value condition.
type Filter struct {
	Field *Field
	Op    string
	Value any   // canonical value; for isnull a bool
	List  []any // for in
}

// SortKey is one column of the ordering.
type SortKey struct {
	Field *Field
	Desc  bool
}

// ListQuery is a parsed list request.
type ListQuery struct {
	Filters []Filter
	Sort    []SortKey // always ends with id
	Limit   int
	Offset  int
	After   []any // canonical values of Sort's columns, from the _after cursor
	Fields  []string
	Include []string
}

// reservedParams are list parameters that are not filters. access_token is
// the SSE token parameter; lastEventId belongs to streams.
var reservedParams = []string{"_sort", "_limit", "_offset", "_after", "fields", "include", "access_token", "hard"}

// ParseListQuery parses and checks a list request's parameters against the
// resource. Nothing from the request reaches SQL except as a parameter:
// fields and operators are looked up in the schema and a fixed list.
func ParseListQuery(r *Resource, params url.Values) (*ListQuery, error) {
	lq := &ListQuery{Limit: DefaultLimit}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		vals := params[key]
		if slices.Contains(reservedParams, key) {
			continue
		}
		name, op, hasOp := strings.Cut(key, "__")
		if !hasOp {
			op = "eq"
		}
		f := r.Column(name)
		if f == nil {
			return nil, &QueryError{key, fmt.Sprintf("unknown filter field %q", name)}
		}
		if !slices.Contains(filterOps, op) {
			return nil, &QueryError{key, fmt.Sprintf("unknown operator %q (one of %s)", op, strings.Join(filterOps, ", "))}
		}
		if !f.Filterable && f.Type != TypeRelation {
			return nil, &QueryError{key, fmt.Sprintf("field %q is not filterable", name)}
		}
		for _, v := range vals {
			flt, err := parseFilter(f, op, v)
			if err != nil {
				return nil, &QueryError{key, err.Error()}
			}
			lq.Filters = append(lq.Filters, flt)
		}
	}
	values := 0
	for _, f := range lq.Filters {
		values += max(1, len(f.List))
	}
	if values > MaxLimit {
		return nil, &QueryError{"filters", fmt.Sprintf("at most %d filter values in all", MaxLimit)}
	}
	if v := params.Get("_limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return nil, &QueryError{"_limit", fmt.Sprintf("must be an integer from 1 to %d", MaxLimit)}
		}
		lq.Limit = n
	}
	if v := params.Get("_offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, &QueryError{"_offset", "must be a non-negative integer"}
		}
		lq.Offset = n
	}
	if err := lq.parseSort(r, params.Get("_sort")); err != nil {
		return nil, err
	}
	if v := params.Get("_after"); v != "" {
		after, err := decodeCursor(lq.Sort, v)
		if err != nil {
			return nil, &QueryError{"_after", err.Error()}
		}
		lq.After = after
	}
	var err error
	if lq.Fields, err = parseFields(r, params.Get("fields")); err != nil {
		return nil, err
	}
	if lq.Include, err = parseInclude(r, params.Get("include")); err != nil {
		return nil, err
	}
	return lq, nil
}

func parseFilter(f *Field, op, v string) (Filter, error) {
	flt := Filter{Field: f, Op: op}
	switch op {
	case "isnull":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return flt, fmt.Errorf("isnull takes true or false")
		}
		flt.Value = b
		return flt, nil
	case "like", "ilike":
		if f.Type != TypeString && f.Type != TypeText && f.Type != TypeEnum {
			return flt, fmt.Errorf("%s applies to string, text and enum fields", op)
		}
		if strings.ContainsRune(v, 0) {
			return flt, errNUL
		}
		if len(v) > maxIndexedBytes {
			// SQLite gives up on long patterns ("too complex").
			return flt, fmt.Errorf("%s takes a pattern of at most %d bytes", op, maxIndexedBytes)
		}
		flt.Value = v
		return flt, nil
	case "in":
		for _, part := range strings.Split(v, ",") {
			cv, err := f.parseQueryValue(part)
			if err != nil {
				return flt, fmt.Errorf("value %q %s", part, err.Error())
			}
			flt.List = append(flt.List, cv)
		}
		if len(flt.List) > MaxLimit {
			return flt, fmt.Errorf("in takes at most %d values", MaxLimit)
		}
		return flt, nil
	}
	if f.Type == TypeJSON {
		return flt, fmt.Errorf("json fields can only be filtered with isnull")
	}
	if f.Type == TypeBoolean && op != "eq" && op != "neq" {
		return flt, fmt.Errorf("boolean fields take eq and neq")
	}
	cv, err := f.parseQueryValue(v)
	if err != nil {
		return flt, fmt.Errorf("value %q %s", v, err.Error())
	}
	flt.Value = cv
	return flt, nil
}

func (lq *ListQuery) parseSort(r *Resource, spec string) error {
	seen := map[string]bool{}
	if spec != "" {
		for _, part := range strings.Split(spec, ",") {
			desc := strings.HasPrefix(part, "-")
			name := strings.TrimPrefix(strings.TrimPrefix(part, "-"), "+")
			f := r.Column(name)
			if f == nil {
				return &QueryError{"_sort", fmt.Sprintf("unknown field %q", name)}
			}
			if !f.Sortable {
				return &QueryError{"_sort", fmt.Sprintf("field %q is not sortable", name)}
			}
			if seen[name] {
				return &QueryError{"_sort", fmt.Sprintf("field %q appears twice", name)}
			}
			seen[name] = true
			lq.Sort = append(lq.Sort, SortKey{Field: f, Desc: desc})
		}
	}
	if !seen[ColID] {
		// id (UUIDv7, so creation order) breaks ties and makes cursors exact.
		lq.Sort = append(lq.Sort, SortKey{Field: r.Column(ColID)})
	}
	return nil
}

func parseFields(r *Resource, spec string) ([]string, error) {
	if spec == "" {
		return nil, nil
	}
	var out []string
	for _, name := range strings.Split(spec, ",") {
		if r.Column(name) == nil {
			return nil, &QueryError{"fields", fmt.Sprintf("unknown field %q", name)}
		}
		out = append(out, name)
	}
	return out, nil
}

func parseInclude(r *Resource, spec string) ([]string, error) {
	if spec == "" {
		return nil, nil
	}
	var out []string
	for _, name := range strings.Split(spec, ",") {
		f := r.Field(name)
		if f == nil || f.Type != TypeRelation {
			return nil, &QueryError{"include", fmt.Sprintf("%q is not a relation field", name)}
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// encodeCursor makes the opaque _after cursor from a row's sort values.
func encodeCursor(sort []SortKey, row Row) string {
	vals := make([]any, len(sort))
	for i, k := range sort {
		vals[i] = row[k.Field.Name]
	}
	b, _ := json.Marshal(vals)
	return base64.RawURLEncoding.EncodeToString(b)
}

// trailingData tells whether anything but white space follows the value
// dec decoded from doc (Decoder.More misses a stray "}" or "]").
func trailingData(doc []byte, dec *json.Decoder) bool {
	return len(bytes.TrimSpace(doc[dec.InputOffset():])) > 0
}

func decodeCursor(sort []SortKey, s string) ([]any, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("malformed cursor")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var vals []any
	if err := dec.Decode(&vals); err != nil || trailingData(raw, dec) || len(vals) != len(sort) {
		return nil, fmt.Errorf("malformed cursor, or one made for another _sort")
	}
	for i, k := range sort {
		v, err := k.Field.coerce(vals[i])
		if err != nil {
			return nil, fmt.Errorf("malformed cursor")
		}
		vals[i] = v
	}
	return vals, nil
}

// sqlBuilder accumulates a WHERE clause with positional parameters.
type sqlBuilder struct {
	kind  database.Kind
	conds []string
	args  []any
}

func (b *sqlBuilder) add(cond string, args ...any) {
	b.conds = append(b.conds, cond)
	b.args = append(b.args, args...)
}

func (b *sqlBuilder) where() string {
	if len(b.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(b.conds, " AND ")
}

func (b *sqlBuilder) param(f *Field, v any) any { return toDB(b.kind, f, v) }

// addFilter renders one filter.
func (b *sqlBuilder) addFilter(flt Filter) {
	col := q(flt.Field.Name)
	switch flt.Op {
	case "isnull":
		if flt.Value.(bool) {
			b.add(col + " IS NULL")
		} else {
			b.add(col + " IS NOT NULL")
		}
	case "in":
		ph := make([]string, len(flt.List))
		args := make([]any, len(flt.List))
		for i, v := range flt.List {
			ph[i] = "?"
			args[i] = b.param(flt.Field, v)
		}
		b.add(col+" IN ("+strings.Join(ph, ", ")+")", args...)
	case "like":
		b.add(col+" LIKE ?", flt.Value)
	case "ilike":
		if b.kind == database.Postgres {
			b.add(col+" ILIKE ?", flt.Value)
		} else {
			b.add("LOWER("+col+") LIKE LOWER(?)", flt.Value)
		}
	case "neq":
		// Hasura's _neq and PocketBase's != both keep rows whose value is null.
		b.add("("+col+" <> ? OR "+col+" IS NULL)", b.param(flt.Field, flt.Value))
	default:
		op := map[string]string{"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[flt.Op]
		b.add(col+" "+op+" ?", b.param(flt.Field, flt.Value))
	}
}

// addAfter renders the keyset condition "row sorts after the cursor" for
// ASC NULLS LAST / DESC NULLS FIRST ordering.
func (b *sqlBuilder) addAfter(sort []SortKey, after []any) {
	var ors []string
	var args []any
	for i := range sort {
		if !sort[i].Desc && after[i] == nil {
			continue // nothing sorts after null ascending
		}
		var ands []string
		var branch []any
		for j := 0; j < i; j++ {
			col := q(sort[j].Field.Name)
			if after[j] == nil {
				ands = append(ands, col+" IS NULL")
			} else {
				ands = append(ands, col+" = ?")
				branch = append(branch, b.param(sort[j].Field, after[j]))
			}
		}
		col := q(sort[i].Field.Name)
		switch {
		case !sort[i].Desc:
			ands = append(ands, "("+col+" > ? OR "+col+" IS NULL)")
			branch = append(branch, b.param(sort[i].Field, after[i]))
		case after[i] == nil:
			ands = append(ands, col+" IS NOT NULL")
		default:
			ands = append(ands, col+" < ?")
			branch = append(branch, b.param(sort[i].Field, after[i]))
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
		args = append(args, branch...)
	}
	if len(ors) == 0 {
		b.add("1 = 0")
		return
	}
	b.add("("+strings.Join(ors, " OR ")+")", args...)
}

func orderBy(sort []SortKey) string {
	parts := make([]string, len(sort))
	for i, k := range sort {
		if k.Desc {
			parts[i] = q(k.Field.Name) + " DESC NULLS FIRST"
		} else {
			parts[i] = q(k.Field.Name) + " ASC NULLS LAST"
		}
	}
	return " ORDER BY " + strings.Join(parts, ", ")
}
