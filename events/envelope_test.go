package events_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database/dbtest"
	"github.com/herald-dev/herald/events"
)

// blogSchema has a soft-delete parent (authors) with three kinds of
// children, in this order: notes (setNull), comments (soft-delete,
// cascade), posts (cascade); and a hard-delete resource (labels) that
// stickers refer to with restrict. Stickers also restrict the deletion of
// posts, so a cascade from authors can be refused half-way.
const blogSchema = `
resources:
  - name: authors
    softDelete: true
    fields:
      - {name: name, type: string, required: true, filterable: true, validations: [{rule: minLength, value: 2}]}
      - {name: email, type: string, unique: true}
      - {name: score, type: number}
      - {name: rank, type: integer}
      - {name: active, type: boolean, default: true}
      - {name: tier, type: enum, enumValues: [free, pro], default: free}
      - {name: prefs, type: json}
      - {name: born, type: date}
      - {name: seen_at, type: datetime}
      - {name: ref, type: uuid}
  - name: notes
    fields:
      - {name: author_id, type: relation, relation: {resource: authors, onDelete: setNull}}
      - {name: body, type: text}
  - name: comments
    softDelete: true
    fields:
      - {name: author_id, type: relation, relation: {resource: authors, onDelete: cascade}}
      - {name: body, type: text}
  - name: posts
    fields:
      - {name: author_id, type: relation, required: true, relation: {resource: authors, onDelete: cascade}}
      - {name: title, type: string, required: true}
  - name: labels
    fields:
      - {name: name, type: string, required: true, unique: true}
  - name: stickers
    fields:
      - {name: label_id, type: relation, relation: {resource: labels, onDelete: restrict}}
      - {name: post_id, type: relation, relation: {resource: posts, onDelete: restrict}}
`

// missingID is a well-formed id no record has.
const missingID = "01900000-0000-7000-8000-000000000000"

// step is one request of a scenario, what it must answer and which events
// it must record. Paths and bodies may use {{name}}: the id of a record an
// earlier step saved.
type step struct {
	name    string
	method  string
	path    string
	body    string
	token   string   // "" admin, "-" none, else this bearer token
	headers []string // name, value pairs
	status  int
	// events are the types of the events the step records, in any order;
	// nil means it records none.
	events []string
	// save keeps the answer as recs[save] and its id as {{save}}; a bulk
	// create's answer is kept item by item as save.0, save.1, ...
	save string
	// check runs before save, so r.recs still hold the records as they
	// were before the step.
	check func(t *testing.T, r *run, resp *apptest.Response, evs []events.Event)
	// skip, when set, skips the step with this message.
	skip string
}

// run is a scenario's state.
type run struct {
	env  *apptest.Env
	vars map[string]string
	recs map[string]map[string]any
	last int64 // the newest event id seen so far
}

var varRE = regexp.MustCompile(`\{\{([\w.]+)\}\}`)

func (r *run) sub(s string) string {
	return varRE.ReplaceAllStringFunc(s, func(m string) string { return r.vars[m[2:len(m)-2]] })
}

// runSteps runs the steps in order as subtests and stops at the first that
// fails. Every event a step records is checked against the envelope rules,
// and the step's event types must be exactly the ones it declares.
func runSteps(t *testing.T, env *apptest.Env, steps []step) *run {
	r := &run{env: env, vars: map[string]string{}, recs: map[string]map[string]any{}, last: lastEventID(t, env)}
	runStepsFrom(t, r, steps)
	return r
}

// runStepsFrom continues a scenario with more steps.
func runStepsFrom(t *testing.T, r *run, steps []step) {
	env := r.env
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			if st.skip != "" {
				t.Skip(st.skip)
			}
			token := apptest.AdminKey
			switch st.token {
			case "":
			case "-":
				token = ""
			default:
				token = st.token
			}
			var body any
			if st.body != "" {
				body = r.sub(st.body)
			}
			resp := do(t, env, st.method, r.sub(st.path), body, token, st.headers...)
			require.Equal(t, st.status, resp.Status, "body %s", resp.Body)
			if resp.Status >= 400 {
				require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
			}
			p := eventsAfter(t, env, r.last)
			for i, e := range p.Events {
				require.Greater(t, e.ID, r.last)
				checkEnvelope(t, p.Raw[i], e)
				r.last = e.ID
			}
			require.ElementsMatch(t, st.events, types(p.Events), "events recorded by %s %s", st.method, r.sub(st.path))
			if st.check != nil {
				st.check(t, r, resp, p.Events)
			}
			if st.save != "" {
				var v any
				require.NoError(t, json.Unmarshal(resp.Body, &v))
				if m, ok := v.(map[string]any); ok && m["id"] == nil && m["data"] != nil {
					v = m["data"] // a bulk create's answer
				}
				switch v := v.(type) {
				case map[string]any:
					r.recs[st.save], r.vars[st.save] = v, fmt.Sprint(v["id"])
				case []any:
					for i, item := range v {
						m := item.(map[string]any)
						k := st.save + "." + strconv.Itoa(i)
						r.recs[k], r.vars[k] = m, fmt.Sprint(m["id"])
					}
				}
			}
		})
		if !ok {
			t.FailNow()
		}
	}
}

