package resources

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const classifySchema = `
resources:
  - name: people
    fields:
      - {name: name, type: string, required: true}
      - {name: birth, type: date}
      - {name: status, type: enum, enumValues: [draft, active]}
      - {name: valid_until, type: datetime}
      - {name: score, type: number}
      - {name: meta, type: json}
    classifications:
      %s: "%s"
`

func TestClassificationCompileErrors(t *testing.T) {
	for _, tc := range []struct{ name, expr, want string }{
		{"broken", "status == (((", "classification broken of people: ERROR: <input>:1:14: Syntax error"},
		{"typed", "score > 'x'", "found no matching overload for '_>_' applied to '(wrapper(double), string)'"},
		{"notbool", "name", "the expression is string, not bool"},
		{"unknown", "colour == 'red'", "undeclared reference to 'colour'"},
		{"Bad-Name", "true", `classification name "Bad-Name" must match`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSchema([]byte(fmt.Sprintf(classifySchema, tc.name, tc.expr)))
			require.Error(t, err)
			se := err.(*SchemaError)
			require.Len(t, se.Problems, 1)
			require.Equal(t, "resources[0].classifications."+tc.name, se.Problems[0].Field)
			require.Contains(t, se.Problems[0].Message, tc.want)
		})
	}
}

func TestClassificationEvalAndWindows(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		expr    string
		row     map[string]any
		want    bool
		usesNow bool
		windows []Window
	}{
		{"status == 'active' && (valid_until == null || valid_until > now)",
			map[string]any{"status": "active", "valid_until": nil}, true, true, []Window{{"valid_until", 0, 0}}},
		{"status == 'active' && (valid_until == null || valid_until > now)",
			map[string]any{"status": "active", "valid_until": "2026-12-01T11:59:59.000000Z"}, false, true, []Window{{"valid_until", 0, 0}}},
		{"birth <= now - duration('157788h')", map[string]any{"birth": "2008-11-30"}, true, true, []Window{{"birth", -157788 * time.Hour, 0}}},
		{"now > valid_until + duration('1h')", map[string]any{"valid_until": "2026-12-01T10:00:00.000000Z"}, true, true, []Window{{"valid_until", -time.Hour, 0}}},
		{"score > 3", map[string]any{"score": 3.5}, true, false, nil},
		{"score > 3", map[string]any{"score": nil}, false, false, nil}, // an error is false
		{"meta.tier == 'gold'", map[string]any{"meta": map[string]any{"tier": "gold"}}, true, false, nil},
		{"now.getHours() > 10", map[string]any{}, true, true, nil}, // not narrowable
		// Shifts beyond a time.Duration are scanned, not narrowed wrong.
		{"birth != null && birth.addYears(300) <= now", map[string]any{"birth": "1700-01-01"}, true, true, nil},
		{"valid_until != null && valid_until + duration('2000000h') + duration('2000000h') < now", map[string]any{"valid_until": "1500-01-01T00:00:00.000000Z"}, true, true, nil},
		{"birth != null && birth.addYears(18) <= now", map[string]any{"birth": "2008-12-01"}, true, true,
			[]Window{{"birth", -time.Duration(18 * 365.2425 * 24 * float64(time.Hour)), 48 * time.Hour}}},
		{"birth != null && birth.addYears(18) <= now", map[string]any{"birth": "2008-12-02"}, false, true,
			[]Window{{"birth", -time.Duration(18 * 365.2425 * 24 * float64(time.Hour)), 48 * time.Hour}}},
		{"valid_until != null && valid_until < now && now.getDayOfWeek() == 2", map[string]any{"valid_until": "2026-12-01T10:00:00.000000Z"}, true, true, nil},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			sc, err := ParseSchema([]byte(fmt.Sprintf(classifySchema, "c", tc.expr)))
			require.NoError(t, err)
			r := sc.Resource("people")
			cl := r.Classification("c")
			require.NotNil(t, cl)
			row := map[string]any{"id": "x", "name": "n"}
			for k, v := range tc.row {
				row[k] = v
			}
			require.Equal(t, tc.want, cl.Eval(r.Activation(row), now))
			require.Equal(t, tc.usesNow, cl.UsesNow())
			require.Equal(t, tc.windows, cl.Windows())
			require.NotContains(t, cl.Fields(), "now")
		})
	}
}

// TestWindowFieldsAreIndexed: the range query of the time-based
// re-evaluation has an index to use.
func TestWindowFieldsAreIndexed(t *testing.T) {
	sc, err := ParseSchema([]byte(fmt.Sprintf(classifySchema, "c", "valid_until < now")))
	require.NoError(t, err)
	_, ok := wantedIndexes(sc.Resource("people"))[objectName("people", "valid_until", "idx")]
	require.True(t, ok)
}

func TestClassificationFields(t *testing.T) {
	sc, err := ParseSchema([]byte(fmt.Sprintf(classifySchema, "c", "status == 'active' && (valid_until == null || valid_until > now) && meta.x == 1")))
	require.NoError(t, err)
	require.Equal(t, []string{"meta", "status", "valid_until"}, sc.Resource("people").Classification("c").Fields())
}
