package resources

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
)

// FieldType is the declared type of a field.
type FieldType string

// The field types of SPEC section 2.
const (
	TypeString   FieldType = "string"
	TypeText     FieldType = "text"
	TypeInteger  FieldType = "integer"
	TypeNumber   FieldType = "number"
	TypeBoolean  FieldType = "boolean"
	TypeUUID     FieldType = "uuid"
	TypeDatetime FieldType = "datetime"
	TypeDate     FieldType = "date"
	TypeEnum     FieldType = "enum"
	TypeJSON     FieldType = "json"
	TypeRelation FieldType = "relation"
)

var fieldTypes = []FieldType{TypeString, TypeText, TypeInteger, TypeNumber, TypeBoolean,
	TypeUUID, TypeDatetime, TypeDate, TypeEnum, TypeJSON, TypeRelation}

// OnDelete is what happens to referring rows when a related row is deleted.
type OnDelete string

// The onDelete actions. Restrict is the default.
const (
	Cascade  OnDelete = "cascade"
	Restrict OnDelete = "restrict"
	SetNull  OnDelete = "setNull"
)

// Schema is the whole declared model: resources and role permissions.
type Schema struct {
	Resources   []*Resource  `json:"resources" yaml:"resources"`
	Permissions []Permission `json:"permissions,omitempty" yaml:"permissions,omitempty"`

	inactive []Problem // stored classifications that do not compile
}

// Resource is one declared table.
type Resource struct {
	Name            string            `json:"name" yaml:"name"`
	Description     string            `json:"description,omitempty" yaml:"description,omitempty"`
	SoftDelete      bool              `json:"softDelete,omitempty" yaml:"softDelete,omitempty"`
	Fields          []*Field          `json:"fields" yaml:"fields"`
	Classifications map[string]string `json:"classifications,omitempty" yaml:"classifications,omitempty"`

	compiled []*Classification // by name, set by Validate
	shape    string            // what a record of it looks like (ETag), set by Validate
}

// Field is one declared column.
type Field struct {
	Name        string       `json:"name" yaml:"name"`
	Type        FieldType    `json:"type" yaml:"type"`
	Description string       `json:"description,omitempty" yaml:"description,omitempty"`
	Required    bool         `json:"required,omitempty" yaml:"required,omitempty"`
	Unique      bool         `json:"unique,omitempty" yaml:"unique,omitempty"`
	Default     any          `json:"default,omitempty" yaml:"default,omitempty"`
	Sortable    bool         `json:"sortable,omitempty" yaml:"sortable,omitempty"`
	Filterable  bool         `json:"filterable,omitempty" yaml:"filterable,omitempty"`
	EnumValues  []string     `json:"enumValues,omitempty" yaml:"enumValues,omitempty"`
	Relation    *Relation    `json:"relation,omitempty" yaml:"relation,omitempty"`
	Validations []Validation `json:"validations,omitempty" yaml:"validations,omitempty"`

	pattern *regexp.Regexp
}

// Relation makes a field a many-to-one foreign key to another resource's id.
type Relation struct {
	Resource string   `json:"resource" yaml:"resource"`
	OnDelete OnDelete `json:"onDelete,omitempty" yaml:"onDelete,omitempty"`
}

// Validation is one rule applied to a written value.
type Validation struct {
	Rule  string `json:"rule" yaml:"rule"`
	Value any    `json:"value,omitempty" yaml:"value,omitempty"`
}

// Permission grants a role one action on a resource (default deny).
type Permission struct {
	Resource string   `json:"resource" yaml:"resource"`
	Role     string   `json:"role" yaml:"role"`
	Action   string   `json:"action" yaml:"action"`
	Fields   []string `json:"fields,omitempty" yaml:"fields,omitempty"`
	Filters  []Rule   `json:"filters,omitempty" yaml:"filters,omitempty"`
	Checks   []Rule   `json:"checks,omitempty" yaml:"checks,omitempty"`
}

// Rule compares a field with a claim of the caller's token or a literal value.
type Rule struct {
	Field    string `json:"field" yaml:"field"`
	Operator string `json:"operator" yaml:"operator"`
	Claim    string `json:"claim,omitempty" yaml:"claim,omitempty"`
	Value    any    `json:"value,omitempty" yaml:"value,omitempty"`
}

// System columns every resource has.
const (
	ColID        = "id"
	ColCreatedAt = "created_at"
	ColUpdatedAt = "updated_at"
	ColDeletedAt = "deleted_at"
)

