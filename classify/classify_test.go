package classify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/classify"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

const schema = `
resources:
  - name: customers
    softDelete: true
    fields:
      - {name: name, type: string, required: true}
      - {name: tier, type: enum, enumValues: [free, pro]}
    classifications:
      is_pro: "tier == 'pro'"
  - name: orders
    fields:
      - {name: customer_id, type: relation, relation: {resource: customers, onDelete: cascade}}
      - {name: amount, type: number}
      - {name: due, type: datetime}
    classifications:
      big: "amount != null && amount >= 100"
      overdue: "due != null && due < now"
`

func start(t *testing.T, kind database.Kind, modify ...func(*app.Config)) *apptest.Env {
	t.Helper()
	return apptest.Start(t, kind, schema, modify...)
}

// transition is one classified event, reduced.
type transition struct {
	Resource, ID, Name string
	From, To           *bool
	Role               string
	Old, New           map[string]any
}

func (tr transition) String() string {
	s := func(b *bool) string {
		if b == nil {
			return "null"
		}
		return fmt.Sprint(*b)
	}
	return fmt.Sprintf("%s %s %s->%s", tr.Resource, tr.Name, s(tr.From), s(tr.To))
}

// transitions reads the classified events of the audit log, oldest first.
func transitions(t *testing.T, env *apptest.Env, query string) []transition {
	t.Helper()
	var out []transition
	after := ""
	for {
		r := env.Admin("GET", "/v1/_events?limit=1000&type=classified"+query+after, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		var page struct {
			Data []struct {
				ID           string `json:"id"`
				ResourceName string `json:"resourceName"`
				ResourceID   string `json:"resourceId"`
				Data         struct {
					Old, New       map[string]any
					Classification struct {
						Name     string
						From, To *bool
					}
				}
				SessionVariables map[string]any
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(r.Body, &page))
		for _, e := range page.Data {
			role, _ := e.SessionVariables["role"].(string)
			out = append(out, transition{e.ResourceName, e.ResourceID, e.Data.Classification.Name,
				e.Data.Classification.From, e.Data.Classification.To, role, e.Data.Old, e.Data.New})
		}
		if len(page.Data) < 1000 {
			return out
		}
		after = "&after=" + page.Data[len(page.Data)-1].ID
	}
}

func b(v bool) *bool { return &v }

func create(t *testing.T, env *apptest.Env, resource string, body map[string]any) string {
	t.Helper()
	r := env.Admin("POST", "/v1/"+resource, body)
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	return r.JSON()["id"].(string)
}

func patch(t *testing.T, env *apptest.Env, resource, id string, body map[string]any) {
	t.Helper()
	r := env.Admin("PATCH", "/v1/"+resource+"/"+id, body)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
}

// TestWriteTransitions: every write path moves outcomes in its own
// transaction: create (null to x), update, no-op update, soft delete,
// hard delete, cascade, and a rolled-back write that records nothing.
func TestWriteTransitions(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			c := create(t, env, "customers", map[string]any{"name": "Ada", "tier": "free"})
			patch(t, env, "customers", c, map[string]any{"tier": "pro"})
			patch(t, env, "customers", c, map[string]any{"name": "Ada L."}) // stays pro: nothing
			patch(t, env, "customers", c, map[string]any{"tier": nil})      // null tier: false
			patch(t, env, "customers", c, map[string]any{"tier": "pro"})
			o := create(t, env, "orders", map[string]any{"customer_id": c, "amount": 150})
			patch(t, env, "orders", o, map[string]any{"amount": 20})
			// A bulk create whose second item fails rolls back: no outcome
			// and no transition of the first.
			r := env.Admin("POST", "/v1/orders", []map[string]any{{"customer_id": c, "amount": 500}, {"customer_id": "nope"}})
			require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s", r.Body)
			require.Equal(t, http.StatusNoContent, env.Admin("DELETE", "/v1/customers/"+c, nil).Status)

			got := transitions(t, env, "")
			want := []string{
				"customers is_pro null->false",
				"customers is_pro false->true",
				"customers is_pro true->false",
				"customers is_pro false->true",
				"orders big null->true",
				"orders overdue null->false",
				"orders big true->false",
				// The soft delete of the customer cascades to its order.
			}
			var names []string
			for _, tr := range got {
				names = append(names, tr.String())
			}
			require.Equal(t, want, names[:len(want)])
			require.ElementsMatch(t, []string{"customers is_pro true->null", "orders big false->null", "orders overdue false->null"},
				names[len(want):])
			first := got[0]
			require.Equal(t, c, first.ID)
			require.Nil(t, first.Old)
			require.Equal(t, "free", first.New["tier"])
			require.Equal(t, "admin", first.Role)
			last := got[len(got)-1]
			require.Nil(t, last.New)
			require.NotNil(t, last.Old)
		})
	}
}

