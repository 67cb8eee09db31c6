package events

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMarshalDataMatchesEncodingJSON: an event's data is written by hand
// (database.AppendJSON), byte for byte as json.Marshal writes it, falling
// back to json.Marshal for what that does not handle.
func TestMarshalDataMatchesEncodingJSON(t *testing.T) {
	yes, no := true, false
	row := map[string]any{"id": "a", "title": "<b>hi</b> & \u2028", "views": 42.0, "ratio": 1e-7,
		"published": true, "deleted_at": nil, "meta": map[string]any{"k": []any{1.0, "x"}}}
	for _, d := range []Data{
		{Old: nil, New: row, Changes: Changes{Added: []string{"id", "title"}, Updated: []string{}, Removed: []string{}}},
		{Old: row, New: nil, Changes: Changes{Added: []string{}, Updated: []string{}, Removed: []string{"id"}}},
		{Old: row, New: map[string]any{"id": "a", "views": 43.0}, Changes: Changes{Updated: []string{"views"}}},
		{Old: row, New: row, Changes: Changes{Added: []string{}, Updated: []string{}, Removed: []string{}},
			Classification: &Transition{Name: "big", From: &no, To: &yes}},
		{Old: map[string]any{"when": time.Unix(0, 0).UTC()}, New: nil},
	} {
		want, err := json.Marshal(d)
		require.NoError(t, err)
		got, err := marshalData(d)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
}
