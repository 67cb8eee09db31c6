package resources

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/stretchr/testify/require"
)

// mustParseSchema parses a document that the test expects to be valid.
func mustParseSchema(t testing.TB, doc string) *Schema {
	t.Helper()
	s, err := ParseSchema([]byte(doc))
	require.NoError(t, err)
	return s
}

// requireSchemaProblem asserts that err is a *SchemaError with a problem at
// path whose rule is rule (any rule when rule is empty).
func requireSchemaProblem(t *testing.T, err error, path, rule string) {
	t.Helper()
	require.Error(t, err)
	var se *SchemaError
	require.True(t, errors.As(err, &se), "want *SchemaError, got %T: %v", err, err)
	for _, p := range se.Problems {
		if p.Field == path && (rule == "" || p.Rule == rule) {
			return
		}
	}
	require.Failf(t, "problem not reported", "want a problem at %q (rule %q), got %+v", path, rule, se.Problems)
}

const validYAML = `
resources:
  - name: customers
    description: People who buy things
    softDelete: true
    fields:
      - {name: name, type: string, required: true, sortable: true, filterable: true,
         validations: [{rule: minLength, value: 1}, {rule: maxLength, value: 200}]}
      - {name: email, type: string, unique: true, validations: [{rule: email}]}
      - {name: tier, type: enum, enumValues: [free, pro], default: free}
      - {name: birth_date, type: date, default: "2000-01-01"}
      - {name: owner_id, type: uuid}
    classifications:
      is_pro: "tier == 'pro'"
  - name: orders
    fields:
      - {name: customer_id, type: relation, required: true, relation: {resource: customers, onDelete: cascade}}
      - {name: helper_id, type: relation, relation: {resource: customers}}
      - {name: backup_id, type: relation, relation: {resource: customers, onDelete: setNull}}
      - {name: quantity, type: integer, default: 1, validations: [{rule: min, value: 1}, {rule: max, value: 99}]}
      - {name: price, type: number, validations: [{rule: min, value: 0}, {rule: integer}]}
      - {name: paid, type: boolean, default: false}
      - {name: placed_at, type: datetime, default: "2026-01-02T03:04:05+02:00"}
      - {name: sku, type: string, validations: [{rule: pattern, value: "^[A-Z]+$"}]}
      - {name: site, type: text, validations: [{rule: url}]}
      - {name: attrs, type: json, default: {a: [1, 2]}}
permissions:
  - {resource: orders, role: user, action: read, fields: [quantity, price, id, created_at],
     filters: [{field: customer_id, operator: eq, claim: sub}]}
  - {resource: orders, role: user, action: create, fields: [quantity, customer_id],
     checks: [{field: customer_id, operator: eq, claim: sub}, {field: quantity, operator: in, value: [1, 2]}]}
  - {resource: customers, role: user, action: update, checks: [{field: tier, operator: neq, value: pro}]}
  - {resource: customers, role: user, action: delete, fields: [deleted_at]}
`

const validJSON = `{
  "resources": [
    {"name": "customers", "softDelete": true, "fields": [
      {"name": "name", "type": "string", "required": true, "validations": [{"rule": "minLength", "value": 1}]},
      {"name": "tier", "type": "enum", "enumValues": ["free", "pro"], "default": "free"}
    ]},
    {"name": "orders", "fields": [
      {"name": "customer_id", "type": "relation", "relation": {"resource": "customers"}},
      {"name": "quantity", "type": "integer", "default": 2},
      {"name": "placed_at", "type": "datetime", "default": "2026-01-02T03:04:05+02:00"}
    ]}
  ],
  "permissions": [
    {"resource": "orders", "role": "user", "action": "read", "filters": [{"field": "customer_id", "operator": "eq", "claim": "sub"}]}
  ]
}`

