package webhooks_test

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
)

const shopSchema = `
resources:
  - name: customers
    fields:
      - {name: name, type: string, required: true}
      - {name: tier, type: enum, enumValues: [free, pro]}
    classifications:
      is_pro: "tier == 'pro'"
  - name: orders
    fields:
      - {name: customer_id, type: relation, relation: {resource: customers, onDelete: cascade}}
      - {name: total, type: number}
  - name: tags
    fields:
      - {name: label, type: string, required: true}
  - name: order_tags
    fields:
      - {name: order_id, type: relation, required: true, relation: {resource: orders, onDelete: cascade}}
      - {name: tag_id, type: relation, required: true, relation: {resource: tags, onDelete: cascade}}
  - name: transfers
    fields:
      - {name: from_id, type: relation, relation: {resource: customers, onDelete: setNull}}
      - {name: to_id, type: relation, relation: {resource: customers, onDelete: setNull}}
`

func startShop(t *testing.T, kind database.Kind) *apptest.Env {
	t.Helper()
	return apptest.Start(t, kind, shopSchema, func(c *app.Config) { c.WebhookAllowPrivate = true })
}

func add(t *testing.T, env *apptest.Env, resource string, body any) string {
	t.Helper()
	r := env.Admin("POST", "/v1/"+resource, body)
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	if _, ok := body.(map[string]any); ok {
		return r.JSON()["id"].(string)
	}
	return ""
}

func edit(t *testing.T, env *apptest.Env, resource, id string, body map[string]any) {
	t.Helper()
	r := env.Admin("PATCH", "/v1/"+resource+"/"+id, body)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
}

func remove(t *testing.T, env *apptest.Env, resource, id string) {
	t.Helper()
	require.Equal(t, http.StatusNoContent, env.Admin("DELETE", "/v1/"+resource+"/"+id, nil).Status)
}

// TestClassificationWebhookTransitions: one webhook per (from, to) pair,
// including null and any; each gets exactly the transitions it names.
func TestClassificationWebhookTransitions(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := startShop(t, kind)
			rc := newReceiver(t, nil)
			outcomes := []string{"true", "false", "null", "any"}
			hooks := map[string][2]string{}
			for _, from := range outcomes {
				for _, to := range outcomes {
					if from == to && from != "any" {
						continue
					}
					h := register(t, env, map[string]any{"name": from + "-" + to, "url": rc.URL, "resource": "customers",
						"classification": map[string]any{"name": "is_pro", "from": from, "to": to}})
					require.Equal(t, map[string]any{"name": "is_pro", "from": from, "to": to}, h["classification"])
					hooks[h["id"].(string)] = [2]string{from, to}
				}
			}
			require.Len(t, hooks, 13)

			a := add(t, env, "customers", map[string]any{"name": "a", "tier": "free"}) // null->false
			edit(t, env, "customers", a, map[string]any{"tier": "pro"})                // false->true
			edit(t, env, "customers", a, map[string]any{"name": "a2"})                 // nothing
			edit(t, env, "customers", a, map[string]any{"tier": "free"})               // true->false
			edit(t, env, "customers", a, map[string]any{"tier": "pro"})                // false->true
			remove(t, env, "customers", a)                                             // true->null
			b := add(t, env, "customers", map[string]any{"name": "b", "tier": "pro"})  // null->true
			remove(t, env, "customers", b)                                             // true->null
			c := add(t, env, "customers", map[string]any{"name": "c"})                 // null->false
			remove(t, env, "customers", c)                                             // false->null
			happened := [][2]string{{"null", "false"}, {"false", "true"}, {"true", "false"}, {"false", "true"},
				{"true", "null"}, {"null", "true"}, {"true", "null"}, {"null", "false"}, {"false", "null"}}

			want := map[string][]string{}
			total := 0
			for id, ft := range hooks {
				for _, h := range happened {
					if (ft[0] == "any" || ft[0] == h[0]) && (ft[1] == "any" || ft[1] == h[1]) {
						want[id] = append(want[id], h[0]+"->"+h[1])
						total++
					}
				}
			}
			deadline := time.Now().Add(15 * time.Second)
			for len(rc.requests()) < total && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			got := map[string][]string{}
			reqs := rc.requests()
			sort.Slice(reqs, func(i, j int) bool { // no global order: sort by log position
				return atoi(t, jsonOf(t, reqs[i].Body)["id"].(string)) < atoi(t, jsonOf(t, reqs[j].Body)["id"].(string))
			})
			for _, r := range reqs {
				p := jsonOf(t, r.Body)
				require.Equal(t, "customers.classified", p["eventType"])
				cl := p["data"].(map[string]any)["classification"].(map[string]any)
				require.Equal(t, "is_pro", cl["name"])
				got[p["webhookId"].(string)] = append(got[p["webhookId"].(string)], fmt.Sprintf("%v->%v", outcome(cl["from"]), outcome(cl["to"])))
			}
			for id := range hooks {
				if len(want[id]) != len(got[id]) {
					var raw []map[string]any
					env.App.DB().Read.Raw("SELECT id, claimed_by, claim_expires_at, next_attempt_at, created_at FROM herald_deliveries WHERE status = 'pending'").Scan(&raw)
					t.Logf("pending rows: %v", raw)
					for _, d := range deliveries(t, env, id, "") {
						t.Logf("%v: delivery %v %v attempts %v next %v log %v", hooks[id], d["id"], d["status"], d["attempts"], d["nextAttemptAt"], d["attemptLog"])
					}
				}
				require.Equal(t, want[id], got[id], "webhook %v", hooks[id])
			}
		})
	}
}