// consecutive asserts that the events hold consecutive positions, as the
// events of one transaction do when nothing else writes.
func consecutive(t testing.TB, evs []events.Event) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		require.Equal(t, evs[i-1].ID+1, evs[i].ID, "positions %v", ids(evs))
	}
}

func ids(evs []events.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// byType returns the single event of the given type.
func byType(t testing.TB, evs []events.Event, typ string) events.Event {
	t.Helper()
	var found []events.Event
	for _, e := range evs {
		if e.EventType == typ {
			found = append(found, e)
		}
	}
	require.Len(t, found, 1, "events of type %s", typ)
	return found[0]
}

// waitDispatched waits until the relay marked the event dispatched and
// returns it as GET /v1/_events/{eventId} answers it.
func waitDispatched(t testing.TB, env *apptest.Env, eventID string) events.Event {
	t.Helper()
	var got events.Event
	require.Eventually(t, func() bool {
		status, _, body, err := send(clientOf(env), env.Server.URL, "GET", "/v1/_events/"+eventID, nil, apptest.AdminKey)
		if err != nil || status != http.StatusOK {
			return false
		}
		got = events.Event{}
		return json.Unmarshal(body, &got) == nil && got.DispatchedAt != nil
	}, 15*time.Second, 10*time.Millisecond, "event %s never dispatched", eventID)
	return got
}

// created checks a created event against the API's answer to the create.
func created(t *testing.T, resource string, resp *apptest.Response, e events.Event) {
	t.Helper()
	rec := resp.JSON()
	require.Equal(t, resource+".created", e.EventType)
	require.Equal(t, resource, e.ResourceName)
	require.Equal(t, rec["id"], e.ResourceID)
	require.Nil(t, e.Data.Old)
	require.Equal(t, rec, e.Data.New, "the event carries the record exactly as the API answered it")
	require.Equal(t, sortedKeys(rec), e.Data.Changes.Added)
	require.Equal(t, "/v1/"+resource+"/"+e.ResourceID, resp.Header.Get("Location"))
}

// stepCreated is the check of a step that creates one record.
func stepCreated(resource string) func(t *testing.T, r *run, resp *apptest.Response, evs []events.Event) {
	return func(t *testing.T, r *run, resp *apptest.Response, evs []events.Event) {
		created(t, resource, resp, evs[0])
	}
}

func TestEventEnvelope(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, blogSchema)
			start := lastEventID(t, env)
			runSteps(t, env, envelopeSteps())
			t.Run("every event is dispatched", func(t *testing.T) {
				all := eventsAfter(t, env, start)
				require.NotEmpty(t, all.Events)
				for _, e := range all.Events {
					d := waitDispatched(t, env, e.EventID)
					require.False(t, d.DispatchedAt.Before(d.CreatedAt), "event %d dispatched before it was created", e.ID)
				}
			})
		})
	}
}