func TestParseSchemaValid(t *testing.T) {
	t.Parallel()
	placed := time.Date(2026, 1, 2, 1, 4, 5, 0, time.UTC)
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, s *Schema)
	}{
		{"yaml", validYAML, func(t *testing.T, s *Schema) {
			require.Len(t, s.Resources, 2)
			require.Len(t, s.Permissions, 4)
			cust, orders := s.Resource("customers"), s.Resource("orders")
			require.NotNil(t, cust)
			require.NotNil(t, orders)
			require.True(t, cust.SoftDelete)
			require.Equal(t, "People who buy things", cust.Description)
			require.Equal(t, map[string]string{"is_pro": "tier == 'pro'"}, cust.Classifications)
			require.Equal(t, []string{"free", "pro"}, cust.Field("tier").EnumValues)
			require.Equal(t, "free", cust.Field("tier").Default)
			require.Equal(t, "2000-01-01", cust.Field("birth_date").Default)
			require.Equal(t, Cascade, orders.Field("customer_id").Relation.OnDelete)
			require.Equal(t, Restrict, orders.Field("helper_id").Relation.OnDelete, "onDelete defaults to restrict")
			require.Equal(t, SetNull, orders.Field("backup_id").Relation.OnDelete)
			require.Equal(t, int64(1), orders.Field("quantity").Default, "defaults are coerced to canonical values")
			require.Equal(t, false, orders.Field("paid").Default)
			require.Equal(t, placed, orders.Field("placed_at").Default)
			require.Equal(t, map[string]any{"a": []any{float64(1), float64(2)}}, orders.Field("attrs").Default)
			require.NotNil(t, orders.Field("sku").pattern, "pattern is compiled")
			// System columns are reachable through Column, deleted_at only with soft delete.
			require.NotNil(t, cust.Column(ColDeletedAt))
			require.Nil(t, orders.Column(ColDeletedAt))
			require.Equal(t, TypeUUID, orders.Column(ColID).Type)
		}},
		{"json", validJSON, func(t *testing.T, s *Schema) {
			require.Len(t, s.Resources, 2)
			orders := s.Resource("orders")
			require.Equal(t, Restrict, orders.Field("customer_id").Relation.OnDelete)
			require.Equal(t, int64(2), orders.Field("quantity").Default)
			require.Equal(t, placed, orders.Field("placed_at").Default)
			require.Equal(t, "eq", s.Permissions[0].Filters[0].Operator)
		}},
		{"json with leading space", "  \n" + validJSON, func(t *testing.T, s *Schema) {
			require.Len(t, s.Resources, 2)
		}},
		{"empty document", "", func(t *testing.T, s *Schema) {
			require.Empty(t, s.Resources)
		}},
		{"empty resources", "resources: []\n", func(t *testing.T, s *Schema) {
			require.Empty(t, s.Resources)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSchema([]byte(tt.doc))
			require.NoError(t, err)
			tt.check(t, s)
		})
	}
}

// oneResource wraps field lines in a document with a single resource "items"
// and an extra resource "owners" that relations may point at.
func oneResource(fields string) string {
	return "resources:\n  - name: items\n    fields:\n" + fields +
		"  - name: owners\n    fields:\n      - {name: name, type: string}\n"
}

// withPermission adds one permission line to a valid two-resource document.
func withPermission(perm string) string {
	return oneResource("      - {name: title, type: string}\n      - {name: meta, type: json}\n") +
		"permissions:\n  - " + perm + "\n"
}