// TestTimeTransitionWithoutWrite: an outcome that depends on now moves
// when its time comes, with no write, with role system; a second run
// finds nothing more to do.
func TestTimeTransitionWithoutWrite(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind, func(c *app.Config) { c.ClassifyInterval = 50 * time.Millisecond })
			due := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
			o := create(t, env, "orders", map[string]any{"amount": 1, "due": due})
			later := create(t, env, "orders", map[string]any{"amount": 1, "due": time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)})
			require.Eventually(t, func() bool {
				return len(transitions(t, env, "&resourceId="+o)) == 3
			}, 10*time.Second, 50*time.Millisecond)
			got := transitions(t, env, "&resourceId="+o)
			require.Equal(t, "orders overdue false->true", got[2].String())
			require.Equal(t, "system", got[2].Role)
			require.Equal(t, got[2].Old, got[2].New, "the row did not change")
			time.Sleep(300 * time.Millisecond) // several more runs
			require.Len(t, transitions(t, env, "&resourceId="+o), 3, "no repeated transition")
			require.Len(t, transitions(t, env, "&resourceId="+later), 2, "the other order is not due")
		})
	}
}

// chains checks that each row's transitions of one classification form a
// chain (each from is the previous to, starting at null) and returns the
// last outcome per row.
func chains(t *testing.T, trs []transition, name string) map[string]*bool {
	t.Helper()
	last := map[string]*bool{}
	seen := map[string]bool{}
	for _, tr := range trs {
		if tr.Name != name {
			continue
		}
		prev := last[tr.ID]
		if !seen[tr.ID] {
			prev = nil
		}
		require.Equal(t, fmt.Sprint(deref(prev)), fmt.Sprint(deref(tr.From)), "chain of %s broken at %s", tr.ID, tr)
		require.NotEqual(t, fmt.Sprint(deref(tr.From)), fmt.Sprint(deref(tr.To)), "a transition that changes nothing: %s", tr)
		last[tr.ID], seen[tr.ID] = tr.To, true
	}
	return last
}

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

// TestChangedDefinitionWhileWriting: a changed expression is re-evaluated
// on every row in the background while writers keep changing rows; each
// row's transitions stay one chain and end at the new expression's
// outcome. A removed classification then emits x to null for every row.
func TestChangedDefinitionWhileWriting(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind, func(c *app.Config) {
				c.ClassifyInterval, c.ClassifyBatchSize = 50*time.Millisecond, 40
			})
			const n = 600
			rows := make([]map[string]any, n)
			for i := range rows {
				rows[i] = map[string]any{"amount": i % 200}
			}
			r := env.Admin("POST", "/v1/orders", rows)
			require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
			var created struct {
				Data []map[string]any `json:"data"`
			}
			require.NoError(t, json.Unmarshal(r.Body, &created))
			ids := make([]string, n)
			for i, row := range created.Data {
				ids[i] = row["id"].(string)
			}

			stop := make(chan struct{})
			done := make(chan error)
			var writes atomic.Int64
			go func() { // writers move amounts while the backfill runs
				k := 0
				for {
					select {
					case <-stop:
						done <- nil
						return
					default:
					}
					id := ids[(k*37)%n]
					resp, err := apptest.Send(env.Server.Client(), env.Server.URL, "PATCH", "/v1/orders/"+id,
						map[string]any{"amount": (k * 13) % 200}, apptest.AdminKey)
					if err != nil || resp.Status != http.StatusOK {
						done <- fmt.Errorf("patch: %v %v", err, resp)
						return
					}
					k++
					writes.Add(1)
				}
			}()
			changed := schemaWith("amount != null && amount >= 50")
			r = env.Admin("POST", "/v1/_registry/import", changed)
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
			require.Eventually(t, func() bool {
				var state string
				// The new expression's state: until the job picks the change
				// up, the old one's "ready" is still there.
				env.App.DB().Read.Raw("SELECT state FROM herald_classifications WHERE resource_name = 'orders' AND name = 'big' AND expression = ?",
					"amount != null && amount >= 50").Scan(&state)
				return state == "ready"
			}, 30*time.Second, 20*time.Millisecond)
			close(stop)
			require.NoError(t, <-done)
			require.Positive(t, writes.Load(), "writers ran during the re-evaluation")

			final := chains(t, transitions(t, env, "&resource=orders"), "big")
			var amounts []struct {
				ID     string
				Amount float64
			}
			require.NoError(t, env.App.DB().Read.Raw("SELECT id, amount FROM orders").Scan(&amounts).Error)
			require.Len(t, amounts, n)
			moved := 0
			for _, row := range amounts {
				if row.Amount >= 50 != (deref(final[row.ID]) == true) {
					var stored []map[string]any
					env.App.DB().Read.Raw("SELECT * FROM herald_outcomes WHERE row_id = ?", row.ID).Scan(&stored)
					for _, e := range auditEvents(t, env, "&resourceId="+row.ID) {
						t.Logf("event %v %v %v sv=%v", e["id"], e["eventType"], e["data"], e["sessionVariables"])
					}
					t.Logf("stored outcomes: %v", stored)
				}
				require.Equal(t, row.Amount >= 50, deref(final[row.ID]), "row %v", row)
				if row.Amount >= 50 && row.Amount < 100 {
					moved++
				}
			}
			require.Positive(t, moved, "some rows changed class with the definition")

			// Removing the classification retires every outcome.
			r = env.Admin("POST", "/v1/_registry/import", schemaWith(""))
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
			require.Eventually(t, func() bool {
				var left int64
				env.App.DB().Read.Raw("SELECT count(*) FROM herald_outcomes WHERE classification = 'big'").Scan(&left)
				return left == 0
			}, 30*time.Second, 20*time.Millisecond)
			final = chains(t, transitions(t, env, "&resource=orders"), "big")
			for _, id := range ids {
				require.Nil(t, final[id], "row %s ends at null", id)
			}
		})
	}
}