func envelopeSteps() []step {
	const traceID, parentSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	return []step{
		{name: "create records one created event", method: "POST", path: "/v1/authors", status: 201,
			body: `{"name":"Ada","email":"ada@example.com","score":1.5,"rank":7,"prefs":{"theme":"dark","sizes":[1,2]},` +
				`"born":"1990-02-03","seen_at":"2026-01-02T03:04:05.123456+02:00","ref":"0192f7a4-6b1e-7c3a-9d7e-2f9a1c0b5e11"}`,
			headers: []string{"X-Request-ID", "req-create-ada", "X-Correlation-ID", "corr-ada",
				"traceparent", "00-" + traceID + "-" + parentSpan + "-01", "User-Agent", "events-test/1"},
			events: []string{"authors.created"}, save: "ada",
			check: func(t *testing.T, r *run, resp *apptest.Response, evs []events.Event) {
				e := evs[0]
				created(t, "authors", resp, e)
				rec := resp.JSON()
				require.Nil(t, rec["deleted_at"])
				require.Equal(t, "2026-01-02T01:04:05.123456Z", rec["seen_at"])
				require.Equal(t, map[string]any{"theme": "dark", "sizes": []any{1.0, 2.0}}, rec["prefs"])
				require.Equal(t, "admin", e.SessionVariables["role"])
				require.Equal(t, "events-test/1", e.SessionVariables["userAgent"])
				require.NotEmpty(t, e.SessionVariables["ip"])
				require.Equal(t, "req-create-ada", e.TraceContext.RequestID)
				require.Equal(t, "corr-ada", e.TraceContext.CorrelationID)
				require.Equal(t, traceID, e.TraceContext.TraceID, "traceparent is honoured")
				require.Equal(t, parentSpan, e.TraceContext.ParentSpanID)
				require.Regexp(t, `^[0-9a-f]{16}$`, e.TraceContext.SpanID)

				got := waitDispatched(t, r.env, e.EventID)
				require.NotNil(t, got.DispatchedAt)
				require.False(t, got.DispatchedAt.Before(got.CreatedAt))
				got.DispatchedAt = e.DispatchedAt
				if e.DispatchedAt == nil {
					got.DispatchedAt = nil
				}
				require.Equal(t, e, got, "GET /v1/_events/{eventId} answers the same event")
			}},
		{name: "create with defaults and nulls", method: "POST", path: "/v1/authors", status: 201,
			body: `{"name":"Bo"}`, events: []string{"authors.created"}, save: "bo",
			check: func(t *testing.T, r *run, resp *apptest.Response, evs []events.Event) {
				created(t, "authors", resp, evs[0])
				require.Equal(t, "free", evs[0].Data.New["tier"])
				require.Equal(t, true, evs[0].Data.New["active"])
				require.Contains(t, evs[0].Data.New, "score")
				require.Nil(t, evs[0].Data.New["score"])
				// Without X-Request-ID one is generated, echoed, and recorded;
				// the correlation id defaults to it.
				reqID := resp.Header.Get("X-Request-ID")
				require.NotEmpty(t, reqID)
				require.Equal(t, reqID, evs[0].TraceContext.RequestID)
				require.Equal(t, reqID, evs[0].TraceContext.CorrelationID)
			}},
		{name: "patch one field", method: "PATCH", path: "/v1/authors/{{ada}}", body: `{"score":2.25}`, status: 200,
			events: []string{"authors.updated"}, save: "ada",
			check: func(t *testing.T, r *run, resp *apptest.Response, evs []events.Event) {
				e := evs[0]
				require.Equal(t, r.vars["ada"], e.ResourceID)
				require.Equal(t, []string{"score", "updated_at"}, e.Data.Changes.Updated)
				require.Equal(t, r.recs["ada"], e.Data.Old, "old is the full row before")
				require.Equal(t, resp.JSON(), e.Data.New, "new is the full row after, as the API answered it")
				require.Equal(t, 2.25, e.Data.New["score"])
				require.Greater(t, e.Data.New["updated_at"], e.Data.Old["updated_at"])
			}},
		{name: "patch with the same value records nothing", method: "PATCH", path: "/v1/authors/{{ada}}", body: `{"score":2.25}`, status: 200,
			check: func(t *testing.T, r *run, resp *apptest.Response, _ []events.Event) {
				require.Equal(t, r.recs["ada"], resp.JSON())
				got := admin(t, r.env, "GET", "/v1/authors/"+r.vars["ada"], nil)
				require.Equal(t, http.StatusOK, got.Status)
				require.Equal(t, r.recs["ada"]["updated_at"], got.JSON()["updated_at"], "updated_at is left alone")
				require.Equal(t, r.recs["ada"], got.JSON())
			}},
		{name: "patch with equal values spelled differently records nothing", method: "PATCH", path: "/v1/authors/{{ada}}", status: 200,
			body: `{"name":"Ada","score":2.250,"prefs":{"sizes":[1,2],"theme":"dark"},"seen_at":"2026-01-02T01:04:05.123456Z",` +
				`"ref":"0192F7A4-6B1E-7C3A-9D7E-2F9A1C0B5E11","born":"1990-02-03","tier":"free","active":true}`,
			check: func(t *testing.T, r *run, resp *apptest.Response, _ []events.Event) {
				require.Equal(t, r.recs["ada"], resp.JSON())
			}},
		{name: "put replaces the record", method: "PUT", path: "/v1/authors/{{ada}}", status: 200,
			body: `{"name":"Ada L","email":"ada@example.com","tier":"pro"}`, events: []string{"authors.updated"}, save: "ada",
			check: func(t *testing.T, r *run, resp *apptest.Response, evs []events.Event) {
				e := evs[0]
				require.Equal(t, []string{"born", "name", "prefs", "rank", "ref", "score", "seen_at", "tier", "updated_at"}, e.Data.Changes.Updated)
				require.Equal(t, r.recs["ada"], e.Data.Old)
				require.Equal(t, resp.JSON(), e.Data.New)
				require.Nil(t, e.Data.New["score"])
				require.Equal(t, true, e.Data.New["active"], "absent fields take their default")
			}},
		{name: "put with the same content records nothing", method: "PUT", path: "/v1/authors/{{ada}}", status: 200,
			body: `{"name":"Ada L","email":"ada@example.com","tier":"pro"}`,
			check: func(t *testing.T, r *run, resp *apptest.Response, _ []events.Event) {
				require.Equal(t, r.recs["ada"], resp.JSON())
			}},
		{name: "patch every type to new values", method: "PATCH", path: "/v1/authors/{{ada}}", status: 200,
			body: `{"score":-0.5,"rank":-3,"active":false,"tier":"free","prefs":{"n":[true,null,{"x":"y"}]},"born":"2000-12-31",` +
				`"seen_at":"2026-06-30T23:59:59.999999-05:00","ref":"0192f7a4-6b1e-7c3a-9d7e-2f9a1c0b5e12"}`,
			events: []string{"authors.updated"}, save: "ada",
			check: func(t *testing.T, r *run, resp *apptest.Response, evs []events.Event) {
				e := evs[0]
				require.Equal(t, []string{"active", "born", "prefs", "rank", "ref", "score", "seen_at", "tier", "updated_at"}, e.Data.Changes.Updated)
				require.Equal(t, r.recs["ada"], e.Data.Old)
				require.Equal(t, resp.JSON(), e.Data.New, "values written by an update decode as reads return them")
				require.Equal(t, "2026-07-01T04:59:59.999999Z", e.Data.New["seen_at"])
				require.Equal(t, map[string]any{"n": []any{true, nil, map[string]any{"x": "y"}}}, e.Data.New["prefs"])
				got := admin(t, r.env, "GET", "/v1/authors/"+r.vars["ada"], nil)
				require.Equal(t, got.JSON(), e.Data.New, "and as a later read returns them")
			}},
		{name: "setNull child", method: "POST", path: "/v1/notes", body: `{"author_id":"{{ada}}","body":"remember"}`, status: 201,
			events: []string{"notes.created"}, save: "note", check: stepCreated("notes")},
		{name: "soft-delete cascade child", method: "POST", path: "/v1/comments", body: `{"author_id":"{{ada}}","body":"hi"}`, status: 201,
			events: []string{"comments.created"}, save: "comment", check: stepCreated("comments")},
		{name: "another author's comment", method: "POST", path: "/v1/comments", body: `{"author_id":"{{bo}}","body":"yo"}`, status: 201,
			events: []string{"comments.created"}, save: "bocomment"},
		{name: "cascade child", method: "POST", path: "/v1/posts", body: `{"author_id":"{{ada}}","title":"First"}`, status: 201,
			events: []string{"posts.created"}, save: "post", check: stepCreated("posts")},
		{name: "soft delete cascades in one transaction", method: "DELETE", path: "/v1/authors/{{ada}}", status: 204,
			events: []string{"notes.updated", "comments.deleted", "posts.deleted", "authors.deleted"},
			check: func(t *testing.T, r *run, _ *apptest.Response, evs []events.Event) {
				consecutive(t, evs)
				a := byType(t, evs, "authors.deleted")
				require.Equal(t, r.vars["ada"], a.ResourceID)
				require.Nil(t, a.Data.New, "a soft delete's new is null")
				require.Equal(t, r.recs["ada"], a.Data.Old, "old is the last visible row")
				require.Nil(t, a.Data.Old["deleted_at"])
				require.Equal(t, sortedKeys(r.recs["ada"]), a.Data.Changes.Removed)

				p := byType(t, evs, "posts.deleted")
				require.Equal(t, r.recs["post"], p.Data.Old)
				c := byType(t, evs, "comments.deleted")
				require.Equal(t, r.recs["comment"], c.Data.Old)
				require.Nil(t, c.Data.New)

				n := byType(t, evs, "notes.updated")
				require.Equal(t, r.vars["note"], n.ResourceID)
				require.Equal(t, []string{"author_id", "updated_at"}, n.Data.Changes.Updated)
				require.Equal(t, r.recs["note"], n.Data.Old)
				require.Nil(t, n.Data.New["author_id"])
				require.Equal(t, without(n.Data.Old, "author_id", "updated_at"), without(n.Data.New, "author_id", "updated_at"))
				t.Logf("cascade order: %v", types(evs))
			}},
		{name: "soft-deleted parent is hidden", method: "GET", path: "/v1/authors/{{ada}}", status: 404},
		{name: "cascaded post is gone", method: "GET", path: "/v1/posts/{{post}}", status: 404},
		{name: "cascaded comment is hidden", method: "GET", path: "/v1/comments/{{comment}}", status: 404},
		{name: "other author's comment stays", method: "GET", path: "/v1/comments/{{bocomment}}", status: 200},
		{name: "note kept with the reference cleared", method: "GET", path: "/v1/notes/{{note}}", status: 200, save: "note",
			check: func(t *testing.T, r *run, resp *apptest.Response, _ []events.Event) {
				require.Nil(t, resp.JSON()["author_id"])
			}},
		{name: "soft delete twice", method: "DELETE", path: "/v1/authors/{{ada}}", status: 404},
		{name: "patch a soft-deleted record", method: "PATCH", path: "/v1/authors/{{ada}}", body: `{"score":3}`, status: 404},
		{name: "hard delete of soft-deleted rows records one more deleted event per row", method: "DELETE", path: "/v1/authors/{{ada}}?hard=true", status: 204,
			events: []string{"comments.deleted", "authors.deleted"},
			check: func(t *testing.T, r *run, _ *apptest.Response, evs []events.Event) {
				consecutive(t, evs)
				for _, c := range []struct{ typ, rec string }{{"authors.deleted", "ada"}, {"comments.deleted", "comment"}} {
					e := byType(t, evs, c.typ)
					require.Equal(t, r.vars[c.rec], e.ResourceID)
					require.Nil(t, e.Data.New)
					require.NotNil(t, e.Data.Old["deleted_at"], "%s: old is the soft-deleted row as stored", c.typ)
					require.Equal(t, without(r.recs[c.rec], "deleted_at"), without(e.Data.Old, "deleted_at"))
				}
				// Each row's whole life: at most one event after its soft delete.
				h := history(t, r.env, "authors", r.vars["ada"], url.Values{})
				require.Equal(t, []string{"authors.deleted", "authors.deleted", "authors.updated", "authors.updated", "authors.updated", "authors.created"}, types(h.Events))
				h = history(t, r.env, "comments", r.vars["comment"], url.Values{})
				require.Equal(t, []string{"comments.deleted", "comments.deleted", "comments.created"}, types(h.Events))
			}},
		{name: "hard delete twice", method: "DELETE", path: "/v1/authors/{{ada}}?hard=true", status: 404},
		{name: "hard delete of a visible soft-delete row", method: "DELETE", path: "/v1/authors/{{bo}}?hard=true", status: 204,
			events: []string{"comments.deleted", "authors.deleted"},
			check: func(t *testing.T, r *run, _ *apptest.Response, evs []events.Event) {
				consecutive(t, evs)
				a := byType(t, evs, "authors.deleted")
				require.Equal(t, r.recs["bo"], a.Data.Old)
				require.Nil(t, a.Data.New)
				require.Equal(t, r.recs["bocomment"], byType(t, evs, "comments.deleted").Data.Old)
			}},
		{name: "hard-deleted child is gone", method: "GET", path: "/v1/comments/{{bocomment}}", status: 404},
		{name: "hard-delete resource: create", method: "POST", path: "/v1/labels", body: `{"name":"red"}`, status: 201,
			events: []string{"labels.created"}, save: "red", check: stepCreated("labels")},
		{name: "hard-delete resource: delete", method: "DELETE", path: "/v1/labels/{{red}}", status: 204,
			events: []string{"labels.deleted"},
			check: func(t *testing.T, r *run, _ *apptest.Response, evs []events.Event) {
				e := evs[0]
				require.Equal(t, r.vars["red"], e.ResourceID)
				require.Nil(t, e.Data.New)
				require.Equal(t, r.recs["red"], e.Data.Old)
				require.NotContains(t, e.Data.Old, "deleted_at")
				require.Equal(t, []string{"created_at", "id", "name", "updated_at"}, e.Data.Changes.Removed)
			}},
		{name: "bulk create of three", method: "POST", path: "/v1/labels", status: 201,
			body:   `[{"name":"a"},{"name":"b"},{"name":"c"}]`,
			events: []string{"labels.created", "labels.created", "labels.created"}, save: "bulk",
			check: func(t *testing.T, r *run, resp *apptest.Response, evs []events.Event) {
				consecutive(t, evs)
				var bulk struct{ Data []map[string]any }
				require.NoError(t, json.Unmarshal(resp.Body, &bulk))
				recs := bulk.Data
				require.Len(t, recs, 3)
				for i, e := range evs {
					require.Equal(t, recs[i]["id"], e.ResourceID, "events follow the order of the array")
					require.Equal(t, recs[i], e.Data.New)
				}
			}},
	}
}