func TestParseSchemaInvalid(t *testing.T) {
	t.Parallel()
	f0 := "resources[0].fields[0]"
	tests := []struct {
		name string
		doc  string
		path string
		rule string
	}{
		{"resource name with capital", "resources:\n  - {name: Items, fields: []}\n", "resources[0].name", "pattern"},
		{"resource name with dash", "resources:\n  - {name: my-items, fields: []}\n", "resources[0].name", "pattern"},
		{"resource name with leading underscore", "resources:\n  - {name: _items, fields: []}\n", "resources[0].name", "pattern"},
		{"resource name with leading digit", "resources:\n  - {name: 1items, fields: []}\n", "resources[0].name", "pattern"},
		{"resource name too long", "resources:\n  - {name: a" + strings.Repeat("b", 63) + ", fields: []}\n", "resources[0].name", "pattern"},
		{"resource name empty", "resources:\n  - {fields: []}\n", "resources[0].name", "pattern"},
		{"resource name herald_", "resources:\n  - {name: herald_events, fields: []}\n", "resources[0].name", "pattern"},
		{"duplicate resource", "resources:\n  - {name: items, fields: []}\n  - {name: items, fields: []}\n", "resources[1].name", "unique"},
		{"null resource", "resources:\n  - null\n", "resources[0]", "required"},
		{"null field", oneResource("      - null\n"), f0, "required"},
		{"bad field name", oneResource("      - {name: Title, type: string}\n"), f0 + ".name", "pattern"},
		{"duplicate field", oneResource("      - {name: title, type: string}\n      - {name: title, type: text}\n"), "resources[0].fields[1].name", "unique"},
		{"reserved id", oneResource("      - {name: id, type: uuid}\n"), f0 + ".name", "reserved"},
		{"reserved created_at", oneResource("      - {name: created_at, type: datetime}\n"), f0 + ".name", "reserved"},
		{"reserved updated_at", oneResource("      - {name: updated_at, type: datetime}\n"), f0 + ".name", "reserved"},
		{"reserved deleted_at", oneResource("      - {name: deleted_at, type: datetime}\n"), f0 + ".name", "reserved"},
		{"reserved expand", oneResource("      - {name: expand, type: json}\n"), f0 + ".name", "reserved"},
		{"unknown type", oneResource("      - {name: title, type: varchar}\n"), f0 + ".type", "enum"},
		{"missing type", oneResource("      - {name: title}\n"), f0 + ".type", "enum"},
		{"enum without enumValues", oneResource("      - {name: status, type: enum}\n"), f0 + ".enumValues", "required"},
		{"enum with empty value", oneResource("      - {name: status, type: enum, enumValues: [a, '']}\n"), f0 + ".enumValues", "pattern"},
		{"enumValues on string", oneResource("      - {name: status, type: string, enumValues: [a, b]}\n"), f0 + ".enumValues", "type"},
		{"relation without relation", oneResource("      - {name: owner_id, type: relation}\n"), f0 + ".relation", "required"},
		{"relation without resource", oneResource("      - {name: owner_id, type: relation, relation: {onDelete: cascade}}\n"), f0 + ".relation", "required"},
		{"relation on uuid", oneResource("      - {name: owner_id, type: uuid, relation: {resource: owners}}\n"), f0 + ".relation", "type"},
		{"relation to unknown resource", oneResource("      - {name: owner_id, type: relation, relation: {resource: ghosts}}\n"), f0 + ".relation.resource", "relation"},
		{"bad onDelete", oneResource("      - {name: owner_id, type: relation, relation: {resource: owners, onDelete: nullify}}\n"), f0 + ".relation.onDelete", "enum"},
		{"setNull on required", oneResource("      - {name: owner_id, type: relation, required: true, relation: {resource: owners, onDelete: setNull}}\n"), f0 + ".relation.onDelete", "relation"},
		{"json unique", oneResource("      - {name: meta, type: json, unique: true}\n"), f0 + ".type", "type"},
		{"json sortable", oneResource("      - {name: meta, type: json, sortable: true}\n"), f0 + ".type", "type"},
		{"json filterable", oneResource("      - {name: meta, type: json, filterable: true}\n"), f0 + ".type", "type"},
		{"unknown validation rule", oneResource("      - {name: title, type: string, validations: [{rule: lowercase}]}\n"), f0 + ".validations[0].rule", "enum"},
		{"minLength on number", oneResource("      - {name: price, type: number, validations: [{rule: minLength, value: 1}]}\n"), f0 + ".validations[0]", "minLength"},
		{"minLength negative", oneResource("      - {name: title, type: string, validations: [{rule: minLength, value: -1}]}\n"), f0 + ".validations[0]", "minLength"},
		{"maxLength fractional", oneResource("      - {name: title, type: string, validations: [{rule: maxLength, value: 1.5}]}\n"), f0 + ".validations[0]", "maxLength"},
		{"min on string", oneResource("      - {name: title, type: string, validations: [{rule: min, value: 1}]}\n"), f0 + ".validations[0]", "min"},
		{"max without value", oneResource("      - {name: price, type: number, validations: [{rule: max}]}\n"), f0 + ".validations[0]", "max"},
		{"email on integer", oneResource("      - {name: n, type: integer, validations: [{rule: email}]}\n"), f0 + ".validations[0]", "email"},
		{"integer on string", oneResource("      - {name: s, type: string, validations: [{rule: integer}]}\n"), f0 + ".validations[0]", "integer"},
		{"bad regex pattern", oneResource("      - {name: title, type: string, validations: [{rule: pattern, value: '([a-z'}]}\n"), f0 + ".validations[0]", "pattern"},
		{"pattern on number", oneResource("      - {name: price, type: number, validations: [{rule: pattern, value: '^1$'}]}\n"), f0 + ".validations[0]", "pattern"},
		{"integer default string", oneResource("      - {name: n, type: integer, default: x}\n"), f0 + ".default", "type"},
		{"integer default fractional", oneResource("      - {name: n, type: integer, default: 1.5}\n"), f0 + ".default", "type"},
		{"boolean default string", oneResource("      - {name: b, type: boolean, default: 'yes'}\n"), f0 + ".default", "type"},
		{"enum default not a value", oneResource("      - {name: s, type: enum, enumValues: [a, b], default: c}\n"), f0 + ".default", "type"},
		{"datetime default bad", oneResource("      - {name: at, type: datetime, default: yesterday}\n"), f0 + ".default", "type"},
		{"date default bad", oneResource("      - {name: on, type: date, default: '2026-13-01'}\n"), f0 + ".default", "type"},
		{"uuid default bad", oneResource("      - {name: u, type: uuid, default: nope}\n"), f0 + ".default", "type"},
		{"string default number", oneResource("      - {name: s, type: string, default: 3}\n"), f0 + ".default", "type"},
		{"permission unknown resource", withPermission("{resource: ghosts, role: user, action: read}"), "permissions[0].resource", "relation"},
		{"permission unknown field", withPermission("{resource: items, role: user, action: read, fields: [title, nope]}"), "permissions[0].fields", "unknown"},
		{"permission deleted_at without soft delete", withPermission("{resource: items, role: user, action: read, fields: [deleted_at]}"), "permissions[0].fields", "unknown"},
		{"permission admin role", withPermission("{resource: items, role: admin, action: read}"), "permissions[0].role", "required"},
		{"permission empty role", withPermission("{resource: items, action: read}"), "permissions[0].role", "required"},
		{"permission bad action", withPermission("{resource: items, role: user, action: list}"), "permissions[0].action", "enum"},
		{"filter unknown field", withPermission("{resource: items, role: user, action: read, filters: [{field: nope, operator: eq, claim: sub}]}"), "permissions[0].filters[0].field", "unknown"},
		{"filter bad operator", withPermission("{resource: items, role: user, action: read, filters: [{field: title, operator: gt, claim: sub}]}"), "permissions[0].filters[0].operator", "enum"},
		{"filter both claim and value", withPermission("{resource: items, role: user, action: read, filters: [{field: title, operator: eq, claim: sub, value: x}]}"), "permissions[0].filters[0]", "required"},
		{"filter neither claim nor value", withPermission("{resource: items, role: user, action: read, filters: [{field: title, operator: eq}]}"), "permissions[0].filters[0]", "required"},
		{"check bad operator", withPermission("{resource: items, role: user, action: create, checks: [{field: title, operator: like, value: x}]}"), "permissions[0].checks[0].operator", "enum"},
		{"check neither claim nor value", withPermission("{resource: items, role: user, action: update, checks: [{field: title, operator: eq}]}"), "permissions[0].checks[0]", "required"},
		{"checks on read", withPermission("{resource: items, role: user, action: read, checks: [{field: title, operator: eq, claim: sub}]}"), "permissions[0].checks", "enum"},
		{"checks on delete", withPermission("{resource: items, role: user, action: delete, checks: [{field: title, operator: eq, claim: sub}]}"), "permissions[0].checks", "enum"},
		{"filters on create", withPermission("{resource: items, role: user, action: create, filters: [{field: title, operator: eq, claim: sub}]}"), "permissions[0].filters", "enum"},
		{"yaml syntax", "resources: [\n", "", "syntax"},
		{"yaml wrong shape", "resources: {name: items}\n", "", "syntax"},
		{"json syntax", `{"resources": [}`, "", "syntax"},
		{"json unknown key", `{"resources": [{"name": "items", "fields": [], "soft_delete": true}]}`, "", "syntax"},
		{"json trailing wrong type", `{"resources": [{"name": "items", "fields": [{"name": "t", "type": "string", "required": "yes"}]}]}`, "", "syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSchema([]byte(tt.doc))
			require.Nil(t, s)
			requireSchemaProblem(t, err, tt.path, tt.rule)
		})
	}
}

