package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
)

// TestBadInputsSameOnBothEngines runs every bad input against SQLite and
// PostgreSQL and asserts, for each, the same status on both, a 4xx
// problem+json answer, and that nothing was written: no row, no event.
// Grow it with every bad input found.
func TestBadInputsSameOnBothEngines(t *testing.T) {
	long := strings.Repeat("é", 1500)
	var many strings.Builder
	for i := range 10_001 {
		many.WriteString("&p")
		many.WriteString(strings.Repeat("x", i%3))
		many.WriteString("=1")
	}
	cases := []struct{ name, method, path, body string }{
		{"query: bad escape", "GET", "/v1/customers?name=%ZZ", ""},
		{"query: semicolon", "GET", "/v1/customers?name=Ada;x", ""},
		{"query: too many parameters, dry run", "POST", "/v1/_registry/import?dryRun=true" + many.String(), "resources: []\n"},
		{"query: unknown audit parameter", "GET", "/v1/_events?resourceName=nope", ""},
		{"query: unknown list parameter", "GET", "/v1/customers?colour=red", ""},
		{"query: NUL in a filter", "GET", "/v1/customers?name=A%00", ""},
		{"query: NUL in a like", "GET", "/v1/customers?name__like=%00", ""},
		{"query: year 0 in a filter", "GET", "/v1/orders?placed_at__gt=0000-01-01T00:00:00Z", ""},
		{"query: 3 KB in a filter", "GET", "/v1/customers?name=" + long, ""},
		{"query: bad cursor", "GET", "/v1/customers?_after=eyJ9fQ", ""},
		{"body: trailing brace", "POST", "/v1/customers", `{"name":"Ada","email":"ada@example.com"}}`},
		{"body: trailing bracket", "POST", "/v1/customers", `[{"name":"Ada","email":"ada@example.com"}]]`},
		{"body: trailing brace on PATCH", "PATCH", "/v1/customers/{{ada}}", `{"name":"Ada L."}}`},
		{"body: trailing brace on import", "POST", "/v1/_registry/import", `{"resources":[]}}`},
		{"body: NUL in a string", "POST", "/v1/customers", `{"name":"A\u0000da","email":"x@example.com"}`},
		{"body: NUL in json", "POST", "/v1/products", `{"sku":"ABC","price":1,"meta":{"k":"\u0000"}}`},
		{"body: year 0 datetime", "POST", "/v1/orders", `{"customer_id":"{{ada}}","quantity":1,"placed_at":"0000-01-01T00:00:00Z"}`},
		{"body: year 0 date", "POST", "/v1/customers", `{"name":"Bob","email":"bob@example.com","born":"0000-06-01"}`},
		{"body: 3 KB in a unique field", "POST", "/v1/customers", `{"name":"Bob","email":"` + long + `@example.com"}`},
		{"body: 3 KB in a filterable field", "POST", "/v1/customers", `{"name":"` + long + `","email":"bob@example.com"}`},
		{"body: huge number", "POST", "/v1/products", `{"sku":"ABC","price":1e400}`},
		{"body: wrong types", "POST", "/v1/customers", `{"name":5,"email":true}`},
		{"body: unique in bulk", "POST", "/v1/customers", `[{"name":"Bob","email":"bob@example.com"},{"name":"Ada2","email":"ada@example.com"}]`},
		{"body: missing relation", "POST", "/v1/orders", `{"customer_id":"01a23456-0000-7000-8000-00000000dead","quantity":1}`},
		{"body: relation not a uuid", "POST", "/v1/orders", `{"customer_id":"nope","quantity":1}`},
		{"import: engine name", "POST", "/v1/_registry/import?dryRun=true", "resources:\n  - name: sqlite_x\n    fields: []\n"},
		{"import: bad expression", "POST", "/v1/_registry/import", "resources:\n  - name: x\n    fields: [{name: n, type: integer}]\n    classifications: {c: \"n == (((\"}\n"},
		{"import: new required field on rows", "POST", "/v1/_registry/import?dryRun=true",
			strings.Replace(shopSchema, "      - {name: born, type: date}\n", "      - {name: born, type: date}\n      - {name: vip, type: boolean, required: true}\n", 1)},
		{"path: not a uuid", "GET", "/v1/customers/not-a-uuid", ""},
		{"path: urn uuid", "GET", "/v1/customers/urn:uuid:{{ada}}", ""},
		{"path: urn uuid, patch", "PATCH", "/v1/customers/urn:uuid:{{ada}}", `{"name":"Ada L."}`},
		{"path: uuid without hyphens", "GET", "/v1/customers/{{adaplain}}", ""},
		{"path: uuid in braces", "DELETE", "/v1/customers/%7B{{ada}}%7D", ""},
		{"query: NUL in an audit parameter", "GET", "/v1/_events?userId=a%00", ""},
		{"query: NUL in a parameter name", "GET", "/v1/_events?a%00=1", ""},
		{"query: bytes that are not UTF-8", "GET", "/v1/customers?name=%FF%FE", ""},
		{"query: a 60 KB like pattern", "GET", "/v1/customers?name__like=" + strings.Repeat("%25a", 20000), ""},
		{"body: urn uuid relation", "POST", "/v1/orders", `{"customer_id":"urn:uuid:{{ada}}","quantity":1}`},
		{"path: unknown resource", "GET", "/v1/nope", ""},
		{"webhook: bad related", "POST", "/v1/_webhooks", `{"name":"x","url":"http://example.com","resource":"customers","related":["orders."]}`},
		{"webhook: unknown classification", "POST", "/v1/_webhooks", `{"name":"x","url":"http://example.com","resource":"customers","classification":{"name":"nope"}}`},
	}
	type answer struct {
		status int
		ctype  string
	}
	got := map[string]map[string]answer{}
	for _, kind := range kinds {
		env := apptest.Start(t, kind, shopSchema)
		r := env.Admin("POST", "/v1/customers", map[string]any{"name": "Ada", "email": "ada@example.com"})
		require.Equal(t, 201, r.Status, "%s", r.Body)
		ada := r.JSON()["id"].(string)
		count := func() (rows, evs int) {
			for _, res := range []string{"customers", "products", "orders", "reviews"} {
				var page struct{ Meta struct{ Total int } }
				require.NoError(t, json.Unmarshal(env.Admin("GET", "/v1/"+res+"?_limit=1", nil).Body, &page))
				rows += page.Meta.Total
			}
			var evPage struct{ Data []any }
			require.NoError(t, json.Unmarshal(env.Admin("GET", "/v1/_events?limit=1000", nil).Body, &evPage))
			return rows, len(evPage.Data)
		}
		rows0, evs0 := count()
		got[string(kind)] = map[string]answer{}
		for _, tc := range cases {
			sub := strings.NewReplacer("{{ada}}", ada, "{{adaplain}}", strings.ReplaceAll(ada, "-", "")).Replace
			var body any
			if tc.body != "" {
				body = sub(tc.body)
			}
			r := env.Admin(tc.method, sub(tc.path), body)
			require.True(t, r.Status >= 400 && r.Status < 500, "%s on %s: %d %s", tc.name, kind, r.Status, r.Body)
			require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"), "%s on %s", tc.name, kind)
			got[string(kind)][tc.name] = answer{r.Status, r.Header.Get("Content-Type")}
		}
		rows1, evs1 := count()
		require.Equal(t, rows0, rows1, "no row written on %s", kind)
		require.Equal(t, evs0, evs1, "no event written on %s", kind)
		env.Stop()
	}
	if len(kinds) == 2 {
		for _, tc := range cases {
			require.Equal(t, got[string(kinds[0])][tc.name], got[string(kinds[1])][tc.name], "%s: the same answer on both engines", tc.name)
		}
	}
}

