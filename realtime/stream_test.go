package realtime_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/database/dbtest"
)

// TestFramesAndHeaders: the stream's headers, the retry hint first, one
// frame per event with id, event and data equal to the audit log's event,
// and the events and fields parameters.
func TestFramesAndHeaders(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			s, resp := open(t, env.Server.URL, "/v1/notes/stream", "test-admin-key-0123456789")
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
			require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
			require.Equal(t, "no", resp.Header.Get("X-Accel-Buffering"))
			first := <-s.frames
			require.Equal(t, "2000", first.Retry, "the first frame carries the retry hint")

			only, _ := open(t, env.Server.URL, "/v1/notes/stream?events=updated&fields=title", "test-admin-key-0123456789")
			id := createNote(t, env, map[string]any{"title": "a", "body": "b", "owner_id": "u1"})
			env.Admin("POST", "/v1/tags", map[string]any{"label": "not a note"})
			patchNote(t, env, id, map[string]any{"title": "a2", "body": "b2"})

			f := s.next(t, 5*time.Second)
			require.Equal(t, "notes.created", f.Event)
			got := f.event(t)
			r := env.Admin("GET", "/v1/_events/"+got.EventID, nil)
			require.Equal(t, http.StatusOK, r.Status)
			var logged map[string]any
			require.NoError(t, json.Unmarshal(r.Body, &logged))
			var sent map[string]any
			require.NoError(t, json.Unmarshal([]byte(f.Data), &sent))
			delete(logged, "dispatchedAt")
			delete(sent, "dispatchedAt")
			require.Equal(t, logged, sent, "the frame's data is the event of the audit log")
			require.Equal(t, "notes.updated", s.next(t, 5*time.Second).Event)
			s.nothing(t, 300*time.Millisecond)

			u := only.next(t, 5*time.Second).event(t)
			require.Equal(t, "notes.updated", u.EventType, "events=updated skips the create")
			require.Equal(t, map[string]any{"title": "a2"}, u.Data.New, "fields=title projects")
			require.Equal(t, map[string]any{"title": "a"}, u.Data.Old)
			require.Equal(t, []string{"title"}, u.Data.Changes.Updated)
			only.nothing(t, 300*time.Millisecond)

			for _, p := range []string{"/v1/notes/stream?events=exploded", "/v1/notes/stream?fields=nope", "/v1/notes/stream?colour=red",
				"/v1/notes/stream?lastEventId=x"} {
				r := env.Admin("GET", p, nil)
				require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", p, r.Body)
			}
			require.Equal(t, http.StatusNotFound, env.Admin("GET", "/v1/nope/stream", nil).Status)
			require.Equal(t, http.StatusUnauthorized, env.Do("GET", "/v1/notes/stream", nil, "").Status)
		})
	}
}
