package events_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database/dbtest"
	"github.com/herald-dev/herald/events"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// do sends one request to env as t (not as the test that started env, so
// subtests may call it). body is sent as is when it is a string, JSON
// otherwise; token "" sends no Authorization; headers are name, value pairs.
func do(t testing.TB, env *apptest.Env, method, path string, body any, token string, headers ...string) *apptest.Response {
	t.Helper()
	status, hdr, raw, err := send(clientOf(env), env.Server.URL, method, path, body, token, headers...)
	require.NoError(t, err, "%s %s", method, path)
	return &apptest.Response{Status: status, Header: hdr, Body: raw}
}

// clientOf returns the client for env's server. A Herald running as a
// child process has an Env whose Server holds only its URL.
func clientOf(env *apptest.Env) *http.Client {
	if c := env.Server.Client(); c != nil {
		return c
	}
	return &http.Client{Timeout: time.Minute}
}

// admin sends a request with the admin key.
func admin(t testing.TB, env *apptest.Env, method, path string, body any, headers ...string) *apptest.Response {
	t.Helper()
	return do(t, env, method, path, body, apptest.AdminKey, headers...)
}

// send is apptest.Send with the answer spread out, for goroutines.
func send(client *http.Client, base, method, path string, body any, token string, headers ...string) (int, http.Header, []byte, error) {
	resp, err := apptest.Send(client, base, method, path, body, token, headers...)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.Status, resp.Header, resp.Body, nil
}

// page is the audit API's answer, decoded twice: typed, and raw so tests
// can tell null from [] and a string id from a number.
type page struct {
	Events []events.Event
	Raw    []map[string]any
	Next   *string
}

func decodePage(t testing.TB, body []byte) page {
	t.Helper()
	var typed struct {
		Data []events.Event `json:"data"`
		Meta struct {
			Next *string `json:"next"`
		} `json:"meta"`
	}
	require.NoError(t, json.Unmarshal(body, &typed), "%s", body)
	var raw struct {
		Data []map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &raw), "%s", body)
	require.NotNil(t, typed.Data, "data must be an array, not null: %s", body)
	return page{Events: typed.Data, Raw: raw.Data, Next: typed.Meta.Next}
}

// auditPage answers GET /v1/_events with the given query.
func auditPage(t testing.TB, env *apptest.Env, q url.Values) page {
	t.Helper()
	resp := admin(t, env, "GET", "/v1/_events?"+q.Encode(), nil)
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	return decodePage(t, resp.Body)
}

// eventsAfter pages through every event after the given id, oldest first.
func eventsAfter(t testing.TB, env *apptest.Env, after int64) page {
	t.Helper()
	var all page
	for {
		p := auditPage(t, env, url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {"1000"}})
		all.Events = append(all.Events, p.Events...)
		all.Raw = append(all.Raw, p.Raw...)
		if p.Next == nil {
			return all
		}
		next, err := strconv.ParseInt(*p.Next, 10, 64)
		require.NoError(t, err)
		require.Greater(t, next, after, "meta.next must move forward")
		after = next
	}
}

// lastEventID is the id of the newest event, 0 when there is none.
func lastEventID(t testing.TB, env *apptest.Env) int64 {
	t.Helper()
	all := eventsAfter(t, env, 0)
	if len(all.Events) == 0 {
		return 0
	}
	return all.Events[len(all.Events)-1].ID
}

func types(evs []events.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventType
	}
	return out
}

var decimalRE = regexp.MustCompile(`^[1-9][0-9]*$`)

// checkEnvelope asserts what every event must satisfy, whatever caused it:
// SPEC section 5's shape, and data.changes agreeing with old and new.
func checkEnvelope(t testing.TB, raw map[string]any, e events.Event) {
	t.Helper()
	label := fmt.Sprintf("event %d %s", e.ID, e.EventType)
	id, ok := raw["id"].(string)
	require.True(t, ok, "%s: id must be a JSON string: %v", label, raw["id"])
	require.Regexp(t, decimalRE, id, label)
	u, err := uuid.Parse(e.EventID)
	require.NoError(t, err, "%s: eventId", label)
	require.Equal(t, u.String(), e.EventID, "%s: eventId in canonical form", label)
	require.False(t, e.CreatedAt.IsZero(), label)
	require.WithinDuration(t, time.Now(), e.CreatedAt, 10*time.Minute, "%s: createdAt", label)
	require.Contains(t, raw, "dispatchedAt", label)
	require.Contains(t, raw, "sessionVariables", label)
	require.Contains(t, raw, "traceContext", label)

	data, ok := raw["data"].(map[string]any)
	require.True(t, ok, "%s: data", label)
	require.Contains(t, data, "old", label)
	require.Contains(t, data, "new", label)
	changes, ok := data["changes"].(map[string]any)
	require.True(t, ok, "%s: data.changes", label)
	for _, k := range []string{"added", "updated", "removed"} {
		_, isArray := changes[k].([]any)
		require.True(t, isArray, "%s: changes.%s must be an array, not %v", label, k, changes[k])
	}

	row := e.Data.New
	if row == nil {
		row = e.Data.Old
	}
	require.NotNil(t, row, "%s: old or new", label)
	require.Equal(t, e.ResourceID, row["id"], "%s: resourceId is the row's id", label)
	c := e.Data.Changes
	switch e.EventType {
	case e.ResourceName + ".created":
		require.Nil(t, e.Data.Old, label)
		require.Equal(t, sortedKeys(e.Data.New), c.Added, label)
		require.Empty(t, c.Updated, label)
		require.Empty(t, c.Removed, label)
	case e.ResourceName + ".deleted":
		require.Nil(t, e.Data.New, label)
		require.Equal(t, sortedKeys(e.Data.Old), c.Removed, label)
		require.Empty(t, c.Added, label)
		require.Empty(t, c.Updated, label)
	case e.ResourceName + ".updated":
		require.NotNil(t, e.Data.Old, label)
		require.Equal(t, sortedKeys(e.Data.Old), sortedKeys(e.Data.New), "%s: an update keeps the columns", label)
		var changed []string
		for k, v := range e.Data.New {
			if !reflect.DeepEqual(v, e.Data.Old[k]) {
				changed = append(changed, k)
			}
		}
		slices.Sort(changed)
		require.NotEmpty(t, changed, "%s: an update that changes nothing must not be recorded", label)
		require.Equal(t, changed, c.Updated, label)
		require.Empty(t, c.Added, label)
		require.Empty(t, c.Removed, label)
	default:
		t.Fatalf("%s: unexpected type for resource %q", label, e.ResourceName)
	}
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// without returns a copy of m without the given keys.
func without(m map[string]any, keys ...string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if !slices.Contains(keys, k) {
			out[k] = v
		}
	}
	return out
}