// ExpandKey is the key under which `include`d relations are returned.
const ExpandKey = "expand"

var (
	nameRE     = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	reserved   = []string{ColID, ColCreatedAt, ColUpdatedAt, ColDeletedAt, ExpandKey}
	ruleNames  = []string{"min", "max", "minLength", "maxLength", "pattern", "email", "url", "integer"}
	actions    = []string{"read", "create", "update", "delete"}
	operators  = []string{"eq", "neq", "in"}
	maxFields  = 200
	maxEnumLen = 200
)

// Problem is one offending item of a schema or a write, as reported in the
// problem+json "errors" list.
type Problem struct {
	Field   string `json:"field"`
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

// SchemaError lists everything wrong with a schema document.
type SchemaError struct{ Problems []Problem }

// Error implements error.
func (e *SchemaError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Field + ": " + p.Message
	}
	return "invalid schema: " + strings.Join(msgs, "; ")
}

// ParseSchema decodes a schema document. JSON is detected by a leading '{';
// anything else is YAML, decoded strictly so that a misspelt key is reported
// with its line and column. The result is validated.
func ParseSchema(doc []byte) (*Schema, error) {
	var s Schema
	trimmed := bytes.TrimSpace(doc)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, &SchemaError{[]Problem{{Field: "", Rule: "syntax", Message: err.Error()}}}
		}
		if trailingData(trimmed, dec) {
			return nil, &SchemaError{[]Problem{{Field: "", Rule: "syntax", Message: "data after the JSON document"}}}
		}
	} else if err := unmarshalYAML(doc, &s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// unmarshalYAML decodes strictly. goccy/go-yaml v1.19.2 panics on some
// tags (upstream issue 735, fixed after that release): a panic is reported
// as a syntax problem, never allowed to take the server down.
func unmarshalYAML(doc []byte, s *Schema) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &SchemaError{[]Problem{{Field: "", Rule: "syntax", Message: fmt.Sprintf("unsupported YAML: %v", p)}}}
		}
	}()
	if err := yaml.UnmarshalWithOptions(doc, s, yaml.Strict()); err != nil {
		return &SchemaError{[]Problem{{Field: "", Rule: "syntax", Message: yaml.FormatError(err, false, true)}}}
	}
	return nil
}

// normalizeNumber gives a number one Go type whatever decoded it (YAML
// int, JSON float64): int64 when whole, float64 otherwise, so a schema read
// back from the registry equals the one that was stored.
func normalizeNumber(v any) any {
	n, ok := toFloat(v)
	if !ok {
		return v
	}
	if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
		return int64(n)
	}
	return n
}

// finiteJSON tells whether v can be stored as JSON (no NaN or infinity).
func finiteJSON(v any) bool {
	_, err := json.Marshal(v)
	return err == nil
}