// history answers GET /v1/{resource}/{id}/history.
func history(t testing.TB, env *apptest.Env, resource, id string, q url.Values) page {
	t.Helper()
	resp := admin(t, env, "GET", "/v1/"+resource+"/"+id+"/history?"+q.Encode(), nil)
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	return decodePage(t, resp.Body)
}

func TestFailedWritesRecordNothing(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, blogSchema)
			count := func() int {
				return len(auditPage(t, env, url.Values{"limit": {"1000"}}).Events)
			}
			r := runSteps(t, env, []step{
				{name: "author", method: "POST", path: "/v1/authors", body: `{"name":"Ada","email":"ada@example.com"}`, status: 201,
					events: []string{"authors.created"}, save: "ada"},
				{name: "second author", method: "POST", path: "/v1/authors", body: `{"name":"Bo","email":"bo@example.com"}`, status: 201,
					events: []string{"authors.created"}, save: "bo"},
				{name: "note", method: "POST", path: "/v1/notes", body: `{"author_id":"{{ada}}"}`, status: 201,
					events: []string{"notes.created"}, save: "note"},
				{name: "post", method: "POST", path: "/v1/posts", body: `{"author_id":"{{ada}}","title":"t"}`, status: 201,
					events: []string{"posts.created"}, save: "post"},
				{name: "label", method: "POST", path: "/v1/labels", body: `{"name":"red"}`, status: 201,
					events: []string{"labels.created"}, save: "red"},
				{name: "sticker", method: "POST", path: "/v1/stickers", body: `{"label_id":"{{red}}","post_id":"{{post}}"}`, status: 201,
					events: []string{"stickers.created"}},
			})
			before := count()
			require.Equal(t, 6, before)
			failures := []step{
				{name: "validation", method: "POST", path: "/v1/authors", body: `{"name":"A","email":"x@example.com"}`, status: 422},
				{name: "unknown field", method: "POST", path: "/v1/authors", body: `{"name":"Abe","colour":"red"}`, status: 422},
				{name: "malformed json", method: "POST", path: "/v1/authors", body: `{"name":`, status: 400},
				{name: "unique violation", method: "POST", path: "/v1/authors", body: `{"name":"Ann","email":"ada@example.com"}`, status: 409},
				{name: "foreign key to a missing record", method: "POST", path: "/v1/posts", body: `{"author_id":"` + missingID + `","title":"t"}`, status: 422},
				{name: "restrict refuses", method: "DELETE", path: "/v1/labels/{{red}}", status: 409},
				{name: "restrict refuses a hard delete", method: "DELETE", path: "/v1/labels/{{red}}?hard=true", status: 409},
				{name: "cascade refused half-way after a set-null", method: "DELETE", path: "/v1/authors/{{ada}}", status: 409},
				{name: "bulk with an invalid item", method: "POST", path: "/v1/labels", body: `[{"name":"ok"},{}]`, status: 422},
				{name: "bulk with a unique violation after a good item", method: "POST", path: "/v1/labels", body: `[{"name":"fresh"},{"name":"red"}]`, status: 409},
				{name: "bulk with a duplicate inside", method: "POST", path: "/v1/labels", body: `[{"name":"dup"},{"name":"dup"}]`, status: 409},
				{name: "bulk with a missing foreign key after a good item", method: "POST", path: "/v1/posts",
					body: `[{"author_id":"{{ada}}","title":"ok"},{"author_id":"` + missingID + `","title":"bad"}]`, status: 422},
				{name: "patch unique violation", method: "PATCH", path: "/v1/authors/{{bo}}", body: `{"email":"ada@example.com"}`, status: 409},
				{name: "patch foreign key to a missing record", method: "PATCH", path: "/v1/posts/{{post}}", body: `{"author_id":"` + missingID + `"}`, status: 422},
				{name: "patch validation", method: "PATCH", path: "/v1/authors/{{bo}}", body: `{"name":"B"}`, status: 422},
				{name: "patch missing record", method: "PATCH", path: "/v1/authors/" + missingID, body: `{"name":"Bob"}`, status: 404},
				{name: "put missing required", method: "PUT", path: "/v1/authors/{{bo}}", body: `{"email":"bo@example.com"}`, status: 422},
				{name: "delete missing record", method: "DELETE", path: "/v1/authors/" + missingID, status: 404},
				{name: "no credentials", method: "POST", path: "/v1/labels", body: `{"name":"anon"}`, token: "-", status: 401},
				{name: "bad credentials", method: "POST", path: "/v1/labels", body: `{"name":"anon"}`, token: "wrong-token", status: 401},
			}
			for i := range failures {
				failures[i].events = nil
			}
			runStepsFrom(t, r, failures)
			require.Equal(t, before, count(), "failed writes recorded events")

			// Nothing of the failures stayed: the refused cascade left the
			// set-null child as it was, and a good write still records.
			runStepsFrom(t, r, []step{
				{name: "note still refers to its author", method: "GET", path: "/v1/notes/{{note}}", status: 200,
					check: func(t *testing.T, r *run, resp *apptest.Response, _ []events.Event) {
						require.Equal(t, r.recs["note"], resp.JSON())
					}},
				{name: "author still visible", method: "GET", path: "/v1/authors/{{ada}}", status: 200},
				{name: "the good item of the refused bulk was not kept", method: "POST", path: "/v1/labels", body: `{"name":"fresh"}`, status: 201,
					events: []string{"labels.created"}},
				{name: "bo unchanged", method: "GET", path: "/v1/authors/{{bo}}", status: 200,
					check: func(t *testing.T, r *run, resp *apptest.Response, _ []events.Event) {
						require.Equal(t, r.recs["bo"], resp.JSON())
					}},
			})
			require.Equal(t, before+1, count())
		})
	}
}