func TestParseSchemaReportsEveryProblem(t *testing.T) {
	t.Parallel()
	doc := oneResource("      - {name: id, type: uuid}\n      - {name: price, type: money}\n      - {name: s, type: enum}\n") +
		"permissions:\n  - {resource: items, role: user, action: peek}\n"
	_, err := ParseSchema([]byte(doc))
	for _, path := range []string{"resources[0].fields[0].name", "resources[0].fields[1].type", "resources[0].fields[2].enumValues", "permissions[0].action"} {
		requireSchemaProblem(t, err, path, "")
	}
	var se *SchemaError
	require.ErrorAs(t, err, &se)
	require.Len(t, se.Problems, 4)
	require.Contains(t, err.Error(), "resources[0].fields[1].type: unknown type \"money\"")
}

func TestParseSchemaStrictYAML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		key  string
	}{
		{"field option", oneResource("      - {name: title, type: string, filterabel: true}\n"), "filterabel"},
		{"resource option", "resources:\n  - name: items\n    softdelete: true\n    fields: []\n", "softdelete"},
		{"top level", "resource:\n  - {name: items, fields: []}\n", "resource"},
		{"relation option", oneResource("      - {name: o, type: relation, relation: {resource: owners, on_delete: cascade}}\n"), "on_delete"},
		{"permission option", withPermission("{resource: items, role: user, action: read, filter: []}"), "filter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseSchema([]byte(tt.doc))
			requireSchemaProblem(t, err, "", "syntax")
			var se *SchemaError
			require.ErrorAs(t, err, &se)
			require.Contains(t, se.Problems[0].Message, tt.key)
		})
	}
}

