package database

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

// encodingJSON is what encoding/json writes for v.
func encodingJSON(t testing.TB, v any, escapeHTML bool) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	values := []any{
		nil, true, false, "", "plain", `quote " and \ backslash`, "<b>&amp;</b>", "tab\tnew\nline\r\b\f",
		"\x00\x01\x1f\x7f", "é ü 日本 🎉", "\u2028\u2029", "bad \xff utf8 \xc3", "ends in \xe2\x80",
		0.0, math.Copysign(0, -1), 1.0, -1.5, 42.0, 123.456, 1e20, 1e21, 1.5e21, 1e-6, 1e-7, 1.234e-9,
		-3.4e-12, math.MaxFloat64, math.SmallestNonzeroFloat64, 9007199254740993.0, 0.1 + 0.2,
		int64(0), int64(-7), int64(math.MaxInt64), 12,
		map[string]any{}, map[string]any(nil), []any{}, []any(nil), []string{}, []string(nil), []string{"b", "<a>"},
		map[string]any{"b": 1.0, "a": "x", "A": nil, "é": true, "<k>": []any{1.0, "two", nil, map[string]any{"z": false}}},
		map[string]any{"id": "0190c0de-0000-7000-8000-000000000001", "title": "hello world", "views": 42.0,
			"published": true, "created_at": "2026-12-02T08:00:00.123456Z", "deleted_at": nil,
			"tags": []any{"a", "b"}, "meta": map[string]any{"nested": map[string]any{"deep": 1e-9}}},
	}
	for _, v := range values {
		for _, html := range []bool{true, false} {
			got, ok := AppendJSON([]byte("prefix"), v, html)
			if !ok {
				t.Fatalf("AppendJSON(%#v) refused a value it handles", v)
			}
			if want := append([]byte("prefix"), encodingJSON(t, v, html)...); !bytes.Equal(got, want) {
				t.Errorf("AppendJSON(%#v, html=%v)\n got %s\nwant %s", v, html, got, want)
			}
		}
	}
}

func TestAppendJSONRefusesWhatItDoesNotHandle(t *testing.T) {
	for _, v := range []any{math.NaN(), math.Inf(1), float32(1), struct{}{}, map[string]int{"a": 1},
		map[string]any{"ok": 1.0, "bad": math.Inf(-1)}, []any{"ok", struct{}{}}} {
		if _, ok := AppendJSON(nil, v, true); ok {
			t.Errorf("AppendJSON(%#v) claimed to encode it", v)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a", "<>&", "\u2028", "\xff", "\"\\", "\x00", "日本"} {
		f.Add(s, 1.5)
	}
	f.Fuzz(func(t *testing.T, s string, x float64) {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return
		}
		v := map[string]any{s: s, "x": x, "l": []any{s, x}}
		for _, html := range []bool{true, false} {
			got, ok := AppendJSON(nil, v, html)
			if !ok {
				t.Fatalf("refused %#v", v)
			}
			if want := encodingJSON(t, v, html); !bytes.Equal(got, want) {
				t.Fatalf("AppendJSON(%#v, html=%v)\n got %s\nwant %s", v, html, got, want)
			}
		}
	})
}
