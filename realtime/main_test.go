package realtime_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
	"github.com/herald-dev/herald/events"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

const jwtSecret = "realtime-test-secret-0123456789abcdef"

// notesSchema: users read their own notes (owner_id = sub), title and
// body only; status "draft" notes of anyone are readable by role editor.
const notesSchema = `
resources:
  - name: notes
    softDelete: true
    fields:
      - {name: title, type: string, required: true}
      - {name: body, type: text}
      - {name: secret, type: string}
      - {name: owner_id, type: string, filterable: true}
      - {name: status, type: string, filterable: true}
      - {name: n, type: integer}
  - name: tags
    fields:
      - {name: label, type: string, required: true}
permissions:
  - {resource: notes, role: user, action: read, fields: [title, body, owner_id, n],
     filters: [{field: owner_id, operator: eq, claim: sub}]}
  - {resource: notes, role: editor, action: read, filters: [{field: status, operator: neq, value: done}]}
  - {resource: notes, role: team, action: read, filters: [{field: status, operator: in, value: [draft, review]}, {field: owner_id, operator: eq, claim: team}]}
  - {resource: notes, role: big, action: read, filters: [{field: n, operator: eq, value: 9007199254740992}]}
`

func start(t *testing.T, kind database.Kind, modify ...func(*app.Config)) *apptest.Env {
	t.Helper()
	return apptest.Start(t, kind, notesSchema, append([]func(*app.Config){func(c *app.Config) { c.JWTSecret = jwtSecret }}, modify...)...)
}

// token returns an HS256 JWT for sub with role and extra claims.
func token(t testing.TB, sub, role string, extra ...any) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "role": role, "exp": time.Now().Add(time.Hour).Unix()}
	if len(extra) == 1 {
		c["exp"] = extra[0].(time.Time).Unix()
		extra = nil
	}
	for i := 0; i+1 < len(extra); i += 2 {
		c[extra[i].(string)] = extra[i+1]
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(jwtSecret))
	require.NoError(t, err)
	return s
}

// frame is one SSE block.
type frame struct {
	ID, Event, Data, Retry string
	Comments               []string
}

// stream is a real SSE client reading one response.
type stream struct {
	resp   *http.Response
	frames chan frame
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

// open opens a stream at path on base; headers are name, value pairs.
func open(t *testing.T, base, path, tok string, headers ...string) (*stream, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", base+path, nil)
	require.NoError(t, err)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	s := &stream{resp: resp, frames: make(chan frame, 100000), done: make(chan struct{}), cancel: cancel}
	t.Cleanup(s.close)
	if resp.StatusCode != http.StatusOK {
		return s, resp
	}
	go s.read()
	return s, resp
}

func (s *stream) read() {
	defer close(s.done)
	defer close(s.frames)
	r := bufio.NewReaderSize(s.resp.Body, 1<<20)
	var f frame
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			s.err = err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			s.frames <- f
			f = frame{}
		case strings.HasPrefix(line, ":"):
			f.Comments = append(f.Comments, strings.TrimSpace(line[1:]))
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "id":
				f.ID = v
			case "event":
				f.Event = v
			case "data":
				f.Data += v
			case "retry":
				f.Retry = v
			}
		}
	}
}

func (s *stream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// next returns the next frame that carries an event, failing after within.
func (s *stream) next(t *testing.T, within time.Duration) frame {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				t.Fatalf("stream ended: %v", s.err)
			}
			if f.Event != "" {
				return f
			}
		case <-deadline:
			t.Fatalf("no event frame within %s", within)
		}
	}
}

// tryNext is next without failing: false after within.
func (s *stream) tryNext(within time.Duration) (frame, bool) {
	deadline := time.After(within)
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				return f, false
			}
			if f.Event != "" {
				return f, true
			}
		case <-deadline:
			return frame{}, false
		}
	}
}

// nothing asserts that no event frame arrives within d.
func (s *stream) nothing(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				return
			}
			require.Empty(t, f.Event, "unexpected frame %+v", f)
		case <-deadline:
			return
		}
	}
}

// event decodes a frame's data.
func (f frame) event(t *testing.T) events.Event {
	t.Helper()
	var e events.Event
	require.NoError(t, json.Unmarshal([]byte(f.Data), &e), "%s", f.Data)
	require.Equal(t, fmt.Sprint(e.ID), f.ID)
	require.Equal(t, e.EventType, f.Event)
	return e
}

func createNote(t *testing.T, env *apptest.Env, body map[string]any) string {
	t.Helper()
	r := env.Admin("POST", "/v1/notes", body)
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	return r.JSON()["id"].(string)
}

func patchNote(t *testing.T, env *apptest.Env, id string, body map[string]any) {
	t.Helper()
	r := env.Admin("PATCH", "/v1/notes/"+id, body)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
}
