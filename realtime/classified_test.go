package realtime_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database/dbtest"
)

// TestClassifiedEventsOnStreamsAndHistory: classified events reach
// streams and record history like any other, but only callers who may
// read every field a classification reads see its events (the outcome of
// "secret != null" would tell a user about a field hidden from them).
func TestClassifiedEventsOnStreamsAndHistory(t *testing.T) {
	schema := strings.Replace(notesSchema, "      - {name: n, type: integer}\n",
		"      - {name: n, type: integer}\n    classifications:\n      long_title: \"size(title) > 5\"\n      secretive: \"secret != null\"\n", 1)
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, schema, func(c *app.Config) { c.JWTSecret = jwtSecret })
			admin, _ := open(t, env.Server.URL, "/v1/notes/stream", apptest.AdminKey)
			user, _ := open(t, env.Server.URL, "/v1/notes/stream", token(t, "u1", "user"))
			time.Sleep(200 * time.Millisecond)
			id := createNote(t, env, map[string]any{"title": "a long title", "owner_id": "u1", "secret": "s"})

			var adminSaw []string
			for range 3 { // created, and one classified per classification
				e := admin.next(t, 5*time.Second).event(t)
				name := ""
				if e.Data.Classification != nil {
					name = " " + e.Data.Classification.Name
				}
				adminSaw = append(adminSaw, e.EventType+name)
			}
			require.ElementsMatch(t, []string{"notes.created", "notes.classified long_title", "notes.classified secretive"}, adminSaw)

			var userSaw []string
			for range 2 {
				e := user.next(t, 5*time.Second).event(t)
				name := ""
				if e.Data.Classification != nil {
					name = " " + e.Data.Classification.Name
					require.Nil(t, e.Data.Old)
					require.NotContains(t, e.Data.New, "secret")
				}
				userSaw = append(userSaw, e.EventType+name)
			}
			require.ElementsMatch(t, []string{"notes.created", "notes.classified long_title"}, userSaw)
			select {
			case f := <-user.frames:
				require.Empty(t, f.Event, "the user gets nothing more: %s", f.Data)
			case <-time.After(300 * time.Millisecond):
			}

			// A row moved into the user's view: the update arrives (old
			// null), the transition does not (its from was the hidden side).
			hidden := createNote(t, env, map[string]any{"title": "short", "owner_id": "u2"})
			patchNote(t, env, hidden, map[string]any{"owner_id": "u1", "title": "now a long title"})
			e := user.next(t, 5*time.Second).event(t)
			require.Equal(t, "notes.updated", e.EventType)
			require.Nil(t, e.Data.Old)
			select {
			case f := <-user.frames:
				require.Empty(t, f.Event, "no transition from the hidden side: %s", f.Data)
			case <-time.After(300 * time.Millisecond):
			}

			r := env.Do("GET", "/v1/notes/"+id+"/history", nil, token(t, "u1", "user"))
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
			var page struct {
				Data []struct {
					EventType string `json:"eventType"`
					Data      struct {
						Classification *struct{ Name string }
					}
				}
			}
			require.NoError(t, json.Unmarshal(r.Body, &page))
			var hist []string
			for _, e := range page.Data {
				if e.Data.Classification != nil {
					hist = append(hist, e.EventType+" "+e.Data.Classification.Name)
				} else {
					hist = append(hist, e.EventType)
				}
			}
			require.ElementsMatch(t, []string{"notes.created", "notes.classified long_title"}, hist)
		})
	}
}
