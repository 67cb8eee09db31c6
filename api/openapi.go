package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
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

// reservedQuery are list parameters that are not filters: a field of the
// same name cannot be filtered as name=value.
var reservedQuery = []string{"fields", "include", "hard", "access_token"}

func (s *Server) serveOpenAPI(c echo.Context) error {
	raw, err := s.openAPIDocument(c)
	if err != nil {
		return err
	}
	// The document depends on the caller's role and the wanted format.
	c.Response().Header().Set(echo.HeaderVary, "Accept, Authorization")
	if wantsYAML(c.Request().Header.Get(echo.HeaderAccept)) {
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
	role := auth.FromContext(ctx).Role
	if doc := o.cached(s.store.SchemaVersion(), role); doc != nil {
		return doc, nil
	}
	caps, version, err := s.store.Capabilities(ctx)
	if err != nil {
		return nil, err
	}
	doc, err := o.build(caps)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	if version > o.version {
		o.version, o.cache = version, map[string][]byte{}
	}
	if version == o.version && len(o.cache) < 100 {
		o.cache[role] = doc
	}
	o.mu.Unlock()
	return doc, nil
}

// cached is role's document of schema version, or nil.
func (o *openAPI) cached(version int, role string) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.version != version {
		return nil
	}
	return o.cache[role]
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
	readable := map[string]bool{}
	for _, c := range caps {
		if c.Read != nil {
			readable[c.Resource.Name] = true
		}
	}
	opIDs := map[string]bool{}
	for _, item := range paths {
		ops, _ := item.(map[string]any)
		for _, m := range httpMethods {
			if op, ok := ops[m].(map[string]any); ok {
				if id, ok := op["operationId"].(string); ok {
					opIDs[id] = true
				}
			}
		}
	}
	var tags []any
	tagNames := map[string]bool{}
	old, _ := doc["tags"].([]any)
	for _, tg := range old {
		if m, ok := tg.(map[string]any); ok {
			tagNames[fmt.Sprint(m["name"])] = true
		}
	}
	for _, c := range caps {
		g := &generator{doc: doc, comps: comps, schemas: schemas, c: c, name: c.Resource.Name, readableRes: readable, opIDs: opIDs}
		g.tag = g.name
		if tagNames[g.tag] {
			g.tag += " (resource)" // a fixed endpoints' tag has the name
		}
		g.addSchemas()
		for suffix, tmpl := range templates {
			if item := g.pathItem(suffix, tmpl); item != nil {
				paths["/v1/"+g.name+suffix] = item
			}
		}
		tag := map[string]any{"name": g.tag, "description": "Records of the resource " + g.name + "."}
		if d := c.Resource.Description; d != "" {
			tag["description"] = d
		}
		tags = append(tags, tag)
	}
	tags = append(old, tags...)
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
	readableRes         map[string]bool // resources the caller may read
	opIDs               map[string]bool // operation ids taken so far
	tag                 string          // the operations' tag
}

// schemaName names the resource's schemas: the record schema is the
// resource's name, the others add "." and a suffix (items.create), which
// no resource name contains, so no two resources' names collide.
func (g *generator) schemaName(suffix string) string {
	if suffix == "" {
		return g.name
	}
	return g.name + "." + suffix
}

// operationID makes a template's operation id the resource's
// (listRecords: listOrderItems), unique in the document: when that is
// taken (a resource named events has listEvents; order_items and
// order__items), the template's id and the resource's name.
func (g *generator) operationID(template string) string {
	id := strings.NewReplacer("Records", pascal(g.name), "Record", pascal(g.name)).Replace(template)
	if g.opIDs[id] {
		id = template + "_" + g.name
	}
	g.opIDs[id] = true
	return id
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
			op["operationId"] = g.operationID(id)
		}
		op["tags"] = []any{g.tag}
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
	case name == "RecordInput" && method == "put":
		return g.schemaName("replace")
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

// relations lists the readable relation fields whose target the caller
// may read too: the others cannot be included (expand is always null).
func (g *generator) relations() []string {
	var out []string
	for _, f := range g.c.Read {
		if f.Type == resources.TypeRelation && g.readableRes[f.Relation.Resource] {
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
		if slices.Contains(reservedQuery, f.Name) {
			continue // the server reads ?fields= as the projection, not a filter
		}
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
	read := g.c.Read
	if read == nil {
		// A role that may write but not read gets the id of what it
		// created, and nothing else.
		read = []*resources.Field{r.Column(resources.ColID)}
	}
	for _, f := range read {
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

	// input is a request body's schema: create (id may be chosen),
	// replace (PUT: the fields the role may update, those required
	// without a default required, as absent ones are reset), or a partial
	// update (nothing required).
	input := func(fields []*resources.Field, create, full bool) map[string]any {
		props := map[string]any{}
		var required []any
		if create {
			props[resources.ColID] = map[string]any{"type": "string", "format": "uuid",
				"description": "Optional: the client may choose the record's id (any UUID); Herald makes a UUIDv7 otherwise."}
		}
		for _, f := range fields {
			props[f.Name] = fieldSchema(f, !f.Required)
			if full && f.Required && f.Default == nil {
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
		s := input(g.c.Create, true, true)
		s["description"] = "A new " + r.Name + " record (POST)."
		g.schemas[g.schemaName("create")] = s
	}
	if g.c.Update != nil {
		s := input(g.c.Update, false, false)
		s["description"] = "A partial update of a " + r.Name + " record (PATCH): only the fields sent change."
		g.schemas[g.schemaName("update")] = s
		s = input(g.c.Update, false, true)
		s["description"] = "A full replacement of a " + r.Name + " record (PUT): the fields the role may write that are absent take their default or null."
		g.schemas[g.schemaName("replace")] = s
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

// wantsYAML tells whether an Accept header prefers YAML to JSON: the
// YAML type with the highest q, above any JSON type's (ties go to JSON).
func wantsYAML(accept string) bool {
	best := func(match func(string) bool) float64 {
		q := -1.0
		for _, part := range strings.Split(accept, ",") {
			mt, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !match(strings.ToLower(strings.TrimSpace(mt))) {
				continue
			}
			v := 1.0
			for _, p := range strings.Split(params, ";") {
				if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.TrimSpace(k) == "q" {
					if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
						v = f
					}
				}
			}
			q = max(q, v)
		}
		return q
	}
	y := best(func(mt string) bool { return strings.HasSuffix(mt, "yaml") })
	j := best(func(mt string) bool { return strings.HasSuffix(mt, "json") })
	return y > 0 && y > j
}