// schemaWith is the test schema with orders.big set to expr (removed when
// expr is empty).
func schemaWith(expr string) string {
	s := schema
	old := `      big: "amount != null && amount >= 100"` + "\n"
	if expr == "" {
		return replaceOnce(s, old, "")
	}
	return replaceOnce(s, old, `      big: "`+expr+`"`+"\n")
}

func replaceOnce(s, old, new string) string {
	if !strings.Contains(s, old) {
		panic("schemaWith: not found")
	}
	return strings.Replace(s, old, new, 1)
}

// TestBadExpressionRefused: an expression that does not compile is
// refused at start-up and at import, naming resource and classification,
// and the import changes nothing.
func TestBadExpressionRefused(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			before := env.Admin("GET", "/v1/_registry", nil).Body
			r := env.Admin("POST", "/v1/_registry/import", schemaWith("amount == ((("))
			require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s", r.Body)
			require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"))
			var p struct {
				Errors []struct{ Field, Rule, Message string }
			}
			require.NoError(t, json.Unmarshal(r.Body, &p))
			require.Len(t, p.Errors, 1, "%s", r.Body)
			require.Equal(t, "resources[1].classifications.big", p.Errors[0].Field)
			require.Equal(t, "expression", p.Errors[0].Rule)
			require.Contains(t, p.Errors[0].Message, "classification big of orders: ERROR: <input>:1:14: Syntax error")
			require.Equal(t, string(before), string(env.Admin("GET", "/v1/_registry", nil).Body))

			cfg := env.Config
			cfg.DatabaseURL = dbtest.URL(t, kind)
			require.NoError(t, os.WriteFile(cfg.Schema, []byte(schemaWith("amount > 'x'")), 0o600))
			_, err := app.New(context.Background(), cfg, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: io.Discard})
			require.ErrorContains(t, err, "resources[1].classifications.big: classification big of orders: ERROR")
		})
	}
}

// TestOneInstanceRunsTheJob: the lease lets one classifier at a time run
// the background job, and passes to another when its holder stops
// renewing it.
func TestOneInstanceRunsTheJob(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			var mu sync.Mutex
			now := time.Now().Add(time.Hour) // past the lease of env's own job

			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			cfg := classify.Config{Interval: time.Second, Now: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			a, err := classify.New(cfg, env.App.Store())
			require.NoError(t, err)
			b, err := classify.New(cfg, env.App.Store())
			require.NoError(t, err)
			ctx := context.Background()
			require.True(t, leader(t, a, ctx))
			require.False(t, leader(t, b, ctx), "a holds the lease")
			require.True(t, leader(t, a, ctx), "a renews")
			mu.Lock()
			now = now.Add(10 * time.Second) // a's lease (2 intervals + 5 s) lapses
			mu.Unlock()
			require.True(t, leader(t, b, ctx), "b takes over")
			require.False(t, leader(t, a, ctx))
		})
	}
}

