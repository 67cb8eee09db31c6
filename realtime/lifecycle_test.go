package realtime_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database/dbtest"
)

// TestStreamsEndWhenPermissionsChange: a schema change (an import) ends
// the streams made under the old permissions with a retry hint; one that
// reconnects is checked under the new ones.
func TestStreamsEndWhenPermissionsChange(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			tok := token(t, "u1", "user")
			s, _ := open(t, env.Server.URL, "/v1/notes/stream", tok)
			<-s.frames
			// The user loses read permission on notes.
			schema := strings.Replace(notesSchema, "  - {resource: notes, role: user, action: read", "  - {resource: notes, role: nobody, action: read", 1)
			r := env.Do("POST", "/v1/_registry/import", schema, apptest.AdminKey, "Content-Type", "application/yaml")
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
			var last frame
			for f := range s.frames {
				last = f
				require.Empty(t, f.Event, "no event after the permissions changed")
			}
			require.Equal(t, "2000", last.Retry)
			require.Contains(t, strings.Join(last.Comments, " "), "permissions changed")
			_, resp := open(t, env.Server.URL, "/v1/notes/stream", tok)
			require.Equal(t, http.StatusForbidden, resp.StatusCode, "reconnecting is checked again")
		})
	}
}

// TestStreamEndsWhenTheTokenExpires: no event is sent after the caller's
// token expired; the stream ends with a hint.
func TestStreamEndsWhenTheTokenExpires(t *testing.T) {
	env := start(t, dbtest.Kinds[0])
	s, resp := open(t, env.Server.URL, "/v1/notes/stream", token(t, "u1", "user", time.Now().Add(1500*time.Millisecond)))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	createNote(t, env, map[string]any{"title": "before", "owner_id": "u1"})
	require.Equal(t, "notes.created", s.next(t, 5*time.Second).Event)
	time.Sleep(2 * time.Second)
	createNote(t, env, map[string]any{"title": "after", "owner_id": "u1"})
	var last frame
	for f := range s.frames {
		require.Empty(t, f.Event, "nothing after the token expired")
		last = f
	}
	require.Contains(t, strings.Join(last.Comments, " "), "token expired")
}

// TestClosedStreamsFreeTheirSlot: streams whose clients went away do not
// count against the caller's limit, though nothing was written to them.
func TestClosedStreamsFreeTheirSlot(t *testing.T) {
	env := start(t, dbtest.Kinds[0], func(c *app.Config) { c.SSEMaxPerCaller = 2 })
	tok := token(t, "u1", "user")
	for range 2 {
		s, resp := open(t, env.Server.URL, "/v1/notes/stream", tok)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		<-s.frames
		s.close()
	}
	time.Sleep(100 * time.Millisecond)
	_, resp := open(t, env.Server.URL, "/v1/notes/stream", tok)
	require.Equal(t, http.StatusOK, resp.StatusCode, "the closed streams were reaped at the limit")
}

// TestLastEventIDBeyondTheLog: an id the log never reached (a restored
// database, a stale id) gets a reset, then live events.
func TestLastEventIDBeyondTheLog(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			createNote(t, env, map[string]any{"title": "one"})
			s, resp := open(t, env.Server.URL, "/v1/notes/stream", apptest.AdminKey, "Last-Event-ID", "500000")
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, "reset", s.next(t, 5*time.Second).Event)
			id := createNote(t, env, map[string]any{"title": fmt.Sprint("two")})
			for e := s.next(t, 5*time.Second).event(t); e.ResourceID != id; e = s.next(t, 5*time.Second).event(t) {
				// (the first note may still come: the log's head when the stream began)
			}
		})
	}
}