// Validate checks names, types, options, relations and permissions, and
// normalises defaults (relation onDelete) and compiled patterns. It reports
// every problem at once.
func (s *Schema) Validate() error {
	var probs []Problem
	add := func(path, rule, format string, args ...any) {
		probs = append(probs, Problem{Field: path, Rule: rule, Message: fmt.Sprintf(format, args...)})
	}
	byName := map[string]*Resource{}
	for i, r := range s.Resources {
		if r == nil {
			add(fmt.Sprintf("resources[%d]", i), "required", "resource is empty")
			continue
		}
		path := fmt.Sprintf("resources[%d]", i)
		if !nameRE.MatchString(r.Name) || strings.HasPrefix(r.Name, "herald_") || strings.HasPrefix(r.Name, "sqlite_") ||
			strings.HasPrefix(r.Name, "pg_") {
			// sqlite_ and pg_ are the engines' own prefixes (SQLite refuses
			// to create such a table; PostgreSQL reserves pg_ for its catalog).
			add(path+".name", "pattern", "resource name %q must match ^[a-z][a-z0-9_]{0,62}$ and not start with herald_, sqlite_ or pg_", r.Name)
		} else if byName[r.Name] != nil {
			add(path+".name", "unique", "resource %q is declared twice", r.Name)
		} else {
			byName[r.Name] = r
		}
		if len(r.Fields) > maxFields {
			add(path+".fields", "maxLength", "at most %d fields", maxFields)
		}
		seen := map[string]bool{}
		for j, f := range r.Fields {
			fp := fmt.Sprintf("%s.fields[%d]", path, j)
			if f == nil {
				add(fp, "required", "field is empty")
				continue
			}
			if !nameRE.MatchString(f.Name) {
				add(fp+".name", "pattern", "field name %q must match ^[a-z][a-z0-9_]{0,62}$", f.Name)
			} else if slices.Contains(reserved, f.Name) {
				add(fp+".name", "reserved", "field name %q is reserved", f.Name)
			} else if seen[f.Name] {
				add(fp+".name", "unique", "field %q is declared twice", f.Name)
			}
			seen[f.Name] = true
			validateField(f, fp, add)
		}
	}
	for i, r := range s.Resources {
		if r == nil {
			continue
		}
		for j, f := range r.Fields {
			if f == nil || f.Type != TypeRelation || f.Relation == nil {
				continue
			}
			fp := fmt.Sprintf("resources[%d].fields[%d].relation", i, j)
			if byName[f.Relation.Resource] == nil {
				add(fp+".resource", "relation", "relation to unknown resource %q", f.Relation.Resource)
			}
			if f.Relation.OnDelete == SetNull && f.Required {
				add(fp+".onDelete", "relation", "setNull needs a field that is not required")
			}
		}
	}
	for i, r := range s.Resources {
		if r != nil {
			compileClassifications(r, fmt.Sprintf("resources[%d]", i), add)
			r.shape = shapeOf(r)
		}
	}
	for i, p := range s.Permissions {
		validatePermission(p, fmt.Sprintf("permissions[%d]", i), byName, add)
	}
	if len(probs) > 0 {
		return &SchemaError{probs}
	}
	return nil
}

func validateField(f *Field, fp string, add func(path, rule, format string, args ...any)) {
	if !slices.Contains(fieldTypes, f.Type) {
		add(fp+".type", "enum", "unknown type %q", f.Type)
		return
	}
	if f.Type == TypeEnum {
		if len(f.EnumValues) == 0 {
			add(fp+".enumValues", "required", "an enum needs enumValues")
		}
		for _, v := range f.EnumValues {
			if v == "" || len(v) > maxEnumLen {
				add(fp+".enumValues", "pattern", "enum values must be 1 to %d characters", maxEnumLen)
			}
		}
	} else if len(f.EnumValues) > 0 {
		add(fp+".enumValues", "type", "enumValues is only for type enum")
	}
	if f.Type == TypeRelation {
		if f.Relation == nil || f.Relation.Resource == "" {
			add(fp+".relation", "required", "a relation field needs relation.resource")
		} else {
			if f.Relation.OnDelete == "" {
				f.Relation.OnDelete = Restrict
			}
			if !slices.Contains([]OnDelete{Cascade, Restrict, SetNull}, f.Relation.OnDelete) {
				add(fp+".relation.onDelete", "enum", "onDelete must be cascade, restrict or setNull")
			}
		}
	} else if f.Relation != nil {
		add(fp+".relation", "type", "relation is only for type relation")
	}
	if f.Type == TypeJSON && (f.Unique || f.Sortable || f.Filterable) {
		add(fp+".type", "type", "json fields cannot be unique, sortable or filterable")
	}
	for k, v := range f.Validations {
		vp := fmt.Sprintf("%s.validations[%d]", fp, k)
		if !finiteJSON(v.Value) {
			add(vp+".value", "type", "must be a finite JSON value")
			continue
		}
		if !slices.Contains(ruleNames, v.Rule) {
			add(vp+".rule", "enum", "unknown rule %q (one of %s)", v.Rule, strings.Join(ruleNames, ", "))
			continue
		}
		f.Validations[k].Value = normalizeNumber(v.Value)
		if msg := checkRule(f, v); msg != "" {
			add(vp, v.Rule, "%s", msg)
		}
	}
	if f.Default != nil {
		norm, err := f.coerce(f.Default)
		if err != nil {
			add(fp+".default", "type", "default: %s", err.Error())
		} else {
			f.Default = norm
		}
	}
}

