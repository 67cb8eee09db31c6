package api_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
)

// shopSchema is the schema the CRUD scenarios run against.
const shopSchema = `
resources:
  - name: customers
    softDelete: true
    fields:
      - {name: name, type: string, required: true, sortable: true, filterable: true, validations: [{rule: minLength, value: 2}]}
      - {name: email, type: string, required: true, unique: true, filterable: true, validations: [{rule: email}]}
      - {name: tier, type: enum, enumValues: [free, pro], default: free, filterable: true}
      - {name: born, type: date}
  - name: products
    fields:
      - {name: sku, type: string, required: true, unique: true, validations: [{rule: pattern, value: "^[A-Z]{3}$"}]}
      - {name: price, type: number, required: true, sortable: true, filterable: true, validations: [{rule: min, value: 0}]}
      - {name: stock, type: integer, default: 0, filterable: true}
      - {name: active, type: boolean, default: true, filterable: true}
      - {name: meta, type: json}
      - {name: site, type: string, validations: [{rule: url}]}
  - name: orders
    fields:
      - {name: customer_id, type: relation, required: true, relation: {resource: customers, onDelete: cascade}}
      - {name: product_id, type: relation, relation: {resource: products, onDelete: restrict}}
      - {name: quantity, type: integer, required: true, validations: [{rule: min, value: 1}]}
      - {name: placed_at, type: datetime, sortable: true, filterable: true}
  - name: reviews
    fields:
      - {name: product_id, type: relation, relation: {resource: products, onDelete: setNull}}
      - {name: body, type: text}
`

// step is one request of a scenario and what it must answer. Bodies and
// paths may use {{name}}: a value saved by an earlier step.
type step struct {
	name     string
	method   string
	path     string
	body     string
	token    string // "" admin, "-" none, else this token
	status   int
	contains []string          // substrings the body must contain
	absent   []string          // substrings the body must not contain
	save     map[string]string // variable -> top-level key of the JSON answer
	check    func(t *testing.T, body map[string]any)
}

var varRE = regexp.MustCompile(`\{\{(\w+)\}\}`)

func runSteps(t *testing.T, env *apptest.Env, steps []step) {
	vars := map[string]string{}
	sub := func(s string) string {
		return varRE.ReplaceAllStringFunc(s, func(m string) string { return vars[m[2:len(m)-2]] })
	}
	for i, st := range steps {
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
			body = sub(st.body)
		}
		resp := env.Do(st.method, sub(st.path), body, token)
		label := fmt.Sprintf("step %d %q: %s %s", i, st.name, st.method, sub(st.path))
		require.Equal(t, st.status, resp.Status, "%s: body %s", label, resp.Body)
		for _, c := range st.contains {
			require.Contains(t, string(resp.Body), sub(c), label)
		}
		for _, c := range st.absent {
			require.NotContains(t, string(resp.Body), sub(c), label)
		}
		if resp.Status >= 400 {
			require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), label)
		}
		require.NotEmpty(t, resp.Header.Get("X-Request-ID"), label)
		m := resp.JSON()
		for v, key := range st.save {
			val, ok := m[key]
			require.True(t, ok, "%s: no %q in %s", label, key, resp.Body)
			vars[v] = fmt.Sprint(val)
		}
		if st.check != nil {
			st.check(t, m)
		}
	}
}

func TestCRUDScenarios(t *testing.T) {
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, shopSchema)
			runSteps(t, env, crudSteps())
		})
	}
}

