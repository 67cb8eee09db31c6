package events_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/events"
)

// reader is a Reader of plain rules: rows whose owner is owner are
// visible (any row when owner is empty), fields in fields are readable
// (every field when nil), classifications in classes are readable.
type reader struct {
	admin, whole bool
	owner        string
	fields       map[string]bool
	classes      map[string]bool
}

func (r reader) Admin() bool { return r.admin }
func (r reader) Whole() bool { return r.whole }
func (r reader) Visible(row map[string]any) bool {
	return row != nil && (r.owner == "" || row["owner"] == r.owner)
}
func (r reader) Readable(f string) bool { return r.fields == nil || r.fields[f] }
func (r reader) ClassificationReadable(name string) bool {
	return r.classes[name]
}
func (r reader) Project(row map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range row {
		if r.Readable(k) {
			out[k] = v
		}
	}
	return out
}

// TestRedact pins the one redaction that history and streams share,
// independently of resources' permissions.
func TestRedact(t *testing.T) {
	t.Parallel()
	moved := func() *events.Event {
		return &events.Event{EventType: "notes.updated",
			Data: events.Data{Old: map[string]any{"owner": "u1", "title": "a", "secret": "s"},
				New:     map[string]any{"owner": "u2", "title": "b", "secret": "t"},
				Changes: events.Changes{Updated: []string{"owner", "secret", "title"}}},
			SessionVariables: map[string]any{"userId": "u9", "role": "user", "ip": "10.0.0.1"}}
	}
	classified := func() *events.Event {
		e := moved()
		e.Data.Classification = &events.Transition{Name: "hot"}
		e.Data.Changes = events.Changes{} // as classify records them: nil lists
		return e
	}
	u1 := reader{owner: "u1", fields: map[string]bool{"owner": true, "title": true}, classes: map[string]bool{"hot": true}}

	t.Run("a row moving out of view arrives with new null, trimmed", func(t *testing.T) {
		e := moved()
		got, ok := events.Redact(e, u1)
		require.True(t, ok)
		require.Equal(t, map[string]any{"owner": "u1", "title": "a"}, got.Data.Old)
		require.Nil(t, got.Data.New)
		require.Equal(t, events.Changes{Added: []string{}, Updated: []string{"owner", "title"}, Removed: []string{}}, got.Data.Changes)
		require.Equal(t, map[string]any{"userId": "u9", "role": "user"}, got.SessionVariables)
		require.Equal(t, moved(), e, "e is not modified")
	})
	t.Run("neither side visible: not seen", func(t *testing.T) {
		_, ok := events.Redact(moved(), reader{owner: "u3"})
		require.False(t, ok)
	})
	t.Run("whole: unchanged", func(t *testing.T) {
		e := classified()
		got, ok := events.Redact(e, reader{admin: true, whole: true})
		require.True(t, ok)
		require.Equal(t, *e, got, "nil change lists stay nil, session variables whole")
	})
	t.Run("admin narrowed to fields keeps classifications and session variables", func(t *testing.T) {
		got, ok := events.Redact(classified(), reader{admin: true, fields: map[string]bool{"title": true}})
		require.True(t, ok)
		require.Equal(t, map[string]any{"title": "b"}, got.Data.New)
		require.Len(t, got.SessionVariables, 3)
	})
	t.Run("a transition with a hidden side is not seen", func(t *testing.T) {
		_, ok := events.Redact(classified(), u1)
		require.False(t, ok)
	})
	t.Run("a transition of a classification the caller may not read is not seen", func(t *testing.T) {
		all := u1
		all.owner = ""
		got, ok := events.Redact(classified(), all)
		require.True(t, ok)
		require.Equal(t, []string{}, got.Data.Changes.Updated)
		all.classes = nil
		_, ok = events.Redact(classified(), all)
		require.False(t, ok)
	})
	t.Run("RedactAll keeps the seen events in order", func(t *testing.T) {
		a, b, c := moved(), moved(), moved()
		a.ID, b.ID, c.ID = 1, 2, 3
		b.Data.Old["owner"] = "u3"
		got := events.RedactAll([]events.Event{*a, *b, *c}, u1)
		require.Len(t, got, 2)
		require.Equal(t, []int64{1, 3}, []int64{got[0].ID, got[1].ID})
	})
}