// checkRule tells what is wrong with a validation rule for the field's type.
func checkRule(f *Field, v Validation) string {
	stringish := f.Type == TypeString || f.Type == TypeText
	numeric := f.Type == TypeInteger || f.Type == TypeNumber
	switch v.Rule {
	case "min", "max":
		if !numeric {
			return v.Rule + " applies to integer and number fields"
		}
		if _, ok := toFloat(v.Value); !ok {
			return v.Rule + " needs a numeric value"
		}
	case "minLength", "maxLength":
		if !stringish {
			return v.Rule + " applies to string and text fields"
		}
		if n, ok := toFloat(v.Value); !ok || n < 0 || n != float64(int64(n)) {
			return v.Rule + " needs a non-negative integer value"
		}
	case "pattern":
		s, ok := v.Value.(string)
		if !stringish || !ok {
			return "pattern needs a string field and a regular expression value"
		}
		re, err := regexp.Compile(s)
		if err != nil {
			return "pattern: " + err.Error()
		}
		f.pattern = re
	case "email", "url":
		if !stringish {
			return v.Rule + " applies to string and text fields"
		}
	case "integer":
		if !numeric {
			return "integer applies to number fields"
		}
	}
	return ""
}

func validatePermission(p Permission, path string, byName map[string]*Resource, add func(path, rule, format string, args ...any)) {
	r := byName[p.Resource]
	if r == nil {
		add(path+".resource", "relation", "permission for unknown resource %q", p.Resource)
		return
	}
	if p.Role == "" || p.Role == "admin" {
		add(path+".role", "required", "a permission needs a role other than admin (admin may do everything)")
	}
	if !slices.Contains(actions, p.Action) {
		add(path+".action", "enum", "action must be one of %s", strings.Join(actions, ", "))
	}
	for _, name := range p.Fields {
		if r.Column(name) == nil {
			add(path+".fields", "unknown", "unknown field %q", name)
		}
	}
	check := func(kind string, rules []Rule) {
		for k, rule := range rules {
			rp := fmt.Sprintf("%s.%s[%d]", path, kind, k)
			if r.Column(rule.Field) == nil {
				add(rp+".field", "unknown", "unknown field %q", rule.Field)
			}
			if !slices.Contains(operators, rule.Operator) {
				add(rp+".operator", "enum", "operator must be one of %s", strings.Join(operators, ", "))
			}
			if !finiteJSON(rule.Value) {
				add(rp+".value", "type", "must be a finite JSON value")
			}
			if (rule.Claim == "") == (rule.Value == nil) {
				add(rp, "required", "give exactly one of claim and value")
			}
		}
	}
	check("filters", p.Filters)
	check("checks", p.Checks)
	if len(p.Checks) > 0 && p.Action != "create" && p.Action != "update" {
		add(path+".checks", "enum", "checks apply to create and update only")
	}
	if len(p.Filters) > 0 && p.Action == "create" {
		add(path+".filters", "enum", "filters apply to read, update and delete only")
	}
}

// Resource returns the named resource, or nil.
func (s *Schema) Resource(name string) *Resource {
	for _, r := range s.Resources {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Field returns the declared field with this name, or nil.
func (r *Resource) Field(name string) *Field {
	for _, f := range r.Fields {
		if f != nil && f.Name == name {
			return f
		}
	}
	return nil
}

var systemFields = map[string]*Field{
	ColID:        {Name: ColID, Type: TypeUUID, Required: true, Unique: true, Sortable: true, Filterable: true},
	ColCreatedAt: {Name: ColCreatedAt, Type: TypeDatetime, Required: true, Sortable: true, Filterable: true},
	ColUpdatedAt: {Name: ColUpdatedAt, Type: TypeDatetime, Required: true, Sortable: true, Filterable: true},
	ColDeletedAt: {Name: ColDeletedAt, Type: TypeDatetime},
}

// Column returns the field for a declared or system column, or nil.
func (r *Resource) Column(name string) *Field {
	if name == ColDeletedAt && !r.SoftDelete {
		return nil
	}
	if f := systemFields[name]; f != nil {
		return f
	}
	return r.Field(name)
}

// Columns lists every column in table order: id, declared fields, timestamps.
func (r *Resource) Columns() []*Field {
	cols := make([]*Field, 0, len(r.Fields)+4)
	cols = append(cols, systemFields[ColID])
	cols = append(cols, r.Fields...)
	cols = append(cols, systemFields[ColCreatedAt], systemFields[ColUpdatedAt])
	if r.SoftDelete {
		cols = append(cols, systemFields[ColDeletedAt])
	}
	return cols
}

// Clone returns a deep copy through JSON, the schema's canonical form.
func (s *Schema) Clone() *Schema {
	b, _ := json.Marshal(s)
	var c Schema
	_ = json.Unmarshal(b, &c)
	_ = c.Validate()
	return &c
}
