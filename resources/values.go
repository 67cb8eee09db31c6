package resources

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/google/uuid"

	"github.com/herald-dev/herald/database"
)

// TimeFormat is how datetimes are written in responses, events and SQLite:
// UTC with fixed microseconds, so that text order is time order.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// DateFormat is the civil date format.
const DateFormat = "2006-01-02"

// coerce turns a decoded JSON value (numbers as json.Number or float64) into
// the field's canonical Go value: string, int64, float64, bool, time.Time
// (UTC, microseconds) or, for json, a value decoded without json.Number.
// nil stays nil.
func (f *Field) coerce(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch f.Type {
	case TypeString, TypeText:
		s, ok := v.(string)
		if !ok {
			return nil, errors.New("must be a string")
		}
		return s, nil
	case TypeEnum:
		s, ok := v.(string)
		if !ok || !slices.Contains(f.EnumValues, s) {
			return nil, fmt.Errorf("must be one of %s", strings.Join(f.EnumValues, ", "))
		}
		return s, nil
	case TypeUUID, TypeRelation:
		s, ok := v.(string)
		if !ok {
			return nil, errors.New("must be a UUID string")
		}
		u, err := uuid.Parse(s)
		if err != nil || len(s) != 36 {
			return nil, errors.New("must be a UUID string")
		}
		return u.String(), nil
	case TypeInteger:
		n, ok := toFloat(v)
		if !ok || n != math.Trunc(n) || math.Abs(n) > 1<<53 {
			if num, isNum := v.(json.Number); isNum {
				if i, err := num.Int64(); err == nil {
					return i, nil
				}
			}
			return nil, errors.New("must be an integer")
		}
		if num, isNum := v.(json.Number); isNum {
			if i, err := num.Int64(); err == nil {
				return i, nil
			}
		}
		return int64(n), nil
	case TypeNumber:
		n, ok := toFloat(v)
		if !ok || math.IsNaN(n) || math.IsInf(n, 0) {
			return nil, errors.New("must be a number")
		}
		return n, nil
	case TypeBoolean:
		b, ok := v.(bool)
		if !ok {
			return nil, errors.New("must be a boolean")
		}
		return b, nil
	case TypeDatetime:
		switch t := v.(type) {
		case time.Time:
			return t.UTC().Truncate(time.Microsecond), nil
		case string:
			p, err := time.Parse(time.RFC3339Nano, t)
			if err != nil {
				return nil, errors.New("must be an RFC 3339 date-time such as 2026-01-02T15:04:05Z")
			}
			return p.UTC().Truncate(time.Microsecond), nil
		}
		return nil, errors.New("must be an RFC 3339 date-time string")
	case TypeDate:
		s, ok := v.(string)
		if !ok {
			return nil, errors.New("must be a date string YYYY-MM-DD")
		}
		if _, err := time.Parse(DateFormat, s); err != nil {
			return nil, errors.New("must be a date string YYYY-MM-DD")
		}
		return s, nil
	case TypeJSON:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, errors.New("must be JSON")
		}
		var out any
		_ = json.Unmarshal(b, &out)
		return out, nil
	}
	return nil, fmt.Errorf("unsupported type %q", f.Type)
}

// Values PostgreSQL cannot store are refused on both engines, so that the
// same input gets the same answer on either:
//   - NUL (U+0000) in a string or JSON value (PostgreSQL text and jsonb
//     cannot hold it: SQLSTATE 22021, 22P05);
//   - years outside 1 to 9999;
//   - more than maxIndexedBytes in a unique, sortable or filterable string
//     (a B-tree index entry is at most about 2,700 bytes on PostgreSQL).
//
// These apply to new input only (bodies and filters, coerceInput): a
// value stored before the rule existed still reads back, and a write that
// does not touch it still succeeds.
var (
	errNUL  = errors.New("must not contain the NUL character (U+0000)")
	errYear = errors.New("must have a year from 1 to 9999")
)

const maxIndexedBytes = 2000

// coerceInput is coerce for a value a client sends, with the limits above.
func (f *Field) coerceInput(v any) (any, error) {
	cv, err := f.coerce(v)
	if err != nil || cv == nil {
		return cv, err
	}
	switch t := cv.(type) {
	case string:
		if strings.ContainsRune(t, 0) {
			return nil, errNUL
		}
		switch f.Type {
		case TypeString, TypeText:
			if len(t) > maxIndexedBytes && (f.Unique || f.Sortable || f.Filterable) {
				return nil, fmt.Errorf("must be at most %d bytes in a unique, sortable or filterable field", maxIndexedBytes)
			}
		case TypeDate:
			if d, err := time.Parse(DateFormat, t); err == nil && d.Year() < 1 {
				return nil, errYear
			}
		}
	case time.Time:
		if y := t.Year(); y < 1 || y > 9999 {
			return nil, errYear
		}
	}
	if f.Type == TypeJSON && hasNUL(cv) {
		return nil, errNUL
	}
	return cv, nil
}

// hasNUL tells whether a decoded JSON value has a NUL in a string or key.
func hasNUL(v any) bool {
	switch t := v.(type) {
	case string:
		return strings.ContainsRune(t, 0)
	case []any:
		for _, x := range t {
			if hasNUL(x) {
				return true
			}
		}
	case map[string]any:
		for k, x := range t {
			if strings.ContainsRune(k, 0) || hasNUL(x) {
				return true
			}
		}
	}
	return false
}

