package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/goccy/go-yaml"
	"github.com/labstack/echo/v4"

	"github.com/herald-dev/herald/auth"
	"github.com/herald-dev/herald/resources"
)

// openAPI serves GET /v1/_openapi: the static document (openapi.yaml,
// every fixed endpoint) with the generic /v1/{resource} paths replaced by
// one set of paths and schemas per resource the caller's role may use, so
// a generated client types each field. The generic paths serve as
// templates: each resource gets a copy of their operations with the
// record schemas, the filter parameters and the operation ids made
// concrete. Documents are cached per (schema version, role).
type openAPI struct {
	base []byte // the static document as JSON; nil when none was given

	mu      sync.Mutex
	version int
	cache   map[string][]byte // role -> JSON document of that version
}

func newOpenAPI(static []byte) (*openAPI, error) {
	o := &openAPI{cache: map[string][]byte{}}
	if len(static) == 0 {
		return o, nil
	}
	var doc any
	if err := yaml.Unmarshal(static, &doc); err != nil {
		return nil, fmt.Errorf("api: the OpenAPI document: %w", err)
	}
	base, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("api: the OpenAPI document: %w", err)
	}
	o.base = base
	return o, nil
}

// minimalDoc stands in for the static document when the server was built
// without one (tests of the API alone).
const minimalDoc = `{"openapi":"3.1.0","info":{"title":"Herald","version":"1"},"paths":{},"components":{"schemas":{}}}`

func (s *Server) serveOpenAPI(c echo.Context) error {
	raw, err := s.openAPIDocument(c)
	if err != nil {
		return err
	}
	if strings.Contains(c.Request().Header.Get(echo.HeaderAccept), "yaml") {
		out, err := yaml.JSONToYAML(raw)
		if err != nil {
			return err
		}
		return c.Blob(http.StatusOK, "application/yaml", out)
	}
	return c.JSONBlob(http.StatusOK, raw)
}

// openAPIDocument returns the caller's document as JSON.
func (s *Server) openAPIDocument(c echo.Context) ([]byte, error) {
	o := s.openapi
	if s.store == nil {
		if o.base == nil {
			return []byte(minimalDoc), nil
		}
		return o.base, nil
	}
	ctx := c.Request().Context()
	caps, version, err := s.store.Capabilities(ctx)
	if err != nil {
		return nil, err
	}
	role := auth.FromContext(ctx).Role
	o.mu.Lock()
	if o.version != version {
		o.version, o.cache = version, map[string][]byte{}
	}
	if doc, ok := o.cache[role]; ok {
		o.mu.Unlock()
		return doc, nil
	}
	o.mu.Unlock()
	doc, err := o.build(caps)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	if o.version == version && len(o.cache) < 100 {
		o.cache[role] = doc
	}
	o.mu.Unlock()
	return doc, nil
}

// build makes the document for one set of capabilities.
func (o *openAPI) build(caps []resources.Capability) ([]byte, error) {
	base := o.base
	if base == nil {
		base = []byte(minimalDoc)
	}
	var doc map[string]any
	if err := json.Unmarshal(base, &doc); err != nil {
		return nil, err
	}
	paths := mapOf(doc, "paths")
	comps := mapOf(doc, "components")
	schemas := mapOf(comps, "schemas")
	templates := map[string]map[string]any{}
	for p, item := range paths {
		if suffix, ok := strings.CutPrefix(p, "/v1/{resource}"); ok {
			templates[suffix], _ = item.(map[string]any)
			delete(paths, p)
		}
	}
	var tags []any
	for _, c := range caps {
		g := &generator{doc: doc, comps: comps, schemas: schemas, c: c, name: c.Resource.Name}
		g.addSchemas()
		for suffix, tmpl := range templates {
			if item := g.pathItem(suffix, tmpl); item != nil {
				paths["/v1/"+g.name+suffix] = item
			}
		}
		tag := map[string]any{"name": g.name, "description": "Records of the resource " + g.name + "."}
		if d := c.Resource.Description; d != "" {
			tag["description"] = d
		}
		tags = append(tags, tag)
	}
	if old, ok := doc["tags"].([]any); ok {
		tags = append(old, tags...)
	}
	if len(tags) > 0 {
		doc["tags"] = tags
	}
	return json.Marshal(doc)
}

