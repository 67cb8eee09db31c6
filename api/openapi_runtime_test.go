package api_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/goccy/go-yaml"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
)

// runtimeSchema is shopSchema with permissions for a user and the public.
const runtimeSchema = shopSchema + `permissions:
  - {resource: products, role: user, action: read, fields: [sku, price]}
  - {resource: products, role: user, action: create, fields: [sku, price]}
  - {resource: customers, role: public, action: read, fields: [name]}
`

// loadRuntimeDoc fetches GET /v1/_openapi with token and loads it with
// kin-openapi, failing the test when it is not a valid document.
func loadRuntimeDoc(t *testing.T, env *apptest.Env, token string) (*openapi3.T, map[string]any) {
	t.Helper()
	r := env.Do("GET", "/v1/_openapi", nil, token)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
	doc, err := openapi3.NewLoader().LoadFromData(r.Body)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background(), openapi3.EnableExamplesValidation()), "the runtime document validates")
	var raw map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &raw))
	return doc, raw
}

// TestRuntimeOpenAPI: GET /v1/_openapi is a valid OpenAPI 3.1 document
// with one schema per resource (types, formats, enums, nullability,
// validations, read-only system fields, required fields for create), the
// real filter and sort parameters, only what the caller's role may use,
// and it follows a schema import at once. Live answers validate against it.
func TestRuntimeOpenAPI(t *testing.T) {
	env := apptest.Start(t, database.SQLite, runtimeSchema, func(c *app.Config) { c.JWTSecret = jwtSecret })
	doc, raw := loadRuntimeDoc(t, env, apptest.AdminKey)
	require.Equal(t, "3.1.0", doc.OpenAPI)

	for _, p := range []string{"/v1/products", "/v1/products/{id}", "/v1/products/{id}/history", "/v1/products/stream", "/v1/orders", "/v1/_webhooks", "/v1/_openapi"} {
		require.NotNil(t, doc.Paths.Value(p), "path %s", p)
	}
	require.Nil(t, doc.Paths.Value("/v1/{resource}"), "the generic paths give way to the resources'")

	// The record schema types every field.
	products := doc.Components.Schemas["products"].Value
	require.NotNil(t, products)
	price := products.Properties["price"].Value
	require.True(t, price.Type.Is("number"), "price is a number: %v", price.Type)
	require.NotNil(t, price.Min)
	require.Equal(t, 0.0, *price.Min)
	require.True(t, products.Properties["stock"].Value.Type.Includes("integer"))
	require.True(t, products.Properties["stock"].Value.Type.Includes("null"), "an optional field is nullable")
	require.Equal(t, "^[A-Z]{3}$", products.Properties["sku"].Value.Pattern)
	require.Equal(t, "uri", products.Properties["site"].Value.Format)
	require.True(t, products.Properties["id"].Value.ReadOnly)
	require.Equal(t, "uuid", products.Properties["id"].Value.Format)
	require.Equal(t, "date-time", products.Properties["created_at"].Value.Format)
	customers := doc.Components.Schemas["customers"].Value
	require.Equal(t, []any{"free", "pro", nil}, customers.Properties["tier"].Value.Enum)
	require.Equal(t, "email", customers.Properties["email"].Value.Format)
	require.NotNil(t, customers.Properties["deleted_at"], "soft delete shows deleted_at")
	require.Equal(t, "date", customers.Properties["born"].Value.Format)
	orders := doc.Components.Schemas["orders"].Value
	require.Equal(t, "#/components/schemas/customers", orders.Properties["expand"].Value.Properties["customer_id"].Value.OneOf[0].Ref)

	create := doc.Components.Schemas["products.create"].Value
	require.ElementsMatch(t, []string{"sku", "price"}, create.Required)
	require.NotContains(t, create.Properties, "created_at", "system fields are not written")
	require.Empty(t, doc.Components.Schemas["products.update"].Value.Required)

	// The list parameters are the resource's own.
	list := doc.Paths.Value("/v1/products").Get
	require.Equal(t, "listProducts", list.OperationID)
	names := map[string]*openapi3.Parameter{}
	for _, p := range list.Parameters {
		names[p.Value.Name] = p.Value
	}
	for _, n := range []string{"price", "price__gte", "price__in", "stock__lt", "active", "active__isnull", "_sort", "_limit", "fields", "include", "id__gt", "created_at__lte"} {
		require.Contains(t, names, n)
	}
	for _, n := range []string{"filters", "sku__gte", "meta__eq", "active__gt", "site", "price__like"} {
		require.NotContains(t, names, n, "%s is no parameter of products", n)
	}
	require.True(t, names["price__gte"].Schema.Value.Type.Is("number"))
	require.Regexp(t, names["_sort"].Schema.Value.Pattern, "-price,created_at")
	require.NotRegexp(t, names["_sort"].Schema.Value.Pattern, "sku")

	// Live answers validate against the runtime document.
	chk := newOpenAPIChecker(t, doc)
	r := env.Admin("POST", "/v1/products", map[string]any{"sku": "ABC", "price": 5, "meta": map[string]any{"a": 1}})
	chk.record(t, "POST", "/v1/products", r)
	id := r.JSON()["id"].(string)
	chk.record(t, "POST", "/v1/products", env.Admin("POST", "/v1/products", []any{map[string]any{"sku": "DEF", "price": 6}}))
	chk.record(t, "GET", "/v1/products?price__gte=5&_sort=-price", env.Admin("GET", "/v1/products?price__gte=5&_sort=-price", nil))
	chk.record(t, "GET", "/v1/products/"+id, env.Admin("GET", "/v1/products/"+id, nil))
	chk.record(t, "PATCH", "/v1/products/"+id, env.Admin("PATCH", "/v1/products/"+id, map[string]any{"stock": 3}))
	chk.record(t, "GET", "/v1/products/"+id+"/history", env.Admin("GET", "/v1/products/"+id+"/history", nil))
	c := env.Admin("POST", "/v1/customers", map[string]any{"name": "Ada", "email": "ada@example.com"})
	chk.record(t, "POST", "/v1/customers", c)
	o := env.Admin("POST", "/v1/orders", map[string]any{"customer_id": c.JSON()["id"], "product_id": id, "quantity": 2})
	chk.record(t, "POST", "/v1/orders", o)
	target := "/v1/orders/" + o.JSON()["id"].(string) + "?include=customer_id,product_id"
	chk.record(t, "GET", target, env.Admin("GET", target, nil))
	chk.record(t, "GET", "/v1/products?price__gte=x", env.Admin("GET", "/v1/products?price__gte=x", nil))
	require.GreaterOrEqual(t, chk.total, 10)

	// A role sees only what it may use.
	user := signHS256(t, jwtSecret, jwt.MapClaims{"sub": "u-1", "role": "user"})
	udoc, _ := loadRuntimeDoc(t, env, user)
	require.NotNil(t, udoc.Paths.Value("/v1/products"))
	require.NotNil(t, udoc.Paths.Value("/v1/products").Post)
	require.Nil(t, udoc.Paths.Value("/v1/products/{id}").Patch, "the user may not update")
	require.Nil(t, udoc.Paths.Value("/v1/orders"), "nor see orders")
	require.ElementsMatch(t, []string{"id", "sku", "price", "created_at", "updated_at"}, keys(udoc.Components.Schemas["products"].Value.Properties))
	pdoc, _ := loadRuntimeDoc(t, env, "")
	require.Nil(t, pdoc.Paths.Value("/v1/products"))
	require.NotNil(t, pdoc.Paths.Value("/v1/customers").Get)
	require.Nil(t, pdoc.Paths.Value("/v1/customers").Post)

	// YAML by Accept, the same document.
	r = env.Do("GET", "/v1/_openapi", nil, apptest.AdminKey, "Accept", "application/yaml")
	require.Equal(t, 200, r.Status)
	require.Equal(t, "application/yaml", r.Header.Get("Content-Type"))
	var fromYAML map[string]any
	require.NoError(t, yaml.Unmarshal(r.Body, &fromYAML))
	require.Equal(t, keys(raw["paths"].(map[string]any)), keys(fromYAML["paths"].(map[string]any)))

	// An import shows at once.
	imp := runtimeSchema + "  - {resource: gadgets, role: user, action: read}\n"
	imp = imp[:len(shopSchema)] + "  - name: gadgets\n    fields:\n      - {name: weight, type: number, filterable: true}\n" + imp[len(shopSchema):]
	r = env.Do("POST", "/v1/_registry/import", imp, apptest.AdminKey, "Content-Type", "application/yaml")
	require.Equal(t, 200, r.Status, "%s", r.Body)
	doc, _ = loadRuntimeDoc(t, env, apptest.AdminKey)
	require.NotNil(t, doc.Paths.Value("/v1/gadgets"))
	require.True(t, doc.Components.Schemas["gadgets"].Value.Properties["weight"].Value.Type.Includes("number"))
	udoc, _ = loadRuntimeDoc(t, env, user)
	require.NotNil(t, udoc.Paths.Value("/v1/gadgets"), "the user's document follows the import too")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// clashSchema has resources whose names could clash with the fixed
// endpoints' operation ids (events, webhook) and with each other's schema
// and operation names (order_items, order__items, items, items_list), a
// filterable field named like a list parameter, and roles that read orders
// but not customers, or create without reading.
const clashSchema = `
resources:
  - name: customers
    fields:
      - {name: name, type: string, required: true}
  - name: orders
    fields:
      - {name: customer_id, type: relation, relation: {resource: customers}}
      - {name: note, type: string, required: true}
      - {name: fields, type: string, filterable: true}
  - name: events
    fields: [{name: n, type: integer}]
  - name: webhook
    fields: [{name: n, type: integer}]
  - name: order_items
    fields: [{name: n, type: integer}]
  - name: order__items
    fields: [{name: n, type: integer}]
  - name: items
    fields: [{name: n, type: integer}]
  - name: items_list
    fields: [{name: other, type: string}]
permissions:
  - {resource: orders, role: clerk, action: read}
  - {resource: orders, role: clerk, action: update, fields: [note]}
  - {resource: orders, role: drop, action: create, fields: [note]}
`

// TestRuntimeOpenAPINames: resource names that match fixed endpoints or
// each other never make the document invalid or mix schemas up; a
// relation to a resource the role may not read is not included; PUT takes
// the update fields; a create-only role's answer (its id) validates.
func TestRuntimeOpenAPINames(t *testing.T) {
	env := apptest.Start(t, database.SQLite, clashSchema, func(c *app.Config) { c.JWTSecret = jwtSecret })
	doc, _ := loadRuntimeDoc(t, env, apptest.AdminKey)
	ids := map[string]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			require.NotContains(t, ids, op.OperationID, "%s %s repeats the id of %s", method, path, ids[op.OperationID])
			ids[op.OperationID] = method + " " + path
		}
	}
	require.Equal(t, "GET /v1/_events", ids["listEvents"], "the fixed endpoint keeps its id")
	require.Contains(t, doc.Components.Schemas["items"].Value.Properties, "n")
	require.Contains(t, doc.Components.Schemas["items_list"].Value.Properties, "other")
	require.NotContains(t, doc.Components.Schemas["items"].Value.Properties, "other")
	for _, p := range doc.Paths.Value("/v1/orders").Get.Parameters {
		require.NotEqual(t, "fields__eq", p.Value.Name, "a field named like a list parameter is not offered as a filter")
	}

	clerk := signHS256(t, jwtSecret, jwt.MapClaims{"sub": "c-1", "role": "clerk"})
	cdoc, _ := loadRuntimeDoc(t, env, clerk)
	require.Nil(t, cdoc.Components.Schemas["customers"], "customers are not the clerk's to read")
	require.NotContains(t, cdoc.Components.Schemas["orders"].Value.Properties, "expand")
	put := cdoc.Paths.Value("/v1/orders/{id}").Put.RequestBody.Value.Content.Get("application/json").Schema
	require.Equal(t, "#/components/schemas/orders.replace", put.Ref)
	require.Equal(t, []string{"note"}, keys(put.Value.Properties))
	require.Equal(t, []string{"note"}, put.Value.Required)

	// The clerk's PUT, validated against the clerk's document.
	o := env.Admin("POST", "/v1/orders", map[string]any{"note": "a"})
	require.Equal(t, 201, o.Status, "%s", o.Body)
	chk := newOpenAPIChecker(t, cdoc)
	target := "/v1/orders/" + o.JSON()["id"].(string)
	chk.record(t, "PUT", target, env.Do("PUT", target, map[string]any{"note": "b"}, clerk))

	drop := signHS256(t, jwtSecret, jwt.MapClaims{"sub": "d-1", "role": "drop"})
	ddoc, _ := loadRuntimeDoc(t, env, drop)
	r := env.Do("POST", "/v1/orders", map[string]any{"note": "from drop"}, drop)
	require.Equal(t, 201, r.Status, "%s", r.Body)
	newOpenAPIChecker(t, ddoc).record(t, "POST", "/v1/orders", r)
	static := loadOpenAPI(t)
	newOpenAPIChecker(t, static).record(t, "POST", "/v1/orders", r)
}

func TestOpenAPIAcceptNegotiation(t *testing.T) {
	env := apptest.Start(t, database.SQLite, "resources: []\n")
	for accept, yamlWanted := range map[string]bool{
		"":                                       false,
		"application/yaml":                       true,
		"application/json, application/yaml;q=0": false,
		"application/json;q=0.5, text/yaml":      true,
		"application/yaml, application/json":     false,
	} {
		r := env.Do("GET", "/v1/_openapi", nil, "", "Accept", accept)
		require.Equal(t, 200, r.Status)
		require.Equal(t, yamlWanted, r.Header.Get("Content-Type") == "application/yaml", "Accept %q", accept)
		require.Equal(t, "Accept, Authorization", r.Header.Get("Vary"))
	}
}