func outcome(v any) string {
	if v == nil {
		return "null"
	}
	return fmt.Sprint(v)
}

// TestRelatedWebhooks: changes reach rows through relations in both
// directions: a moved order names both customers, a changed customer
// names its orders, a junction row added or removed names both sides, a
// cascaded delete names the parent, and the ids format puts every source
// row of one transaction in one delivery.
func TestRelatedWebhooks(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := startShop(t, kind)
			rc := newReceiver(t, nil)
			hookOf := map[string]string{}
			reg := func(name string, spec map[string]any) {
				spec["name"], spec["url"] = name, rc.URL
				hookOf[register(t, env, spec)["id"].(string)] = name
			}
			reg("customers<-orders", map[string]any{"resource": "customers", "related": []string{"orders"}, "events": []string{"created"}})
			reg("orders<-customers", map[string]any{"resource": "orders", "related": []string{"customers"}, "events": []string{"deleted"}})
			reg("orders<-order_tags", map[string]any{"resource": "orders", "related": []string{"order_tags"}, "events": []string{"deleted"}})
			reg("tags<-order_tags", map[string]any{"resource": "tags", "related": []string{"order_tags"}, "events": []string{"deleted"}})
			reg("customers<-orders ids", map[string]any{"resource": "customers", "related": []string{"orders"}, "format": "ids",
				"events": []string{"deleted"}})

			// Two relations join transfers and customers: an entry must name one.
			r := env.Admin("POST", "/v1/_webhooks", map[string]any{"name": "x", "url": rc.URL, "resource": "customers", "related": []string{"transfers"}})
			require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s", r.Body)
			require.Contains(t, string(r.Body), "name one as transfers.")
			reg("customers<-transfers.to_id", map[string]any{"resource": "customers", "related": []string{"transfers.to_id"}, "events": []string{"deleted"}})

			a := add(t, env, "customers", map[string]any{"name": "A"})
			b := add(t, env, "customers", map[string]any{"name": "B"})
			o := add(t, env, "orders", map[string]any{"customer_id": a, "total": 1})
			edit(t, env, "orders", o, map[string]any{"customer_id": b}) // moves: names A and B
			edit(t, env, "customers", b, map[string]any{"name": "B2"})  // names its order
			tag := add(t, env, "tags", map[string]any{"label": "x"})
			ot := add(t, env, "order_tags", map[string]any{"order_id": o, "tag_id": tag})
			remove(t, env, "order_tags", ot)
			add(t, env, "transfers", map[string]any{"from_id": a, "to_id": b}) // names B only
			add(t, env, "orders", []map[string]any{{"customer_id": a}, {"customer_id": b}, {"customer_id": a}})
			remove(t, env, "customers", b) // cascades to its orders

			// Every delivery, as "webhook eventType [source ids]" ("ids" for
			// the ids format). The delete of B cascades to its two orders
			// and sets the transfer's to_id to null, in one transaction.
			ab := sorted(a, b)
			want := []string{
				"customers<-orders customers.created []", // its own events
				"customers<-orders customers.created []",
				"customers<-orders orders.created [" + a + "]",
				"customers<-orders orders.updated [" + ab[0] + " " + ab[1] + "]", // a move names both
				"customers<-orders orders.created [" + a + "]",                   // the bulk create
				"customers<-orders orders.created [" + b + "]",
				"customers<-orders orders.created [" + a + "]",
				"customers<-orders orders.deleted [" + b + "]", // the cascade
				"customers<-orders orders.deleted [" + b + "]",
				"orders<-customers customers.updated [" + o + "]",
				"orders<-customers orders.deleted []",
				"orders<-customers orders.deleted []",
				"orders<-order_tags order_tags.created [" + o + "]",
				"orders<-order_tags order_tags.deleted [" + o + "]",
				"orders<-order_tags orders.deleted []",
				"orders<-order_tags orders.deleted []",
				"tags<-order_tags order_tags.created [" + tag + "]",
				"tags<-order_tags order_tags.deleted [" + tag + "]",
				"customers<-orders ids ids [" + a + "]",
				"customers<-orders ids ids [" + ab[0] + " " + ab[1] + "]",
				"customers<-orders ids ids [" + ab[0] + " " + ab[1] + "]", // the bulk create: one delivery
				"customers<-orders ids ids [" + b + "]",                   // the delete and its cascade
				"customers<-transfers.to_id transfers.created [" + b + "]",
				"customers<-transfers.to_id transfers.updated [" + b + "]", // set null by the delete
				"customers<-transfers.to_id customers.deleted []",
			}
			deadline := time.Now().Add(15 * time.Second)
			for len(rc.requests()) < len(want) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond)
			var got []string
			for _, req := range rc.requests() {
				p := jsonOf(t, req.Body)
				if hid, ok := p["hook_id"].(string); ok {
					var ids []string
					for _, id := range p["rows"].([]any) {
						ids = append(ids, id.(string))
					}
					sort.Strings(ids)
					got = append(got, fmt.Sprintf("%s ids %v", hookOf[hid], ids))
					continue
				}
				var ids []string
				if rel, ok := p["related"].(map[string]any); ok {
					require.Equal(t, "webhook's resource", map[bool]string{true: "webhook's resource"}[rel["resource"] != ""])
					for _, id := range rel["ids"].([]any) {
						ids = append(ids, id.(string))
					}
				}
				got = append(got, fmt.Sprintf("%s %s %v", hookOf[p["webhookId"].(string)], p["eventType"], ids))
			}
			if len(got) != len(want) {
				var raw []map[string]any
				env.App.DB().Read.Raw("SELECT id, webhook_id, event_type, status, claimed_by, claim_expires_at, next_attempt_at FROM herald_deliveries WHERE status <> 'succeeded'").Scan(&raw)
				t.Logf("unfinished deliveries: %v", raw)
			}
			require.ElementsMatch(t, want, got)
		})
	}
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	sort.Strings(out)
	return out
}