func crudSteps() []step {
	total := func(n float64) func(t *testing.T, m map[string]any) {
		return func(t *testing.T, m map[string]any) {
			require.Equal(t, n, m["meta"].(map[string]any)["total"])
		}
	}
	count := func(n int) func(t *testing.T, m map[string]any) {
		return func(t *testing.T, m map[string]any) { require.Len(t, m["data"], n) }
	}
	return []step{
		{name: "health", method: "GET", path: "/healthz", token: "-", status: 200, contains: []string{"ok"}},
		{name: "ready", method: "GET", path: "/readyz", token: "-", status: 200},
		{name: "create customer", method: "POST", path: "/v1/customers", status: 201,
			body:     `{"name":"Ada","email":"ada@example.com","born":"1990-02-03"}`,
			contains: []string{`"tier":"free"`, `"deleted_at":null`, `"born":"1990-02-03"`}, save: map[string]string{"ada": "id"}},
		{name: "create second customer", method: "POST", path: "/v1/customers", status: 201,
			body: `{"name":"Bob","email":"bob@example.com","tier":"pro"}`, save: map[string]string{"bob": "id"}},
		{name: "unique violation", method: "POST", path: "/v1/customers", status: 409,
			body: `{"name":"Ada again","email":"ada@example.com"}`, contains: []string{`"field":"email"`, `"rule":"unique"`}},
		{name: "validation names every field", method: "POST", path: "/v1/customers", status: 422,
			body:     `{"name":"A","email":"not-an-email","tier":"gold","extra":1,"born":"1990-13-01"}`,
			contains: []string{`"field":"name"`, `"rule":"minLength"`, `"field":"email"`, `"rule":"email"`, `"field":"tier"`, `"field":"extra"`, `"rule":"unknown"`, `"field":"born"`}},
		{name: "missing required", method: "POST", path: "/v1/customers", status: 422, body: `{}`,
			contains: []string{`"field":"name","rule":"required"`, `"field":"email","rule":"required"`}},
		{name: "read-only field", method: "POST", path: "/v1/customers", status: 422,
			body: `{"name":"Cy","email":"cy@example.com","created_at":"2020-01-01T00:00:00Z"}`, contains: []string{`"rule":"readOnly"`}},
		{name: "malformed json", method: "POST", path: "/v1/customers", status: 400, body: `{"name":`, contains: []string{"malformed-json"}},
		{name: "trailing data", method: "POST", path: "/v1/customers", status: 400, body: `{"name":"x"} {}`},
		{name: "trailing brace", method: "POST", path: "/v1/customers", status: 400, body: `{"name":"x","email":"t@example.com"}}`},
		{name: "trailing bracket", method: "POST", path: "/v1/customers", status: 400, body: `[{"name":"x","email":"t@example.com"}]]`},
		{name: "wrong body type", method: "POST", path: "/v1/customers", status: 422, body: `"hello"`},
		{name: "unknown resource", method: "GET", path: "/v1/nope", status: 404},
		{name: "unknown record", method: "GET", path: "/v1/customers/01900000-0000-7000-8000-000000000000", status: 404},
		{name: "non-uuid id", method: "GET", path: "/v1/customers/xyz", status: 404},
		{name: "get customer", method: "GET", path: "/v1/customers/{{ada}}", status: 200, contains: []string{`"id":"{{ada}}"`, `"name":"Ada"`}},
		{name: "create product", method: "POST", path: "/v1/products", status: 201,
			body:     `{"sku":"MUG","price":9.5,"meta":{"color":"red","sizes":[1,2]},"site":"https://example.com/mug"}`,
			contains: []string{`"stock":0`, `"active":true`, `"meta":{"color":"red","sizes":[1,2]}`}, save: map[string]string{"mug": "id"}},
		{name: "pattern and min", method: "POST", path: "/v1/products", status: 422, body: `{"sku":"mug","price":-1,"site":"nope"}`,
			contains: []string{`"rule":"pattern"`, `"rule":"min"`, `"rule":"url"`}},
		{name: "integer type", method: "POST", path: "/v1/products", status: 422, body: `{"sku":"CUP","price":1,"stock":1.5}`,
			contains: []string{`"field":"stock","rule":"type"`}},
		{name: "bulk create is atomic", method: "POST", path: "/v1/products", status: 422,
			body: `[{"sku":"AAA","price":1},{"sku":"bad","price":2}]`, contains: []string{`"field":"[1].sku"`}},
		{name: "nothing from the failed bulk", method: "GET", path: "/v1/products?sku__eq=AAA", status: 400}, // sku is not filterable
		{name: "bulk create", method: "POST", path: "/v1/products", status: 201,
			body:  `[{"sku":"AAA","price":1,"stock":5},{"sku":"BBB","price":2,"stock":7,"active":false},{"sku":"CCC","price":3}]`,
			check: count(3)},
		{name: "bulk with a db conflict rolls back all", method: "POST", path: "/v1/products", status: 409,
			body: `[{"sku":"DDD","price":1},{"sku":"AAA","price":2}]`},
		{name: "list all products", method: "GET", path: "/v1/products", status: 200, check: total(4)},
		{name: "empty bulk", method: "POST", path: "/v1/products", status: 422, body: `[]`},
		{name: "filter gt", method: "GET", path: "/v1/products?price__gt=1.5", status: 200, check: total(3)},
		{name: "filter in", method: "GET", path: "/v1/products?stock__in=5,7", status: 200, check: total(2)},
		{name: "filter bool", method: "GET", path: "/v1/products?active=false", status: 200, check: total(1), contains: []string{"BBB"}},
		{name: "filter isnull", method: "GET", path: "/v1/customers?tier__eq=pro", status: 200, check: total(1)},
		{name: "filter like", method: "GET", path: "/v1/customers?name__like=A%25", status: 200, check: total(1)},
		{name: "like is case-sensitive", method: "GET", path: "/v1/customers?name__like=a%25", status: 200, check: total(0)},
		{name: "ilike is not", method: "GET", path: "/v1/customers?name__ilike=a%25", status: 200, check: total(1)},
		{name: "unknown filter field", method: "GET", path: "/v1/products?colour=red", status: 400, contains: []string{"colour"}},
		{name: "unknown operator", method: "GET", path: "/v1/products?price__near=1", status: 400},
		{name: "bad filter value", method: "GET", path: "/v1/products?price__gt=cheap", status: 400},
		{name: "sort not sortable", method: "GET", path: "/v1/products?_sort=sku", status: 400},
		{name: "bad limit", method: "GET", path: "/v1/products?_limit=1001", status: 400},
		{name: "sort desc with limit", method: "GET", path: "/v1/products?_sort=-price&_limit=2&fields=sku,price", status: 200,
			check: func(t *testing.T, m map[string]any) {
				data := m["data"].([]any)
				require.Len(t, data, 2)
				require.Equal(t, map[string]any{"sku": "MUG", "price": 9.5}, data[0])
				require.Equal(t, "CCC", data[1].(map[string]any)["sku"])
				require.NotNil(t, m["meta"].(map[string]any)["next"])
			}, save: map[string]string{}},
		{name: "offset", method: "GET", path: "/v1/products?_sort=price&_offset=3", status: 200, check: count(1), contains: []string{"MUG"}},
		{name: "unknown fields param", method: "GET", path: "/v1/products?fields=nope", status: 400},
		{name: "create order", method: "POST", path: "/v1/orders", status: 201,
			body:     `{"customer_id":"{{ada}}","product_id":"{{mug}}","quantity":2,"placed_at":"2026-01-02T03:04:05.123+02:00"}`,
			contains: []string{`"placed_at":"2026-01-02T01:04:05.123000Z"`}, save: map[string]string{"order": "id"}},
		{name: "order to a missing customer", method: "POST", path: "/v1/orders", status: 422,
			body: `{"customer_id":"01900000-0000-7000-8000-000000000000","quantity":1}`, contains: []string{`"field":"customer_id","rule":"relation"`}},
		{name: "include relation", method: "GET", path: "/v1/orders/{{order}}?include=customer_id,product_id", status: 200,
			contains: []string{`"expand":{`, `"email":"ada@example.com"`, `"sku":"MUG"`}},
		{name: "include non-relation", method: "GET", path: "/v1/orders?include=quantity", status: 400},
		{name: "patch", method: "PATCH", path: "/v1/orders/{{order}}", body: `{"quantity":3}`, status: 200,
			contains: []string{`"quantity":3`, `"customer_id":"{{ada}}"`}},
		{name: "patch invalid", method: "PATCH", path: "/v1/orders/{{order}}", body: `{"quantity":0}`, status: 422},
		{name: "patch clears required", method: "PATCH", path: "/v1/orders/{{order}}", body: `{"quantity":null}`, status: 422,
			contains: []string{`"rule":"required"`}},
		{name: "patch unknown field", method: "PATCH", path: "/v1/orders/{{order}}", body: `{"colour":"red"}`, status: 422},
		{name: "patch id", method: "PATCH", path: "/v1/orders/{{order}}", body: `{"id":"01900000-0000-7000-8000-000000000000"}`, status: 422},
		{name: "patch missing record", method: "PATCH", path: "/v1/orders/01900000-0000-7000-8000-000000000000", body: `{"quantity":3}`, status: 404},
		{name: "put replaces", method: "PUT", path: "/v1/orders/{{order}}", body: `{"customer_id":"{{ada}}","quantity":4}`, status: 200,
			contains: []string{`"quantity":4`, `"product_id":null`, `"placed_at":null`}},
		{name: "put missing required", method: "PUT", path: "/v1/orders/{{order}}", body: `{"quantity":4}`, status: 422},
		{name: "review of the mug", method: "POST", path: "/v1/reviews", body: `{"product_id":"{{mug}}","body":"nice"}`, status: 201,
			save: map[string]string{"review": "id"}},
		{name: "order for restrict", method: "POST", path: "/v1/orders", body: `{"customer_id":"{{bob}}","product_id":"{{mug}}","quantity":1}`, status: 201},
		{name: "restrict refuses", method: "DELETE", path: "/v1/products/{{mug}}", status: 409, contains: []string{"orders.product_id"}},
		{name: "soft delete cascades", method: "DELETE", path: "/v1/customers/{{bob}}", status: 204},
		{name: "soft-deleted is hidden", method: "GET", path: "/v1/customers/{{bob}}", status: 404},
		{name: "soft-deleted not listed", method: "GET", path: "/v1/customers", status: 200, check: total(1)},
		{name: "cascade deleted bob's order", method: "GET", path: "/v1/orders", status: 200, check: total(1)},
		{name: "order for a soft-deleted customer", method: "POST", path: "/v1/orders", status: 422,
			body: `{"customer_id":"{{bob}}","quantity":1}`, contains: []string{`"field":"customer_id","rule":"relation"`}},
		{name: "re-pointing to a soft-deleted customer", method: "PATCH", path: "/v1/orders/{{order}}", status: 422,
			body: `{"customer_id":"{{bob}}"}`, contains: []string{`"field":"customer_id","rule":"relation"`}},
		{name: "delete the rest of mug's orders", method: "DELETE", path: "/v1/orders/{{order}}", status: 204},
		{name: "delete twice", method: "DELETE", path: "/v1/orders/{{order}}", status: 404},
		{name: "setNull clears", method: "DELETE", path: "/v1/products/{{mug}}", status: 204},
		{name: "review kept, product cleared", method: "GET", path: "/v1/reviews/{{review}}", status: 200, contains: []string{`"product_id":null`}},
		{name: "hard delete soft-deleted", method: "DELETE", path: "/v1/customers/{{bob}}?hard=true", status: 204},
		{name: "body too large", method: "POST", path: "/v1/reviews", body: `{"body":"` + strings.Repeat("x", 1<<20) + `"}`, status: 413},
		{name: "no credentials", method: "GET", path: "/v1/customers", token: "-", status: 401},
		{name: "bad credentials", method: "GET", path: "/v1/customers", token: "wrong", status: 401},
		{name: "registry needs admin", method: "GET", path: "/v1/_registry", token: "-", status: 401},
	}
}