func TestAuditQueries(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, blogSchema)
			r := runSteps(t, env, []step{
				{name: "e1", method: "POST", path: "/v1/authors", body: `{"name":"Ada"}`, status: 201, events: []string{"authors.created"}, save: "ada"},
				{name: "e2", method: "POST", path: "/v1/authors", body: `{"name":"Bo"}`, status: 201, events: []string{"authors.created"}, save: "bo"},
				{name: "e3", method: "PATCH", path: "/v1/authors/{{ada}}", body: `{"score":1}`, status: 200, events: []string{"authors.updated"}},
				{name: "e4", method: "POST", path: "/v1/posts", body: `{"author_id":"{{ada}}","title":"t"}`, status: 201, events: []string{"posts.created"}, save: "post"},
				{name: "e5", method: "DELETE", path: "/v1/posts/{{post}}", status: 204, events: []string{"posts.deleted"}},
				{name: "e6 has ada's id in another resource", method: "POST", path: "/v1/labels", body: `{"id":"{{ada}}","name":"same id"}`, status: 201,
					events: []string{"labels.created"}},
			})
			all := eventsAfter(t, env, 0).Events
			require.Len(t, all, 6)
			e := func(n ...int) []events.Event {
				out := []events.Event{}
				for _, i := range n {
					out = append(out, all[i-1])
				}
				return out
			}
			id := func(n int) string { return strconv.FormatInt(all[n-1].ID, 10) }
			at := func(n int) string { return all[n-1].CreatedAt.Format(time.RFC3339Nano) }
			for i := 1; i < len(all); i++ {
				require.True(t, all[i].CreatedAt.After(all[i-1].CreatedAt), "createdAt follows the log (needed by the since/until cases)")
			}
			ada := r.vars["ada"]

			for _, c := range []struct {
				name  string
				query url.Values
				want  []events.Event
			}{
				{"no filter", url.Values{}, all},
				{"resource", url.Values{"resource": {"authors"}}, e(1, 2, 3)},
				{"other resource", url.Values{"resource": {"posts"}}, e(4, 5)},
				{"unknown resource", url.Values{"resource": {"nope"}}, e()},
				{"full type", url.Values{"type": {"authors.created"}}, e(1, 2)},
				{"short type", url.Values{"type": {"created"}}, e(1, 2, 4, 6)},
				{"short type deleted", url.Values{"type": {"deleted"}}, e(5)},
				{"short type updated", url.Values{"type": {"updated"}}, e(3)},
				{"type matches whole words", url.Values{"type": {"ated"}}, e()},
				{"full type with _ is literal", url.Values{"type": {"authors_created"}}, e()},
				{"resourceId spans resources", url.Values{"resourceId": {ada}}, e(1, 3, 6)},
				{"resource and resourceId", url.Values{"resource": {"authors"}, "resourceId": {ada}}, e(1, 3)},
				{"resource and short type", url.Values{"resource": {"authors"}, "type": {"created"}}, e(1, 2)},
				{"userId", url.Values{"userId": {"nobody"}}, e()},
				{"after", url.Values{"after": {id(2)}}, e(3, 4, 5, 6)},
				{"after zero", url.Values{"after": {"0"}}, all},
				{"after the last", url.Values{"after": {id(6)}}, e()},
				{"after and type", url.Values{"after": {id(1)}, "type": {"created"}}, e(2, 4, 6)},
				{"since is inclusive", url.Values{"since": {at(3)}}, e(3, 4, 5, 6)},
				{"until is exclusive", url.Values{"until": {at(3)}}, e(1, 2)},
				{"since and until", url.Values{"since": {at(2)}, "until": {at(4)}}, e(2, 3)},
				{"since in another zone", url.Values{"since": {all[2].CreatedAt.In(time.FixedZone("", 2*3600)).Format(time.RFC3339Nano)}}, e(3, 4, 5, 6)},
				{"since in the future", url.Values{"since": {time.Now().Add(time.Hour).Format(time.RFC3339)}}, e()},
				{"limit", url.Values{"limit": {"2"}}, e(1, 2)},
			} {
				t.Run(c.name, func(t *testing.T) {
					got := auditPage(t, env, c.query).Events
					require.Equal(t, ids(c.want), ids(got))
				})
			}

			t.Run("short type is a literal, not a pattern", func(t *testing.T) {
				for _, typ := range []string{"cr_ated", "%", "_"} {
					require.Empty(t, auditPage(t, env, url.Values{"type": {typ}}).Events, "type=%s", typ)
				}
			})

			t.Run("paging with limit and meta.next", func(t *testing.T) {
				for _, q := range []url.Values{{}, {"type": {"created"}}, {"resource": {"authors"}}} {
					want := auditPage(t, env, q).Events
					for _, limit := range []int{1, 2, 4, 6} {
						var got []events.Event
						after := ""
						for pages := 0; ; pages++ {
							require.Less(t, pages, 10, "paging does not end")
							pq := url.Values{"limit": {strconv.Itoa(limit)}}
							for k, v := range q {
								pq[k] = v
							}
							if after != "" {
								pq.Set("after", after)
							}
							p := auditPage(t, env, pq)
							require.LessOrEqual(t, len(p.Events), limit)
							got = append(got, p.Events...)
							if p.Next == nil {
								break
							}
							require.Len(t, p.Events, limit, "only a full page has a next cursor")
							require.Equal(t, strconv.FormatInt(p.Events[len(p.Events)-1].ID, 10), *p.Next)
							after = *p.Next
						}
						require.Equal(t, ids(want), ids(got), "query %v, limit %d", q, limit)
					}
				}
			})

			t.Run("one event by eventId", func(t *testing.T) {
				for _, want := range all {
					resp := admin(t, env, "GET", "/v1/_events/"+want.EventID, nil)
					require.Equal(t, http.StatusOK, resp.Status)
					var got events.Event
					require.NoError(t, json.Unmarshal(resp.Body, &got))
					require.Equal(t, want.ID, got.ID)
					require.Equal(t, want.Data, got.Data)
				}
			})

			for _, c := range []struct {
				name, path, token string
				status            int
				param             string
			}{
				{"after not a number", "/v1/_events?after=x", apptest.AdminKey, 400, "after"},
				{"after negative", "/v1/_events?after=-1", apptest.AdminKey, 400, "after"},
				{"limit zero", "/v1/_events?limit=0", apptest.AdminKey, 400, "limit"},
				{"limit too large", "/v1/_events?limit=1001", apptest.AdminKey, 400, "limit"},
				{"limit not a number", "/v1/_events?limit=ten", apptest.AdminKey, 400, "limit"},
				{"since garbage", "/v1/_events?since=garbage", apptest.AdminKey, 400, "since"},
				{"since without a time", "/v1/_events?since=2026-01-02", apptest.AdminKey, 400, "since"},
				{"until garbage", "/v1/_events?until=2026-13-01T00:00:00Z", apptest.AdminKey, 400, "until"},
				{"unknown eventId", "/v1/_events/" + uuid.NewString(), apptest.AdminKey, 404, ""},
				{"malformed eventId", "/v1/_events/not-an-id", apptest.AdminKey, 404, ""},
				{"list without credentials", "/v1/_events", "", 401, ""},
				{"get without credentials", "/v1/_events/" + all[0].EventID, "", 401, ""},
				{"list with a bad token", "/v1/_events", "not-the-key", 401, ""},
				{"history without credentials", "/v1/authors/" + ada + "/history", "", 401, ""},
				{"history before not a number", "/v1/authors/" + ada + "/history?before=x", apptest.AdminKey, 400, "before"},
				{"history limit zero", "/v1/authors/" + ada + "/history?limit=0", apptest.AdminKey, 400, "limit"},
				{"history of an unknown resource", "/v1/nope/" + ada + "/history", apptest.AdminKey, 404, ""},
			} {
				t.Run(c.name, func(t *testing.T) {
					resp := do(t, env, "GET", c.path, nil, c.token)
					require.Equal(t, c.status, resp.Status, "%s", resp.Body)
					require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
					p := resp.JSON()
					require.Equal(t, float64(c.status), p["status"])
					require.NotEmpty(t, p["type"])
					require.NotEmpty(t, p["title"])
					if c.param != "" {
						require.Contains(t, p["detail"], c.param, "the problem names the parameter")
					}
				})
			}
		})
	}
}