// coerceSchema declares one field of each type for the coerce and validate
// tests, so they run on fields as ParseSchema leaves them.
const coerceSchema = `
resources:
  - name: things
    fields:
      - {name: s, type: string, validations: [{rule: minLength, value: 2}, {rule: maxLength, value: 5}, {rule: pattern, value: "^[a-zé]+$"}]}
      - {name: txt, type: text}
      - {name: i, type: integer, validations: [{rule: min, value: -10}, {rule: max, value: 10}]}
      - {name: n, type: number, validations: [{rule: min, value: 0}, {rule: max, value: 100.5}, {rule: integer}]}
      - {name: b, type: boolean}
      - {name: u, type: uuid}
      - {name: r, type: relation, relation: {resource: things}}
      - {name: dt, type: datetime}
      - {name: d, type: date}
      - {name: e, type: enum, enumValues: [draft, live]}
      - {name: j, type: json}
      - {name: mail, type: string, validations: [{rule: email}]}
      - {name: link, type: text, validations: [{rule: url}]}
`

func TestFieldCoerce(t *testing.T) {
	t.Parallel()
	res := mustParseSchema(t, coerceSchema).Resource("things")
	const id = "0190a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
	tests := []struct {
		name    string
		field   string
		in      any
		want    any
		wantErr bool
	}{
		{"nil stays nil", "i", nil, nil, false},
		{"string", "s", "abc", "abc", false},
		{"string rejects number", "s", float64(3), nil, true},
		{"text rejects bool", "txt", true, nil, true},
		{"integer from json.Number", "i", json.Number("3"), int64(3), false},
		{"integer from float64", "i", float64(4), int64(4), false},
		{"integer from negative", "i", json.Number("-7"), int64(-7), false},
		{"integer beyond float precision", "i", json.Number("9007199254740993"), int64(9007199254740993), false},
		{"integer rejects 1.5", "i", 1.5, nil, true},
		{"integer rejects json 1.5", "i", json.Number("1.5"), nil, true},
		{"integer rejects string", "i", "3", nil, true},
		{"integer rejects huge", "i", 1e300, nil, true},
		{"number from json.Number", "n", json.Number("2.5"), 2.5, false},
		{"number from int64", "n", int64(2), float64(2), false},
		{"number rejects string", "n", "2.5", nil, true},
		{"number rejects NaN", "n", json.Number("NaN"), nil, true},
		{"boolean", "b", false, false, false},
		{"boolean rejects string", "b", "true", nil, true},
		{"uuid normalises case", "u", strings.ToUpper(id), id, false},
		{"uuid rejects garbage", "u", "not-a-uuid", nil, true},
		{"uuid rejects no dashes", "u", strings.ReplaceAll(id, "-", ""), nil, true},
		{"uuid rejects braces", "u", "{" + id + "}", nil, true},
		{"uuid rejects number", "u", float64(1), nil, true},
		{"relation is a uuid", "r", id, id, false},
		{"relation rejects garbage", "r", "42", nil, true},
		{"datetime to UTC", "dt", "2026-01-02T03:04:05+02:00", time.Date(2026, 1, 2, 1, 4, 5, 0, time.UTC), false},
		{"datetime truncates to micro", "dt", "2026-01-02T03:04:05.123456789Z", time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC), false},
		{"datetime from time.Time", "dt", time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)), time.Date(2026, 1, 2, 2, 4, 5, 0, time.UTC), false},
		{"datetime rejects date only", "dt", "2026-01-02", nil, true},
		{"datetime rejects garbage", "dt", "yesterday", nil, true},
		{"datetime rejects number", "dt", float64(0), nil, true},
		{"date", "d", "2026-01-02", "2026-01-02", false},
		{"date rejects month 13", "d", "2026-13-01", nil, true},
		{"date rejects Feb 30", "d", "2026-02-30", nil, true},
		{"date rejects datetime", "d", "2026-01-02T00:00:00Z", nil, true},
		{"enum", "e", "live", "live", false},
		{"enum rejects other", "e", "gone", nil, true},
		{"json normalises numbers", "j", map[string]any{"a": json.Number("1")}, map[string]any{"a": float64(1)}, false},
		{"json scalar", "j", "x", "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := res.Field(tt.field)
			require.NotNil(t, f)
			got, err := f.coerce(tt.in)
			if tt.wantErr {
				require.Error(t, err)
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestFieldValidate(t *testing.T) {
	t.Parallel()
	res := mustParseSchema(t, coerceSchema).Resource("things")
	check := validator.New()
	tests := []struct {
		name  string
		field string
		in    any // canonical value, as coerce returns it
		rules []string
	}{
		{"string ok", "s", "abc", nil},
		{"string counts runes", "s", "ééééé", nil},
		{"minLength", "s", "a", []string{"minLength"}},
		{"maxLength", "s", "abcdef", []string{"maxLength"}},
		{"pattern", "s", "AB", []string{"pattern"}},
		{"minLength and pattern", "s", "A", []string{"minLength", "pattern"}},
		{"integer in range", "i", int64(10), nil},
		{"integer min", "i", int64(-11), []string{"min"}},
		{"integer max", "i", int64(11), []string{"max"}},
		{"number ok", "n", float64(100), nil},
		{"number min and integer", "n", -0.5, []string{"min", "integer"}},
		{"number max and integer", "n", 100.75, []string{"max", "integer"}},
		{"number integer", "n", 2.5, []string{"integer"}},
		{"email ok", "mail", "ada@example.com", nil},
		{"email", "mail", "ada-at-example", []string{"email"}},
		{"url ok", "link", "https://example.com/a?b=c", nil},
		{"url", "link", "not a url", []string{"url"}},
		{"no rules", "txt", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := res.Field(tt.field)
			require.NotNil(t, f)
			probs := f.validate(tt.in, check)
			var rules []string
			for _, p := range probs {
				require.Equal(t, tt.field, p.Field)
				require.NotEmpty(t, p.Message)
				rules = append(rules, p.Rule)
			}
			require.Equal(t, tt.rules, rules)
		})
	}
}

// change is a Change without its human-readable detail.
type change struct {
	Op, Resource, Field string
	Destructive         bool
}

func TestDiff(t *testing.T) {
	t.Parallel()
	const base = `
resources:
  - name: owners
    fields:
      - {name: name, type: string}
  - name: teams
    fields:
      - {name: name, type: string}
  - name: items
    fields:
      - {name: title, type: string, validations: [{rule: pattern, value: "^[a-z]+$"}]}
      - {name: status, type: enum, enumValues: [draft, live]}
      - {name: owner_id, type: relation, relation: {resource: owners}}
      - {name: qty, type: integer}
`
	edit := func(old, new string) string {
		require.Contains(t, base, old)
		return strings.Replace(base, old, new, 1)
	}
	tests := []struct {
		name string
		from string // empty: no schema applied yet
		to   string
		want []change
	}{
		{"first start", "", "resources:\n  - {name: items, fields: [{name: t, type: string}]}\n",
			[]change{{"createResource", "items", "", false}}},
		{"unchanged", base, base, nil},
		{"new resource", base, base + "  - {name: tags, fields: [{name: t, type: string}]}\n",
			[]change{{"createResource", "tags", "", false}}},
		{"new field", base, base + "      - {name: note, type: text}\n",
			[]change{{"addField", "items", "note", false}}},
		{"dropped field", base, edit("      - {name: qty, type: integer}\n", ""),
			[]change{{"dropField", "items", "qty", true}}},
		{"dropped resource", base, edit("  - name: teams\n    fields:\n      - {name: name, type: string}\n", ""),
			[]change{{"dropResource", "teams", "", true}}},
		{"retyped field", base, edit("{name: qty, type: integer}", "{name: qty, type: string}"),
			[]change{{"alterField", "items", "qty", true}}},
		{"relation retargeted", base, edit("relation: {resource: owners}", "relation: {resource: teams}"),
			[]change{{"alterField", "items", "owner_id", true}}},
		{"enum values changed", base, edit("enumValues: [draft, live]", "enumValues: [draft, live, ended]"),
			[]change{{"alterField", "items", "status", false}}},
		{"required added", base, edit("{name: qty, type: integer}", "{name: qty, type: integer, required: true}"),
			[]change{{"alterField", "items", "qty", false}}},
		{"onDelete changed", base, edit("relation: {resource: owners}", "relation: {resource: owners, onDelete: cascade}"),
			[]change{{"alterField", "items", "owner_id", false}}},
		{"option changed", base, edit("{name: qty, type: integer}", "{name: qty, type: integer, sortable: true}"),
			[]change{{"alterField", "items", "qty", false}}},
		{"soft delete on", base, edit("  - name: items\n", "  - name: items\n    softDelete: true\n"),
			[]change{{"alterField", "items", ColDeletedAt, false}}},
		{"soft delete off", edit("  - name: items\n", "  - name: items\n    softDelete: true\n"), base,
			[]change{{"alterField", "items", ColDeletedAt, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			from := &Schema{}
			if tt.from != "" {
				from = mustParseSchema(t, tt.from)
			}
			plan := Diff(from, mustParseSchema(t, tt.to))
			var got []change
			var destructive []change
			for _, c := range plan.Changes {
				got = append(got, change{c.Op, c.Resource, c.Field, c.Destructive})
			}
			for _, c := range plan.Destructive() {
				destructive = append(destructive, change{c.Op, c.Resource, c.Field, c.Destructive})
			}
			require.Equal(t, tt.want, got)
			var wantDestructive []change
			for _, c := range tt.want {
				if c.Destructive {
					wantDestructive = append(wantDestructive, c)
				}
			}
			require.Equal(t, wantDestructive, destructive)
		})
	}
}

func TestSchemaJSONTrailingData(t *testing.T) {
	for _, doc := range []string{`{"resources":[]}}`, `{"resources":[]}]`, `{"resources":[]} {}`} {
		_, err := ParseSchema([]byte(doc))
		require.ErrorContains(t, err, "data after the JSON document", doc)
	}
	_, err := ParseSchema([]byte("{\"resources\":[]}\n"))
	require.NoError(t, err)
}

func TestCursorTrailingData(t *testing.T) {
	sort := []SortKey{{Field: systemFields[ColID]}}
	good := base64.RawURLEncoding.EncodeToString([]byte(`["01a23456-0000-7000-8000-000000000001"]`))
	_, err := decodeCursor(sort, good)
	require.NoError(t, err)
	for _, raw := range []string{`["01a23456-0000-7000-8000-000000000001"]]`, `["01a23456-0000-7000-8000-000000000001"]}`} {
		_, err := decodeCursor(sort, base64.RawURLEncoding.EncodeToString([]byte(raw)))
		require.Error(t, err, raw)
	}
}