// decode is a small helper for tests that need a typed look at a body.
func decode(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	return m
}

// TestQueryStringsAndPathIDs: a query string that does not parse is a 400
// before anything else happens (it used to be dropped silently: a list
// came back unfiltered, an import with dryRun=true after 10,000
// parameters was applied); unknown audit parameters are refused as on
// lists; an upper-case UUID in the path finds the record on both engines.
func TestQueryStringsAndPathIDs(t *testing.T) {
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, shopSchema)
			r := env.Admin("POST", "/v1/customers", map[string]any{"name": "Ada", "email": "ada@example.com"})
			require.Equal(t, 201, r.Status, "%s", r.Body)
			id := r.JSON()["id"].(string)
			var many strings.Builder
			for i := range 10_001 {
				fmt.Fprintf(&many, "&p%d=1", i)
			}
			newSchema := strings.Replace(shopSchema, "      - {name: body, type: text}\n", "      - {name: body, type: text}\n      - {name: stars, type: integer}\n", 1)
			runSteps(t, env, []step{
				{name: "bad escape", method: "GET", path: "/v1/customers?name=%ZZ", status: 400, contains: []string{"bad-query", "invalid URL escape"}},
				{name: "semicolon", method: "GET", path: "/v1/customers?name=Ada;x", status: 400, contains: []string{"bad-query", "semicolon"}},
				{name: "bad escape, no credentials", method: "GET", path: "/v1/customers?name=%ZZ", token: "-", status: 400},
				{name: "too many parameters on a dry run", method: "POST", path: "/v1/_registry/import?dryRun=true" + many.String(),
					body: newSchema, status: 400, contains: []string{"bad-query"}},
				{name: "nothing was applied", method: "GET", path: "/v1/_registry", status: 200, absent: []string{"stars"}},
				{name: "unknown audit parameter", method: "GET", path: "/v1/_events?resourceName=nope", status: 400,
					contains: []string{`"field":"resourceName"`}},
				{name: "repeated audit parameter", method: "GET", path: "/v1/_events?limit=1&limit=2", status: 400},
				{name: "upper-case id", method: "GET", path: "/v1/customers/" + strings.ToUpper(id), status: 200, contains: []string{`"id":"` + id + `"`}},
				{name: "upper-case id, patch", method: "PATCH", path: "/v1/customers/" + strings.ToUpper(id), body: `{"name":"Ada L."}`, status: 200},
				{name: "upper-case id, history", method: "GET", path: "/v1/customers/" + strings.ToUpper(id) + "/history", status: 200,
					contains: []string{`"eventType":"customers.updated"`}},
			})
		})
	}
}