func TestRecordHistory(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, blogSchema)
			r := runSteps(t, env, []step{
				{name: "e1", method: "POST", path: "/v1/authors", body: `{"name":"Ada"}`, status: 201, events: []string{"authors.created"}, save: "ada"},
				{name: "e2", method: "POST", path: "/v1/authors", body: `{"name":"Bo"}`, status: 201, events: []string{"authors.created"}, save: "bo"},
				{name: "e3", method: "PATCH", path: "/v1/authors/{{ada}}", body: `{"score":1}`, status: 200, events: []string{"authors.updated"}},
				{name: "e4", method: "PATCH", path: "/v1/authors/{{bo}}", body: `{"score":1}`, status: 200, events: []string{"authors.updated"}},
				{name: "e5", method: "PATCH", path: "/v1/authors/{{ada}}", body: `{"score":2}`, status: 200, events: []string{"authors.updated"}},
				{name: "e6", method: "PATCH", path: "/v1/authors/{{ada}}", body: `{"score":3}`, status: 200, events: []string{"authors.updated"}},
				{name: "e7 has ada's id in another resource", method: "POST", path: "/v1/labels", body: `{"id":"{{ada}}","name":"same id"}`, status: 201,
					events: []string{"labels.created"}},
			})
			all := eventsAfter(t, env, 0).Events
			require.Len(t, all, 7)
			e := func(n ...int) []int64 {
				out := []int64{}
				for _, i := range n {
					out = append(out, all[i-1].ID)
				}
				return out
			}
			ada, bo := r.vars["ada"], r.vars["bo"]

			h := history(t, env, "authors", ada, url.Values{})
			require.Equal(t, e(6, 5, 3, 1), ids(h.Events), "newest first, only this record's events")
			require.Nil(t, h.Next)
			for _, ev := range h.Events {
				require.Equal(t, "authors", ev.ResourceName)
				require.Equal(t, ada, ev.ResourceID)
			}
			require.Equal(t, []any{3.0, 2.0, 1.0, nil}, []any{h.Events[0].Data.New["score"], h.Events[1].Data.New["score"],
				h.Events[2].Data.New["score"], h.Events[3].Data.New["score"]})
			require.Equal(t, e(4, 2), ids(history(t, env, "authors", bo, url.Values{}).Events))
			require.Equal(t, e(7), ids(history(t, env, "labels", ada, url.Values{}).Events))
			require.Empty(t, history(t, env, "authors", missingID, url.Values{}).Events)
			require.Equal(t, e(3, 1), ids(history(t, env, "authors", ada, url.Values{"before": {strconv.FormatInt(all[4].ID, 10)}}).Events))
			require.Empty(t, history(t, env, "authors", ada, url.Values{"before": {strconv.FormatInt(all[0].ID, 10)}}).Events)

			for _, limit := range []int{1, 2, 3, 4} {
				var got []int64
				before := ""
				for pages := 0; ; pages++ {
					require.Less(t, pages, 10, "paging does not end")
					q := url.Values{"limit": {strconv.Itoa(limit)}}
					if before != "" {
						q.Set("before", before)
					}
					p := history(t, env, "authors", ada, q)
					require.LessOrEqual(t, len(p.Events), limit)
					got = append(got, ids(p.Events)...)
					if p.Next == nil {
						break
					}
					require.Equal(t, strconv.FormatInt(p.Events[len(p.Events)-1].ID, 10), *p.Next)
					before = *p.Next
				}
				require.Equal(t, e(6, 5, 3, 1), got, "limit %d", limit)
			}
		})
	}
}
