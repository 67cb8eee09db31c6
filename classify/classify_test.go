package classify_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
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