func leader(t *testing.T, c *classify.Classifier, ctx context.Context) bool {
	t.Helper()
	ok, err := c.Acquire(ctx)
	require.NoError(t, err)
	return ok
}

// TestTwoInstancesOneTransitionEach: two instances on one PostgreSQL,
// both with the job running; each due row moves once.
func TestTwoInstancesOneTransitionEach(t *testing.T) {
	t.Parallel()
	a := start(t, database.Postgres, func(c *app.Config) { c.ClassifyInterval = 30 * time.Millisecond })
	bEnv := apptest.StartConfig(t, database.Postgres, a.Config)
	due := time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
	rows := make([]map[string]any, 50)
	for i := range rows {
		rows[i] = map[string]any{"amount": 1, "due": due}
	}
	r := bEnv.Admin("POST", "/v1/orders", rows)
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	count := func() int {
		n := 0
		for _, tr := range transitions(t, a, "&resource=orders") {
			if tr.Name == "overdue" && deref(tr.To) == true {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return count() == 50 }, 10*time.Second, 50*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, 50, count())
	chains(t, transitions(t, a, "&resource=orders"), "overdue")
}

func auditEvents(t *testing.T, env *apptest.Env, query string) []map[string]any {
	t.Helper()
	r := env.Admin("GET", "/v1/_events?limit=1000"+query, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var page struct{ Data []map[string]any }
	require.NoError(t, json.Unmarshal(r.Body, &page))
	return page.Data
}

// TestStoredExpressionThatNoLongerCompiles: a registry written by a
// version that did not type-check expressions (the demo once had
// "timestamp(birth_date + 'T00:00:00Z') ...") still starts: the bad
// classification is inactive, and a schema file that corrects it applies.
func TestStoredExpressionThatNoLongerCompiles(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := start(t, kind)
			db := env.App.DB().Write
			var doc string
			require.NoError(t, db.Raw("SELECT schema FROM herald_registry WHERE id = 1").Scan(&doc).Error)
			bad := strings.Replace(doc, `amount != null \u0026\u0026 amount \u003e= 100`, `amount + 'x' \u003e 1`, 1)
			if bad == doc {
				bad = strings.Replace(doc, `amount != null && amount >= 100`, `amount + 'x' > 1`, 1)
			}
			require.NotEqual(t, doc, bad, "%s", doc)
			require.NoError(t, db.Exec("UPDATE herald_registry SET schema = ? WHERE id = 1", bad).Error)
			cfg := env.Config
			env.Stop()

			// Without a schema file: the stored schema serves, big inactive.
			noFile := cfg
			noFile.Schema, noFile.SchemaExplicit = filepath.Join(t.TempDir(), "none.yaml"), false
			again := apptest.StartConfig(t, kind, noFile)
			require.Nil(t, again.App.Store().Schema().Resource("orders").Classification("big"))
			require.NotNil(t, again.App.Store().Schema().Resource("orders").Classification("overdue"))
			create(t, again, "orders", map[string]any{"amount": 500})
			again.Stop()

			// The file corrects it: it applies, and big is evaluated again.
			require.NoError(t, os.WriteFile(cfg.Schema, []byte(schemaWith("amount != null && amount >= 200")), 0o600))
			fixed := apptest.StartConfig(t, kind, cfg)
			require.NotNil(t, fixed.App.Store().Schema().Resource("orders").Classification("big"))
			create(t, fixed, "orders", map[string]any{"amount": 500})
		})
	}
}

// TestScanWhileCreating: a classification the job re-evaluates by
// scanning every row, every 10 ms, while 8 clients create rows: each row
// gets exactly one null -> x (the job's transactions are never shared
// with the creates, whose hook would count a row the job already did).
func TestScanWhileCreating(t *testing.T) {
	scanning := strings.Replace(schema, `      overdue: "due != null && due < now"`,
		`      overdue: "now.getFullYear() > 2000 && amount != null && amount > 1"`, 1)
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, scanning, func(c *app.Config) { c.ClassifyInterval = 10 * time.Millisecond })
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := range 40 {
						r, err := apptest.Send(env.Server.Client(), env.Server.URL, "POST", "/v1/orders",
							map[string]any{"amount": (w*40 + i) % 5}, apptest.AdminKey)
						if err != nil || r.Status != http.StatusCreated {
							t.Errorf("create: %v %v", err, r)
							return
						}
					}
				})
			}
			wg.Wait()
			time.Sleep(100 * time.Millisecond) // a few more scans
			trs := transitions(t, env, "&resource=orders")
			final := chains(t, trs, "overdue")
			require.Len(t, final, 320)
		})
	}
}