// TestValuesPostgreSQLCannotStore: the inputs PostgreSQL used to answer
// 500 (SQLite accepted them) get the same 4xx on both engines and write
// nothing.
func TestValuesPostgreSQLCannotStore(t *testing.T) {
	long := strings.Repeat("é", 1500) // 3,000 bytes
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, shopSchema)
			runSteps(t, env, []step{
				{name: "NUL in a string", method: "POST", path: "/v1/customers", status: 422,
					body: `{"name":"A\u0000da","email":"ada@example.com"}`, contains: []string{`"field":"name"`, "NUL"}},
				{name: "NUL in json", method: "POST", path: "/v1/products", status: 422,
					body: `{"sku":"ABC","price":1,"meta":{"k":"v\u0000"}}`, contains: []string{`"field":"meta"`, "NUL"}},
				{name: "NUL in a filter", method: "GET", path: "/v1/customers?name=A%00", status: 400, contains: []string{"NUL"}},
				{name: "NUL in a like filter", method: "GET", path: "/v1/customers?name__like=A%00", status: 400},
				{name: "year 0 datetime", method: "POST", path: "/v1/orders", status: 422,
					body:     `{"customer_id":"01a23456-0000-7000-8000-000000000001","quantity":1,"placed_at":"0000-01-01T00:00:00Z"}`,
					contains: []string{`"field":"placed_at"`, "year"}},
				{name: "year 0 date", method: "POST", path: "/v1/customers", status: 422,
					body: `{"name":"Ada","email":"ada@example.com","born":"0000-06-01"}`, contains: []string{`"field":"born"`, "year"}},
				{name: "year 0 in a filter", method: "GET", path: "/v1/orders?placed_at__gt=0000-01-01T00:00:00Z", status: 400},
				{name: "3 KB in a filterable field", method: "POST", path: "/v1/customers", status: 422,
					body: `{"name":"` + long + `","email":"ada@example.com"}`, contains: []string{`"field":"name"`, "2000 bytes"}},
				{name: "3 KB in a filter", method: "GET", path: "/v1/customers?name=" + long, status: 400},
				{name: "nothing was written", method: "GET", path: "/v1/_events", status: 200, contains: []string{`"data":[]`}},
			})
		})
	}
}