// TestRelatedAndClassificationRefused: bad related entries and
// classification filters are 422s naming the field.
func TestRelatedAndClassificationRefused(t *testing.T) {
	env := startShop(t, database.SQLite)
	for _, tc := range []struct {
		spec  map[string]any
		field string
	}{
		{map[string]any{"resource": "customers", "related": []string{"nope"}}, "related[0]"},
		{map[string]any{"resource": "customers", "related": []string{"tags"}}, "related[0]"},
		{map[string]any{"resource": "customers", "related": []string{"orders.total"}}, "related[0]"},
		{map[string]any{"resource": "*", "related": []string{"orders"}}, "related"},
		{map[string]any{"resource": "customers", "related": []string{"orders", "orders"}}, "related[1]"},
		{map[string]any{"resource": "customers", "related": []string{"orders."}}, "related[0]"},
		{map[string]any{"resource": "customers", "classification": map[string]any{"name": "nope"}}, "classification.name"},
		{map[string]any{"resource": "customers", "classification": map[string]any{"name": "is_pro", "from": "maybe"}}, "classification.from"},
		{map[string]any{"resource": "customers", "classification": map[string]any{"name": "is_pro", "from": "true", "to": "true"}}, "classification.to"},
		{map[string]any{"resource": "customers", "classification": map[string]any{"name": "is_pro", "from": true}}, "classification.from"},
		{map[string]any{"resource": "customers", "classification": map[string]any{"name": "is_pro"}, "related": []string{"orders"}}, "related"},
	} {
		tc.spec["name"], tc.spec["url"] = "bad", "http://127.0.0.1:1/x"
		r := env.Admin("POST", "/v1/_webhooks", tc.spec)
		require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v: %s", tc.spec, r.Body)
		require.Contains(t, string(r.Body), `"field":"`+tc.field+`"`, "%v", tc.spec)
	}
}