func mapOf(m map[string]any, key string) map[string]any {
	v, ok := m[key].(map[string]any)
	if !ok {
		v = map[string]any{}
		m[key] = v
	}
	return v
}

// generator makes one resource's part of the document.
type generator struct {
	doc, comps, schemas map[string]any
	c                   resources.Capability
	name                string
}

// Component names of the resource's schemas.
func (g *generator) schemaName(suffix string) string {
	if suffix == "" {
		return g.name
	}
	return g.name + "_" + suffix
}

// operations on each template path and the capability each needs.
func (g *generator) allowed(suffix, method string) bool {
	c := g.c
	switch {
	case method == "get":
		return c.Read != nil
	case method == "post" && suffix == "":
		return c.Create != nil
	case method == "patch" || method == "put":
		return c.Update != nil
	case method == "delete":
		return c.Delete
	}
	return false
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// pathItem copies a template path item for the resource, keeping only the
// operations the caller may use; nil when none is left.
func (g *generator) pathItem(suffix string, tmpl map[string]any) map[string]any {
	item := map[string]any{}
	ops := 0
	for k, v := range tmpl {
		isMethod := false
		for _, m := range httpMethods {
			if k == m {
				isMethod = true
			}
		}
		if !isMethod {
			item[k] = g.rewrite(deepCopy(v), "")
			continue
		}
		if !g.allowed(suffix, k) {
			continue
		}
		op := g.rewrite(deepCopy(v), k).(map[string]any)
		if id, ok := op["operationId"].(string); ok {
			op["operationId"] = strings.NewReplacer("Records", pascal(g.name), "Record", pascal(g.name)).Replace(id)
		}
		op["tags"] = []any{g.name}
		item[k] = op
		ops++
	}
	if ops == 0 {
		return nil
	}
	if params, ok := item["parameters"].([]any); ok {
		item["parameters"] = g.params(params)
	}
	return item
}

// rewrite walks a copied template: the record schemas become the
// resource's, the generic parameters its real ones, and responses or
// request bodies that carry a record schema are inlined so they can be
// made concrete. method is the operation's ("patch" takes the update
// schema), or "" outside operations.
func (g *generator) rewrite(v any, method string) any {
	switch t := v.(type) {
	case map[string]any:
		if ref, ok := t["$ref"].(string); ok {
			if name, ok := strings.CutPrefix(ref, "#/components/schemas/"); ok {
				if s := g.recordSchemaRef(name, method); s != "" {
					t["$ref"] = "#/components/schemas/" + s
				}
				return t
			}
			for _, kind := range []string{"responses", "requestBodies"} {
				if name, ok := strings.CutPrefix(ref, "#/components/"+kind+"/"); ok {
					comp := mapOf(g.comps, kind)[name]
					if raw, _ := json.Marshal(comp); strings.Contains(string(raw), `"#/components/schemas/Record`) {
						return g.rewrite(deepCopy(comp), method)
					}
				}
			}
			return t
		}
		if _, ok := t["schema"]; ok {
			// A media type or parameter: the template's examples are of
			// the generic record, not this resource's.
			delete(t, "example")
			delete(t, "examples")
		}
		for k, e := range t {
			if k == "parameters" {
				if params, ok := e.([]any); ok {
					t[k] = g.params(params)
					continue
				}
			}
			t[k] = g.rewrite(e, method)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = g.rewrite(e, method)
		}
		return t
	}
	return v
}

// recordSchemaRef names the resource's schema standing for a generic
// record schema, making it on first use; "" for other schemas.
func (g *generator) recordSchemaRef(name, method string) string {
	switch {
	case name == "Record":
		return g.schemaName("")
	case name == "RecordInput" && method == "patch":
		return g.schemaName("update")
	case name == "RecordInput":
		return g.schemaName("create")
	case strings.Contains(name, "Record"):
		own := g.schemaName(strings.ToLower(strings.Replace(name, "Record", "", 1)))
		if _, done := g.schemas[own]; !done {
			g.schemas[own] = map[string]any{} // no loop through itself
			g.schemas[own] = g.rewrite(deepCopy(g.schemas[name]), method)
		}
		return own
	}
	return ""
}

// params replaces the generic parameters with the resource's own.
func (g *generator) params(list []any) []any {
	out := make([]any, 0, len(list))
	for _, p := range list {
		ref, _ := p.(map[string]any)["$ref"].(string)
		switch strings.TrimPrefix(ref, "#/components/parameters/") {
		case "Resource":
			continue
		case "Filters":
			out = append(out, g.filterParams()...)
			continue
		case "Sort":
			out = append(out, g.listParam("_sort", "Sort by these sortable fields, comma-separated; a leading - sorts descending.", g.sortable(), true))
			continue
		case "Fields":
			out = append(out, g.listParam("fields", "Return only these fields, comma-separated.", g.readable(), false))
			continue
		case "Include":
			out = append(out, g.listParam("include", "Add the records these relation fields name under expand, comma-separated.", g.relations(), false))
			continue
		}
		out = append(out, g.rewrite(p, ""))
	}
	return out
}

func (g *generator) readable() []string {
	var out []string
	for _, f := range g.c.Read {
		out = append(out, f.Name)
	}
	return out
}

func (g *generator) sortable() []string {
	var out []string
	for _, f := range g.c.Read {
		if f.Sortable {
			out = append(out, f.Name)
		}
	}
	return out
}

func (g *generator) relations() []string {
	var out []string
	for _, f := range g.c.Read {
		if f.Type == resources.TypeRelation {
			out = append(out, f.Name)
		}
	}
	return out
}

// listParam is a comma-separated list of names, its pattern allowing only
// those (with a leading - when signed).
func (g *generator) listParam(name, desc string, names []string, signed bool) map[string]any {
	schema := map[string]any{"type": "string"}
	if len(names) > 0 {
		alt := make([]string, len(names))
		for i, n := range names {
			alt[i] = regexp.QuoteMeta(n)
		}
		item := "(" + strings.Join(alt, "|") + ")"
		if signed {
			item = "-?" + item
		}
		schema["pattern"] = "^" + item + "(," + item + ")*$"
		desc += " One of: " + strings.Join(names, ", ") + "."
	} else {
		schema["maxLength"] = 0
		desc += " This resource has none."
	}
	return map[string]any{"name": name, "in": "query", "required": false, "description": desc, "schema": schema}
}

// filterParams declares name=value and name__op=value for every readable
// filterable field and operator.
func (g *generator) filterParams() []any {
	var out []any
	for _, f := range g.c.Read {
		for _, op := range f.FilterOperators() {
			name := f.Name + "__" + op
			var schema map[string]any
			desc := fmt.Sprintf("Filter: %s %s the value.", f.Name, op)
			switch op {
			case "isnull":
				schema = map[string]any{"type": "boolean"}
				desc = fmt.Sprintf("Filter: %s is null (true) or not (false).", f.Name)
			case "like", "ilike":
				schema = map[string]any{"type": "string"}
				desc = fmt.Sprintf("Filter: %s matches the SQL pattern (%% any text, _ one character)%s.", f.Name,
					map[bool]string{true: ", ignoring case"}[op == "ilike"])
			case "in":
				schema = map[string]any{"type": "string"}
				desc = fmt.Sprintf("Filter: %s is one of these comma-separated values.", f.Name)
			default:
				schema = scalarSchema(f)
			}
			if op == "eq" {
				out = append(out, map[string]any{"name": f.Name, "in": "query", "required": false,
					"description": fmt.Sprintf("Filter: %s equals the value (also %s__eq).", f.Name, f.Name), "schema": schema})
			}
			out = append(out, map[string]any{"name": name, "in": "query", "required": false, "description": desc, "schema": schema})
		}
	}
	return out
}

// addSchemas adds the resource's record, create and update schemas.
func (g *generator) addSchemas() {
	r := g.c.Resource
	rec := map[string]any{"type": "object", "additionalProperties": false}
	if r.Description != "" {
		rec["description"] = r.Description
	}
	props := map[string]any{}
	for _, f := range g.c.Read {
		s := fieldSchema(f, f.Name == resources.ColDeletedAt || !f.Required)
		switch f.Name {
		case resources.ColID, resources.ColCreatedAt, resources.ColUpdatedAt, resources.ColDeletedAt:
			s["readOnly"] = true
		}
		props[f.Name] = s
	}
	if rels := g.relations(); len(rels) > 0 {
		ex := map[string]any{}
		for _, n := range rels {
			target := r.Field(n).Relation.Resource
			ex[n] = map[string]any{"oneOf": []any{map[string]any{"$ref": "#/components/schemas/" + target}, map[string]any{"type": "null"}},
				"description": "The " + target + " record " + n + " names, or null when it is missing or hidden (with include=" + n + ")."}
		}
		props[resources.ExpandKey] = map[string]any{"type": "object", "readOnly": true, "properties": ex, "additionalProperties": false}
	}
	rec["properties"] = props
	// Every field is optional in a response: fields= returns only those
	// asked for, and a role sees only its read fields.
	g.schemas[g.schemaName("")] = rec

	input := func(fields []*resources.Field, create bool) map[string]any {
		props := map[string]any{}
		var required []any
		if create {
			props[resources.ColID] = map[string]any{"type": "string", "format": "uuid",
				"description": "Optional: the client may choose the record's id (any UUID); Herald makes a UUIDv7 otherwise."}
		}
		for _, f := range fields {
			props[f.Name] = fieldSchema(f, !f.Required)
			if create && f.Required && f.Default == nil {
				required = append(required, f.Name)
			}
		}
		s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	}
	if g.c.Create != nil {
		s := input(g.c.Create, true)
		s["description"] = "A new " + r.Name + " record (POST), or a full replacement (PUT: absent fields take their default or null)."
		g.schemas[g.schemaName("create")] = s
	}
	if g.c.Update != nil {
		s := input(g.c.Update, false)
		s["description"] = "A partial update of a " + r.Name + " record (PATCH): only the fields sent change."
		g.schemas[g.schemaName("update")] = s
		if g.c.Create == nil {
			// PUT (a replace) refers to the create schema.
			g.schemas[g.schemaName("create")] = input(g.c.Update, true)
		}
	}
}

// fieldSchema is a field's JSON Schema, with its validations.
func fieldSchema(f *resources.Field, nullable bool) map[string]any {
	s := scalarSchema(f)
	desc := f.Description
	if f.Relation != nil {
		desc = strings.TrimSpace(desc + " The id of a " + f.Relation.Resource + " record.")
	}
	if desc != "" {
		s["description"] = desc
	}
	if f.Default != nil {
		s["default"] = f.Default
	}
	for _, v := range f.Validations {
		switch v.Rule {
		case "min":
			s["minimum"] = v.Value
		case "max":
			s["maximum"] = v.Value
		case "minLength":
			s["minLength"] = v.Value
		case "maxLength":
			s["maxLength"] = v.Value
		case "pattern":
			s["pattern"] = v.Value
		case "email":
			s["format"] = "email"
		case "url":
			s["format"] = "uri"
		case "integer":
			s["multipleOf"] = 1
		}
	}
	if nullable {
		switch t := s["type"].(type) {
		case string:
			s["type"] = []any{t, "null"}
		case []any:
			s["type"] = append(t, "null")
		}
		if e, ok := s["enum"].([]any); ok {
			s["enum"] = append(e, nil)
		}
	}
	return s
}

// scalarSchema is the JSON Schema of a field's type.
func scalarSchema(f *resources.Field) map[string]any {
	switch f.Type {
	case resources.TypeInteger:
		return map[string]any{"type": "integer", "format": "int64"}
	case resources.TypeNumber:
		return map[string]any{"type": "number", "format": "double"}
	case resources.TypeBoolean:
		return map[string]any{"type": "boolean"}
	case resources.TypeUUID, resources.TypeRelation:
		return map[string]any{"type": "string", "format": "uuid"}
	case resources.TypeDatetime:
		return map[string]any{"type": "string", "format": "date-time"}
	case resources.TypeDate:
		return map[string]any{"type": "string", "format": "date"}
	case resources.TypeEnum:
		vals := make([]any, len(f.EnumValues))
		for i, v := range f.EnumValues {
			vals[i] = v
		}
		return map[string]any{"type": "string", "enum": vals}
	case resources.TypeJSON:
		return map[string]any{"type": []any{"object", "array", "string", "number", "integer", "boolean"}, "description": "Any JSON value."}
	}
	return map[string]any{"type": "string"}
}

// pascal turns a resource name (snake_case) into PascalCase for
// operation ids: order_items -> OrderItems.
func pascal(name string) string {
	var b strings.Builder
	for _, part := range strings.Split(name, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// deepCopy copies a decoded JSON value.
func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, e := range t {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}