// TestDryRunRunsTheImportsChecks: a dry run answers what the import would
// answer, and changes nothing.
func TestDryRunRunsTheImportsChecks(t *testing.T) {
	required := strings.Replace(shopSchema, "      - {name: body, type: text}\n",
		"      - {name: body, type: text}\n      - {name: stars, type: integer, required: true}\n", 1)
	engineName := shopSchema + "  - name: sqlite_x\n    fields:\n      - {name: a, type: string}\n"
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, shopSchema)
			runSteps(t, env, []step{
				{name: "a review", method: "POST", path: "/v1/reviews", body: `{"body":"fine"}`, status: 201},
				{name: "dry run: new required field on a table with rows", method: "POST", path: "/v1/_registry/import?dryRun=true",
					body: required, status: 409, contains: []string{"stars"}},
				{name: "the import says the same", method: "POST", path: "/v1/_registry/import", body: required, status: 409},
				{name: "dry run: an engine's reserved name", method: "POST", path: "/v1/_registry/import?dryRun=true",
					body: engineName, status: 422, contains: []string{"sqlite_"}},
				{name: "dry run of a good change", method: "POST", path: "/v1/_registry/import?dryRun=true",
					body: strings.Replace(required, "required: true}", "}", 1), status: 200, contains: []string{`"applied":false`, `"addField"`}},
				{name: "nothing applied", method: "GET", path: "/v1/_registry", status: 200, absent: []string{"stars", "sqlite_x"}},
			})
		})
	}
}