// toFloat reads a JSON number in any of its decoded forms.
func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, !math.IsNaN(n) && !math.IsInf(n, 0)
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	}
	return 0, false
}

// parseQueryValue reads a filter value from a query string as the field's
// canonical value.
func (f *Field) parseQueryValue(s string) (any, error) {
	switch f.Type {
	case TypeInteger, TypeNumber:
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return nil, fmt.Errorf("must be a number")
		}
		return f.coerceInput(json.Number(s))
	case TypeBoolean:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, errors.New("must be true or false")
		}
		return b, nil
	}
	return f.coerceInput(s)
}

// Output turns a canonical value into its JSON response form.
func Output(v any) any {
	if t, ok := v.(time.Time); ok {
		return t.UTC().Format(TimeFormat)
	}
	return v
}

// fromDB reads a scanned database value back into the canonical value. The
// drivers differ (SQLite returns text and integers, PostgreSQL typed values),
// and both end in the same canonical form.
func (f *Field) fromDB(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if b, ok := v.([]byte); ok {
		v = string(b)
	}
	switch f.Type {
	case TypeInteger:
		switch n := v.(type) {
		case int64:
			return n, nil
		case int32:
			return int64(n), nil
		case float64:
			return int64(n), nil
		case string:
			return strconv.ParseInt(n, 10, 64)
		}
	case TypeNumber:
		switch n := v.(type) {
		case float64:
			return n, nil
		case float32:
			return float64(n), nil
		case int64:
			return float64(n), nil
		case string:
			return strconv.ParseFloat(n, 64)
		}
	case TypeBoolean:
		switch b := v.(type) {
		case bool:
			return b, nil
		case int64:
			return b != 0, nil
		case string:
			return strconv.ParseBool(b)
		}
	case TypeDatetime:
		switch t := v.(type) {
		case time.Time:
			return t.UTC().Truncate(time.Microsecond), nil
		case string:
			p, err := time.Parse(time.RFC3339Nano, t)
			if err != nil {
				return nil, fmt.Errorf("resources: bad stored datetime %q: %w", t, err)
			}
			return p.UTC(), nil
		}
	case TypeDate:
		switch t := v.(type) {
		case time.Time:
			return t.Format(DateFormat), nil
		case string:
			return t, nil
		}
	case TypeJSON:
		s, ok := v.(string)
		if !ok {
			return v, nil
		}
		var out any
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			return nil, fmt.Errorf("resources: bad stored json: %w", err)
		}
		return out, nil
	default:
		switch s := v.(type) {
		case string:
			return s, nil
		case [16]byte:
			return uuid.UUID(s).String(), nil
		}
	}
	return nil, fmt.Errorf("resources: unexpected %T for %s field %s", v, f.Type, f.Name)
}

// validate applies the field's validation rules to a canonical, non-nil
// value and returns the problems found.
func (f *Field) validate(v any, check *validator.Validate) []Problem {
	var probs []Problem
	bad := func(rule, format string, args ...any) {
		probs = append(probs, Problem{Field: f.Name, Rule: rule, Message: fmt.Sprintf(format, args...)})
	}
	for _, rule := range f.Validations {
		limit, _ := toFloat(rule.Value)
		switch rule.Rule {
		case "min":
			if n, _ := toFloat(v); n < limit {
				bad("min", "must be at least %v", rule.Value)
			}
		case "max":
			if n, _ := toFloat(v); n > limit {
				bad("max", "must be at most %v", rule.Value)
			}
		case "minLength":
			if s, _ := v.(string); float64(len([]rune(s))) < limit {
				bad("minLength", "must be at least %v characters", rule.Value)
			}
		case "maxLength":
			if s, _ := v.(string); float64(len([]rune(s))) > limit {
				bad("maxLength", "must be at most %v characters", rule.Value)
			}
		case "pattern":
			if s, _ := v.(string); f.pattern != nil && !f.pattern.MatchString(s) {
				bad("pattern", "must match %v", rule.Value)
			}
		case "email":
			if check.Var(v, "email") != nil {
				bad("email", "must be an email address")
			}
		case "url":
			if check.Var(v, "url") != nil {
				bad("url", "must be a URL")
			}
		case "integer":
			if n, _ := toFloat(v); n != math.Trunc(n) {
				bad("integer", "must be a whole number")
			}
		}
	}
	return probs
}

// toDB turns a canonical value into the parameter the engine stores.
func toDB(kind database.Kind, f *Field, v any) any {
	if v == nil {
		return nil
	}
	switch f.Type {
	case TypeJSON:
		b, _ := json.Marshal(v)
		return string(b)
	case TypeDatetime:
		if t, ok := v.(time.Time); ok && kind == database.SQLite {
			return t.UTC().Format(TimeFormat)
		}
	case TypeBoolean:
		if b, ok := v.(bool); ok && kind == database.SQLite {
			if b {
				return int64(1)
			}
			return int64(0)
		}
	}
	return v
}

// jsonEqual compares two values by their JSON encoding (json fields).
func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
