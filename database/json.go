package database

import (
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the JSON encoding of v to dst, byte for byte what
// encoding/json writes (json.Marshal when escapeHTML, an Encoder with
// SetEscapeHTML(false) otherwise, without its newline), and reports
// whether it could. It handles what records and events are made of: nil,
// strings, booleans, float64 and integer numbers, and maps with string
// keys and slices of those; for anything else, or a NaN or infinity, it
// returns false and the caller encodes with encoding/json.
//
// encoding/json reads a map through reflection, which allocates for every
// key and value; a record's row is a map of a few scalars, written twice
// per create (into the event and the answer).
func AppendJSON(dst []byte, v any, escapeHTML bool) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), true
	case string:
		return appendString(dst, x, escapeHTML), true
	case bool:
		return strconv.AppendBool(dst, x), true
	case float64:
		return appendFloat(dst, x)
	case int64:
		return strconv.AppendInt(dst, x, 10), true
	case int:
		return strconv.AppendInt(dst, int64(x), 10), true
	case map[string]any:
		if x == nil {
			return append(dst, "null"...), true
		}
		var buf [16]string
		keys := buf[:0]
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k, escapeHTML)
			dst = append(dst, ':')
			var ok bool
			if dst, ok = AppendJSON(dst, x[k], escapeHTML); !ok {
				return dst, false
			}
		}
		return append(dst, '}'), true
	case []any:
		return appendArray(dst, x, func(dst []byte, e any) ([]byte, bool) { return AppendJSON(dst, e, escapeHTML) })
	case []string:
		return appendArray(dst, x, func(dst []byte, e string) ([]byte, bool) { return appendString(dst, e, escapeHTML), true })
	}
	return dst, false
}

// appendArray writes a JSON array (null for a nil slice) of xs, each
// element written by each.
func appendArray[T any](dst []byte, xs []T, each func([]byte, T) ([]byte, bool)) ([]byte, bool) {
	if xs == nil {
		return append(dst, "null"...), true
	}
	dst = append(dst, '[')
	for i, e := range xs {
		if i > 0 {
			dst = append(dst, ',')
		}
		var ok bool
		if dst, ok = each(dst, e); !ok {
			return dst, false
		}
	}
	return append(dst, ']'), true
}

// appendFloat writes f as encoding/json does: the shortest form that
// reads back as f, in exponent form only below 1e-6 or from 1e21.
func appendFloat(dst []byte, f float64) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, false
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// 1e-07 becomes 1e-7, as encoding/json writes it.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, true
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way encoding/json does:
// control characters, quote and backslash escaped; with escapeHTML also <,
// > and &; invalid UTF-8 as U+FFFD; U+2028 and U+2029 escaped.
func appendString(dst []byte, s string, escapeHTML bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && (!escapeHTML || b != '<' && b != '>' && b != '&') {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