// TestProblemsAreStableAndExact: a 422 lists its problems in the same
// order every time (what does not parse, by schema order then unknown keys
// alphabetically, then the rules each value breaks), a field of the
// wrong type is not also "required", and a unique violation in a bulk
// create names the item.
func TestProblemsAreStableAndExact(t *testing.T) {
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, shopSchema)
			body := `{"zeta":1,"tier":"gold","email":5,"name":"A","alpha":2}`
			var first string
			for i := range 20 {
				r := env.Admin("POST", "/v1/customers", body)
				require.Equal(t, 422, r.Status)
				var p struct {
					Errors []struct{ Field, Rule string }
				}
				require.NoError(t, json.Unmarshal(r.Body, &p))
				var got []string
				for _, e := range p.Errors {
					got = append(got, e.Field+":"+e.Rule)
				}
				require.Equal(t, []string{"email:type", "tier:type", "alpha:unknown", "zeta:unknown", "name:minLength"}, got)
				if i == 0 {
					first = string(r.Body)
				}
			}
			require.NotContains(t, first, `"rule":"required"`)
			runSteps(t, env, []step{
				{name: "a product", method: "POST", path: "/v1/products", body: `{"sku":"ABC","price":1}`, status: 201},
				{name: "bulk with a taken sku", method: "POST", path: "/v1/products", status: 409,
					body: `[{"sku":"XYZ","price":1},{"sku":"ABC","price":2}]`, contains: []string{`"field":"[1].sku"`, `"rule":"unique"`}},
			})
		})
	}
}

// TestHardParentSoftChildren: deleting a parent without soft delete whose
// cascade children have soft delete, one of them already soft-deleted,
// deletes it (it answered 404 and deleted nothing): the live child gets
// its deleted event, and no row is left pointing at the parent.
func TestHardParentSoftChildren(t *testing.T) {
	const schema = `
resources:
  - name: vendors
    fields:
      - {name: name, type: string, required: true}
  - name: invoices
    softDelete: true
    fields:
      - {name: vendor_id, type: relation, required: true, relation: {resource: vendors, onDelete: cascade}}
      - {name: total, type: number}
`
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, schema)
			runSteps(t, env, []step{
				{name: "vendor", method: "POST", path: "/v1/vendors", body: `{"name":"v"}`, status: 201, save: map[string]string{"v": "id"}},
				{name: "invoice 1", method: "POST", path: "/v1/invoices", body: `{"vendor_id":"{{v}}","total":1}`, status: 201, save: map[string]string{"i1": "id"}},
				{name: "invoice 2", method: "POST", path: "/v1/invoices", body: `{"vendor_id":"{{v}}","total":2}`, status: 201, save: map[string]string{"i2": "id"}},
				{name: "soft-delete invoice 1", method: "DELETE", path: "/v1/invoices/{{i1}}", status: 204},
				{name: "delete the vendor", method: "DELETE", path: "/v1/vendors/{{v}}", status: 204},
				{name: "the vendor is gone", method: "GET", path: "/v1/vendors/{{v}}", status: 404},
				{name: "invoice 2 got its deleted event", method: "GET", path: "/v1/_events?type=invoices.deleted&resourceId={{i2}}", status: 200,
					contains: []string{`"eventType":"invoices.deleted"`}},
			})
			var left int64
			require.NoError(t, env.App.DB().Read.Raw("SELECT count(*) FROM invoices").Scan(&left).Error)
			require.Zero(t, left, "no invoice is left pointing at the deleted vendor")
			// Invoice 1's soft delete, then its removal for good (a second
			// deleted event, as a ?hard=true delete of a soft-deleted row
			// records), and invoice 2's delete.
			r := env.Admin("GET", "/v1/_events?type=invoices.deleted", nil)
			require.Equal(t, 200, r.Status)
			var page struct{ Data []map[string]any }
			require.NoError(t, json.Unmarshal(r.Body, &page))
			require.Len(t, page.Data, 3)
		})
	}
}

// TestBadQueryWithAToken: a query string that does not parse and names a
// token is refused like any other (bad-query, with a request id).
func TestBadQueryWithAToken(t *testing.T) {
	env := apptest.Start(t, kinds[0], shopSchema)
	r := env.Do("GET", "/v1/customers/stream?access_token=x&a=%ZZ", nil, "")
	require.Equal(t, 400, r.Status, "%s", r.Body)
	require.Contains(t, string(r.Body), "bad-query")
	require.NotEmpty(t, r.Header.Get("X-Request-ID"))
	require.Contains(t, string(r.Body), r.Header.Get("X-Request-ID"))
}
