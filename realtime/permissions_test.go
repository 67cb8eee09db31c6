package realtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/auth"
	"github.com/herald-dev/herald/database/dbtest"
)

// TestInMemoryFiltersAgreeWithSQL runs every row filter of the schema both
// ways, on both engines: the rows a caller lists (SQL) are exactly the rows
// the stream's in-memory check lets it see. The rows cover nulls, neq
// (which keeps null), in, and a claim the token lacks (matches nothing).
func TestInMemoryFiltersAgreeWithSQL(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			for _, owner := range []any{"u1", "u2", nil} {
				for _, status := range []any{"draft", "review", "done", nil} {
					createNote(t, env, map[string]any{"title": "t", "owner_id": owner, "status": status})
				}
			}
			// Integers beyond float64's 2^53: equal as floats, not as integers.
			for _, n := range []string{"9007199254740992", "9007199254740993"} {
				r := env.Admin("POST", "/v1/notes", `{"title":"big","n":`+n+`}`)
				require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
			}
			deleted := createNote(t, env, map[string]any{"title": "gone", "owner_id": "u1", "status": "draft"})
			require.Equal(t, http.StatusNoContent, env.Admin("DELETE", "/v1/notes/"+deleted, nil).Status)
			all := list(t, env, apptest.AdminKey)
			require.Len(t, all, 14, "soft-deleted rows are not listed")
			var rows []map[string]any
			r := env.Admin("GET", "/v1/notes?_limit=1000", nil)
			var page struct{ Data []map[string]any }
			dec := json.NewDecoder(bytes.NewReader(r.Body))
			dec.UseNumber() // as the hub decodes events: integers exact
			require.NoError(t, dec.Decode(&page))
			rows = page.Data
			// The soft-deleted row, as an event's old row would carry it.
			gone := map[string]any{"id": deleted, "title": "gone", "owner_id": "u1", "status": "draft", "deleted_at": "2026-12-01T00:00:00Z"}
			rows = append(rows, gone)

			callers := []struct {
				name string
				p    *auth.Principal
				tok  string
			}{
				{"user u1", &auth.Principal{UserID: "u1", Role: "user", Claims: map[string]any{"sub": "u1"}}, token(t, "u1", "user")},
				{"user u2", &auth.Principal{UserID: "u2", Role: "user", Claims: map[string]any{"sub": "u2"}}, token(t, "u2", "user")},
				{"editor (neq done)", &auth.Principal{UserID: "e", Role: "editor", Claims: map[string]any{"sub": "e"}}, token(t, "e", "editor")},
				{"team u1 (in, claim)", &auth.Principal{UserID: "t", Role: "team", Claims: map[string]any{"sub": "t", "team": "u1"}}, token(t, "t", "team", "team", "u1")},
				{"team without the claim", &auth.Principal{UserID: "t2", Role: "team", Claims: map[string]any{"sub": "t2"}}, token(t, "t2", "team")},
				{"big (an integer beyond 2^53)", &auth.Principal{UserID: "b", Role: "big", Claims: map[string]any{"sub": "b"}}, token(t, "b", "big")},
			}
			for _, c := range callers {
				sql := list(t, env, c.tok)
				view, err := env.App.Store().StreamView(auth.WithPrincipal(context.Background(), c.p), "notes", "")
				require.NoError(t, err)
				mem := []string{}
				for _, row := range rows {
					if view.Visible(row) {
						mem = append(mem, row["id"].(string))
					}
				}
				slices.Sort(mem)
				require.Equal(t, sql, mem, "%s: the rows the stream shows are the rows reads show", c.name)
				t.Logf("%s sees %d of %d rows", c.name, len(sql), len(rows))
			}
		})
	}
}

// list returns the sorted ids tok may list.
func list(t *testing.T, env *apptest.Env, tok string) []string {
	t.Helper()
	r := env.Do("GET", "/v1/notes?_limit=1000", nil, tok)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var page struct{ Data []map[string]any }
	require.NoError(t, json.Unmarshal(r.Body, &page))
	ids := []string{}
	for _, row := range page.Data {
		ids = append(ids, row["id"].(string))
	}
	slices.Sort(ids)
	return ids
}

// TestStreamsFollowPermissions: two users each see only their rows, with
// their read fields; a row moving out of a user's view arrives with new
// null, one moving in with old null; a delete of a visible row arrives;
// the token may come as ?access_token=.
func TestStreamsFollowPermissions(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			u1, _ := open(t, env.Server.URL, "/v1/notes/stream", token(t, "u1", "user"))
			u2, resp := open(t, env.Server.URL, "/v1/notes/stream?access_token="+token(t, "u2", "user"), "")
			require.Equal(t, http.StatusOK, resp.StatusCode, "access_token in the query")
			_, resp = open(t, env.Server.URL, "/v1/notes/stream?access_token=not-a-token", "")
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			_, resp = open(t, env.Server.URL, "/v1/tags/stream", token(t, "u1", "user"))
			require.Equal(t, http.StatusForbidden, resp.StatusCode, "no read permission on tags")

			a := createNote(t, env, map[string]any{"title": "mine", "secret": "s", "owner_id": "u1", "status": "draft"})
			f := u1.next(t, 5*time.Second).event(t)
			require.Equal(t, "notes.created", f.EventType)
			require.Equal(t, a, f.Data.New["id"])
			require.NotContains(t, f.Data.New, "secret", "projected to the role's read fields")
			require.NotContains(t, f.Data.New, "status")
			require.NotContains(t, f.Data.Changes.Added, "secret")
			require.Equal(t, map[string]any{"role": "admin"}, f.SessionVariables, "only who did it")

			// Moves from u1 to u2.
			patchNote(t, env, a, map[string]any{"owner_id": "u2"})
			out := u1.next(t, 5*time.Second).event(t)
			require.Equal(t, "notes.updated", out.EventType)
			require.Equal(t, "u1", out.Data.Old["owner_id"])
			require.Nil(t, out.Data.New, "moved out of view: new is null")
			in := u2.next(t, 5*time.Second).event(t)
			require.Nil(t, in.Data.Old, "moved into view: old is null")
			require.Equal(t, "u2", in.Data.New["owner_id"])

			// An update u1 cannot see, then a delete of u2's visible row.
			patchNote(t, env, a, map[string]any{"title": "renamed"})
			require.Equal(t, "renamed", u2.next(t, 5*time.Second).event(t).Data.New["title"])
			require.Equal(t, http.StatusNoContent, env.Admin("DELETE", "/v1/notes/"+a, nil).Status)
			del := u2.next(t, 5*time.Second).event(t)
			require.Equal(t, "notes.deleted", del.EventType)
			require.Nil(t, del.Data.New)
			require.Equal(t, "renamed", del.Data.Old["title"])
			u1.nothing(t, 300*time.Millisecond)
			u2.nothing(t, 100*time.Millisecond)
		})
	}
}

// TestStreamLimits: over the per-caller limit, 429 with Retry-After.
func TestStreamLimits(t *testing.T) {
	env := start(t, dbtest.Kinds[0], func(c *app.Config) { c.SSEMaxPerCaller = 2 })
	tok := token(t, "u1", "user")
	for range 2 {
		_, resp := open(t, env.Server.URL, "/v1/notes/stream", tok)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	_, resp := open(t, env.Server.URL, "/v1/notes/stream", tok)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "5", resp.Header.Get("Retry-After"))
	_, resp = open(t, env.Server.URL, "/v1/notes/stream", token(t, "u2", "user"))
	require.Equal(t, http.StatusOK, resp.StatusCode, "another caller has its own limit")
}