// TestStoredValuesBeyondTheNewLimits: a value stored before the limits
// for PostgreSQL existed (possible on SQLite only) still reads back, and a
// write that does not touch it succeeds.
func TestStoredValuesBeyondTheNewLimits(t *testing.T) {
	env := apptest.Start(t, database.SQLite, shopSchema)
	r := env.Admin("POST", "/v1/customers", map[string]any{"name": "Ada", "email": "ada@example.com"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	id := r.JSON()["id"].(string)
	long := strings.Repeat("n", 3000)
	require.NoError(t, env.App.DB().Write.Exec("UPDATE customers SET name = ?, born = '0000-01-01' WHERE id = ?", long, id).Error)
	r = env.Admin("PATCH", "/v1/customers/"+id, map[string]any{"tier": "pro"})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r = env.Admin("GET", "/v1/customers?_sort=name&_limit=1", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	next := r.JSON()["meta"].(map[string]any)["next"]
	if next != nil {
		require.Equal(t, 200, env.Admin("GET", "/v1/customers?_sort=name&_limit=1&_after="+next.(string), nil).Status)
	}
}

// TestIndexingLongValues: an import that makes a string field indexed
// while rows hold values over 2,000 bytes is a 409 naming the field on
// both engines (PostgreSQL could not build the index: 500), dry run or not.
func TestIndexingLongValues(t *testing.T) {
	indexed := strings.Replace(shopSchema, "      - {name: body, type: text}\n", "      - {name: body, type: text, filterable: true}\n", 1)
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, shopSchema)
			runSteps(t, env, []step{
				{name: "a long review", method: "POST", path: "/v1/reviews", body: `{"body":"` + strings.Repeat("x", 3000) + `"}`, status: 201},
				{name: "dry run", method: "POST", path: "/v1/_registry/import?dryRun=true", body: indexed, status: 409,
					contains: []string{`"field":"reviews.body"`, `"rule":"maxLength"`}},
				{name: "import", method: "POST", path: "/v1/_registry/import", body: indexed, status: 409},
			})
		})
	}
}
