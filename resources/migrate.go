package resources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/models"
)

// Change is one step of a migration plan.
type Change struct {
	Op          string `json:"op"` // createResource, dropResource, addField, dropField, alterField, add/alter/dropClassification
	Resource    string `json:"resource"`
	Field       string `json:"field,omitempty"`
	Destructive bool   `json:"destructive"`
	Detail      string `json:"detail,omitempty"`
}

// Plan is the difference between the applied schema and a new one.
type Plan struct {
	Changes []Change `json:"changes"`
}

// Destructive lists the changes that drop data.
func (p *Plan) Destructive() []Change {
	var out []Change
	for _, c := range p.Changes {
		if c.Destructive {
			out = append(out, c)
		}
	}
	return out
}

// DestructiveError refuses a plan that drops tables or columns, or retypes
// columns, without allowDestructive.
type DestructiveError struct{ Changes []Change }

// Error implements error.
func (e *DestructiveError) Error() string {
	return fmt.Sprintf("resources: plan has %d destructive change(s); pass allowDestructive=true to apply", len(e.Changes))
}

// Diff computes the plan that turns schema from into schema to. from may be
// empty (first start).
func Diff(from, to *Schema) *Plan {
	p := &Plan{}
	for _, r := range to.Resources {
		old := from.Resource(r.Name)
		if old == nil {
			p.Changes = append(p.Changes, Change{Op: "createResource", Resource: r.Name})
			continue
		}
		if old.SoftDelete != r.SoftDelete {
			p.Changes = append(p.Changes, Change{Op: "alterField", Resource: r.Name, Field: ColDeletedAt,
				Destructive: old.SoftDelete, Detail: "softDelete changed"})
		}
		for _, f := range r.Fields {
			of := old.Field(f.Name)
			switch {
			case of == nil:
				p.Changes = append(p.Changes, Change{Op: "addField", Resource: r.Name, Field: f.Name})
			case retyped(of, f):
				p.Changes = append(p.Changes, Change{Op: "alterField", Resource: r.Name, Field: f.Name, Destructive: true,
					Detail: fmt.Sprintf("type %s -> %s drops the column's data", describeType(of), describeType(f))})
			case constraintsChanged(of, f):
				p.Changes = append(p.Changes, Change{Op: "alterField", Resource: r.Name, Field: f.Name, Detail: "constraints changed"})
			case !jsonEqual(of, f):
				p.Changes = append(p.Changes, Change{Op: "alterField", Resource: r.Name, Field: f.Name, Detail: "options changed"})
			}
		}
		for _, of := range old.Fields {
			if r.Field(of.Name) == nil {
				p.Changes = append(p.Changes, Change{Op: "dropField", Resource: r.Name, Field: of.Name, Destructive: true})
			}
		}
		p.Changes = append(p.Changes, diffClassifications(old, r)...)
	}
	for _, old := range from.Resources {
		if to.Resource(old.Name) == nil {
			p.Changes = append(p.Changes, Change{Op: "dropResource", Resource: old.Name, Destructive: true})
		}
	}
	return p
}

// diffClassifications lists added, changed and removed classifications.
// None is destructive: outcomes are re-evaluated in the background.
func diffClassifications(old, r *Resource) []Change {
	var out []Change
	for _, n := range sortedKeys(keysOf(r.Classifications)) {
		switch prev, ok := old.Classifications[n]; {
		case !ok:
			out = append(out, Change{Op: "addClassification", Resource: r.Name, Field: n})
		case prev != r.Classifications[n]:
			out = append(out, Change{Op: "alterClassification", Resource: r.Name, Field: n, Detail: "expression changed"})
		}
	}
	for _, n := range sortedKeys(keysOf(old.Classifications)) {
		if _, ok := r.Classifications[n]; !ok {
			out = append(out, Change{Op: "dropClassification", Resource: r.Name, Field: n})
		}
	}
	return out
}

func keysOf(m map[string]string) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func describeType(f *Field) string {
	if f.Type == TypeRelation {
		return "relation(" + f.Relation.Resource + ")"
	}
	return string(f.Type)
}

func retyped(a, b *Field) bool { return describeType(a) != describeType(b) }

// constraintsChanged tells whether the column's DDL (not its indexes)
// differs: NOT NULL, enum CHECK, foreign key action.
func constraintsChanged(a, b *Field) bool {
	if a.Required != b.Required || !slices.Equal(a.EnumValues, b.EnumValues) {
		return true
	}
	return a.Type == TypeRelation && a.Relation.OnDelete != b.Relation.OnDelete
}

// migrator applies plans on one engine.
type migrator struct {
	kind database.Kind
	tx   *gorm.DB
}

func (m *migrator) exec(sql string, args ...any) error {
	if err := m.tx.Exec(sql, args...).Error; err != nil {
		return fmt.Errorf("resources: migrate: %s: %w", firstLine(sql), err)
	}
	return nil
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

// apply runs the plan's DDL inside the caller's transaction.
func (m *migrator) apply(p *Plan, from, to *Schema) error {
	var fks [][2]string // table, field: PostgreSQL foreign keys to add last
	rebuild := map[string]bool{}
	for _, c := range p.Changes {
		var r, old *Resource
		var f *Field
		r, old = to.Resource(c.Resource), from.Resource(c.Resource)
		if r != nil {
			f = r.Field(c.Field)
		}
		switch c.Op {
		case "createResource":
			if err := m.exec(createTableSQL(m.kind, r.Name, r)); err != nil {
				return err
			}
			if m.kind == database.Postgres {
				for _, rf := range r.Fields {
					if rf.Type == TypeRelation {
						fks = append(fks, [2]string{r.Name, rf.Name})
					}
				}
			}
		case "dropResource":
			cascade := ""
			if m.kind == database.Postgres {
				cascade = " CASCADE"
			}
			if err := m.exec("DROP TABLE " + q(c.Resource) + cascade); err != nil {
				return err
			}
		case "addField", "dropField", "alterField":
			if m.kind == database.SQLite {
				if c.Op == "addField" && !f.Required {
					if err := m.exec(fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s", q(r.Name), columnDef(m.kind, r.Name, f, true))); err != nil {
						return err
					}
					if f.Default != nil {
						// Existing rows take the default, as on PostgreSQL.
						if err := m.exec(fmt.Sprintf("UPDATE %s SET %s = ?", q(r.Name), q(f.Name)), toDB(m.kind, f, f.Default)); err != nil {
							return err
						}
					}
				} else {
					rebuild[r.Name] = true
				}
				continue
			}
			if err := m.alterPostgres(c, old, r, &fks); err != nil {
				return err
			}
		}
	}
	for _, name := range sortedKeys(rebuild) {
		if err := m.rebuildSQLite(from.Resource(name), to.Resource(name)); err != nil {
			return err
		}
	}
	for _, fk := range fks {
		if err := m.exec(addForeignKeySQL(fk[0], to.Resource(fk[0]).Field(fk[1]))); err != nil {
			return err
		}
	}
	return m.syncIndexes(from, to)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// alterPostgres applies one field change with ALTER TABLE.
func (m *migrator) alterPostgres(c Change, old, r *Resource, fks *[][2]string) error {
	t := q(r.Name)
	if c.Field == ColDeletedAt {
		if r.SoftDelete {
			return m.exec(fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s timestamptz", t, q(ColDeletedAt)))
		}
		return m.exec(fmt.Sprintf("ALTER TABLE %s DROP COLUMN IF EXISTS %s", t, q(ColDeletedAt)))
	}
	f, of := r.Field(c.Field), old.Field(c.Field)
	if c.Op == "dropField" || (c.Op == "alterField" && c.Destructive) {
		if err := m.exec(fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s CASCADE", t, q(c.Field))); err != nil {
			return err
		}
		if c.Op == "dropField" {
			return nil
		}
		of = nil // re-added below as a new column
	}
	if of == nil {
		nullable := *f
		nullable.Required = false
		if err := m.exec(fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s", t, columnDef(m.kind, r.Name, &nullable, false))); err != nil {
			return err
		}
		if f.Default != nil {
			if err := m.exec(fmt.Sprintf("UPDATE %s SET %s = ?", t, q(f.Name)), toDB(m.kind, f, f.Default)); err != nil {
				return err
			}
		}
		if f.Required {
			if err := m.exec(fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL", t, q(f.Name))); err != nil {
				return err
			}
		}
		if f.Type == TypeRelation {
			*fks = append(*fks, [2]string{r.Name, f.Name})
		}
		return nil
	}
	if of.Required != f.Required {
		op := "DROP"
		if f.Required {
			op = "SET"
		}
		if err := m.exec(fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s %s NOT NULL", t, q(f.Name), op)); err != nil {
			return err
		}
	}
	if !slices.Equal(of.EnumValues, f.EnumValues) {
		name := q(objectName(r.Name, f.Name, "check"))
		if err := m.exec(fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", t, name)); err != nil {
			return err
		}
		if err := m.exec(fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s)", t, name, checkExpr(m.kind, f))); err != nil {
			return err
		}
	}
	if f.Type == TypeRelation && of.Relation.OnDelete != f.Relation.OnDelete {
		if err := m.exec(fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", t, q(objectName(r.Name, f.Name, "fkey")))); err != nil {
			return err
		}
		*fks = append(*fks, [2]string{r.Name, f.Name})
	}
	return nil
}

// rebuildSQLite recreates a table with its new definition and copies the
// rows across, the documented way to change columns SQLite cannot ALTER.
// Foreign keys are off for the migration and checked before commit.
func (m *migrator) rebuildSQLite(old, r *Resource) error {
	tmp := r.Name + "__herald_rebuild"
	if err := m.exec(createTableSQL(m.kind, tmp, r)); err != nil {
		return err
	}
	var cols, sel []string
	var args []any
	for _, f := range r.Columns() {
		cols = append(cols, q(f.Name))
		of := old.Column(f.Name)
		switch {
		case of != nil && !retyped(of, f):
			sel = append(sel, q(f.Name))
		case f.Default != nil:
			sel = append(sel, "?")
			args = append(args, toDB(m.kind, f, f.Default))
		default:
			sel = append(sel, "NULL")
		}
	}
	if err := m.exec(fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s", q(tmp), join(cols), join(sel), q(r.Name)), args...); err != nil {
		return err
	}
	if err := m.exec("DROP TABLE " + q(r.Name)); err != nil {
		return err
	}
	return m.exec(fmt.Sprintf("ALTER TABLE %s RENAME TO %s", q(tmp), q(r.Name)))
}

func join(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ", "
		}
		out += v
	}
	return out
}

// syncIndexes creates the indexes the new schema wants and drops those only
// the old one wanted.
func (m *migrator) syncIndexes(from, to *Schema) error {
	for _, r := range to.Resources {
		want := wantedIndexes(r)
		if old := from.Resource(r.Name); old != nil {
			for name := range wantedIndexes(old) {
				if _, ok := want[name]; !ok {
					if err := m.exec("DROP INDEX IF EXISTS " + q(name)); err != nil {
						return err
					}
				}
			}
		}
		for _, name := range sortedIndexNames(want) {
			if err := m.exec(want[name].createSQL()); err != nil {
				return err
			}
		}
	}
	return nil
}

func sortedIndexNames(m map[string]index) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ApplyResult reports what an import did.
type ApplyResult struct {
	Applied bool     `json:"applied"`
	Version int      `json:"version"`
	Changes []Change `json:"changes"`
}

// migrationLockKey is the PostgreSQL advisory lock that serialises schema
// changes between instances ("herald" in ASCII).
const migrationLockKey = 0x686572616c64

// Apply diffs the stored schema against to and applies the plan in one
// transaction, storing to as the new registry. On PostgreSQL an advisory
// lock makes instances that start together take turns. dryRun computes the
// plan and changes nothing.
func (s *Store) Apply(ctx context.Context, to *Schema, allowDestructive, dryRun bool) (*ApplyResult, error) {
	var res ApplyResult
	run := func(tx *gorm.DB) error {
		if s.db.Kind == database.Postgres {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", migrationLockKey).Error; err != nil {
				return fmt.Errorf("resources: migration lock: %w", err)
			}
		}
		from, version, err := loadRegistry(tx)
		if err != nil {
			return err
		}
		plan := Diff(from, to)
		res = ApplyResult{Version: version, Changes: plan.Changes}
		if res.Changes == nil {
			res.Changes = []Change{}
		}
		if d := plan.Destructive(); len(d) > 0 && !allowDestructive {
			return &DestructiveError{Changes: d}
		}
		if len(plan.Changes) == 0 && version > 0 && jsonEqual(from, to) {
			return errNoChange // keep the version
		}
		if err := precheck(tx, plan, from, to); err != nil {
			return err
		}
		m := &migrator{kind: s.db.Kind, tx: tx}
		if err := m.apply(plan, from, to); err != nil {
			return err
		}
		if s.db.Kind == database.SQLite {
			var bad []map[string]any
			if err := tx.Raw("PRAGMA foreign_key_check").Scan(&bad).Error; err != nil {
				return fmt.Errorf("resources: foreign key check: %w", err)
			}
			if len(bad) > 0 {
				return fmt.Errorf("resources: migration leaves %d rows with dangling relations: %w", len(bad), models.ErrConflict)
			}
		}
		if dryRun {
			// Everything the import would do has run and passed, in this
			// transaction: roll it back. (Returning before the checks
			// said "applies" for imports that then failed.)
			return errDryRun
		}
		doc, err := json.Marshal(to)
		if err != nil {
			return fmt.Errorf("resources: encode registry: %w", err)
		}
		res.Version = version + 1
		res.Applied = true
		reg := models.Registry{ID: 1, Schema: string(doc), Version: res.Version, UpdatedAt: time.Now().UTC()}
		return tx.Clauses(clause.OnConflict{UpdateAll: true}).Create(&reg).Error
	}
	var err error
	if s.db.Kind == database.SQLite {
		// Foreign keys must be off while tables are rebuilt, and the pragma
		// is a no-op inside a transaction: pin the one write connection.
		err = s.db.Write.WithContext(ctx).Connection(func(conn *gorm.DB) error {
			if err := conn.Exec("PRAGMA foreign_keys=OFF").Error; err != nil {
				return err
			}
			defer func() {
				// On a context that cannot be cancelled: the one write
				// connection must never stay without foreign keys.
				if err := conn.WithContext(context.WithoutCancel(ctx)).Exec("PRAGMA foreign_keys=ON").Error; err != nil {
					s.cfg.Logger.Error("resources: foreign keys could not be turned back on", "err", err)
				}
			}()
			return conn.Transaction(run)
		})
	} else {
		err = s.db.Write.WithContext(ctx).Transaction(run)
	}
	if errors.Is(err, errDryRun) {
		return &res, nil
	}
	if errors.Is(err, errNoChange) {
		s.setSchema(to, res.Version)
		return &res, nil
	}
	if err != nil {
		return nil, err
	}
	s.db.InvalidateStatements()
	s.setSchema(to, res.Version)
	return &res, nil
}

var (
	errDryRun   = errors.New("dry run")
	errNoChange = errors.New("no change")
)

// precheck refuses, with a 409 naming the field, a field that becomes
// required while rows would have no value for it.
func precheck(tx *gorm.DB, plan *Plan, from, to *Schema) error {
	for _, c := range plan.Changes {
		r := to.Resource(c.Resource)
		if r == nil || c.Op != "alterField" {
			continue
		}
		// A string field that becomes unique, sortable or filterable gets
		// an index: PostgreSQL cannot index a value over about 2,700 bytes
		// (it answered 500), and new input is held to maxIndexedBytes.
		f, old := r.Field(c.Field), from.Resource(c.Resource).Field(c.Field)
		indexed := func(f *Field) bool { return f.Unique || f.Sortable || f.Filterable }
		if f == nil || old == nil || (f.Type != TypeString && f.Type != TypeText) || !indexed(f) || indexed(old) || retyped(old, f) {
			continue
		}
		size := "octet_length(" + q(f.Name) + ")"
		if tx.Dialector.Name() == "sqlite" {
			size = "length(CAST(" + q(f.Name) + " AS BLOB))"
		}
		var n int64
		if err := tx.Raw("SELECT COUNT(*) FROM (SELECT 1 FROM "+q(r.Name)+" WHERE "+size+" > ? LIMIT 1) AS t", maxIndexedBytes).Scan(&n).Error; err != nil {
			return fmt.Errorf("resources: precheck %s.%s: %w", r.Name, f.Name, err)
		}
		if n > 0 {
			return &ConflictError{
				Message: fmt.Sprintf("%s.%s becomes indexed, but existing rows hold values over %d bytes", r.Name, f.Name, maxIndexedBytes),
				Problems: []Problem{{Field: r.Name + "." + f.Name, Rule: "maxLength",
					Message: fmt.Sprintf("existing rows hold values over %d bytes; shorten them first", maxIndexedBytes)}},
			}
		}
	}
	for _, c := range plan.Changes {
		r := to.Resource(c.Resource)
		if r == nil || (c.Op != "addField" && c.Op != "alterField") {
			continue
		}
		f := r.Field(c.Field)
		if f == nil || !f.Required || f.Default != nil {
			continue
		}
		old := from.Resource(c.Resource).Field(c.Field)
		cond := ""
		switch {
		case old == nil || retyped(old, f):
			cond = "" // every existing row lacks the value
		case !old.Required:
			cond = " WHERE " + q(f.Name) + " IS NULL"
		default:
			continue
		}
		var n int64
		if err := tx.Raw("SELECT COUNT(*) FROM (SELECT 1 FROM " + q(r.Name) + cond + " LIMIT 1) AS t").Scan(&n).Error; err != nil {
			return fmt.Errorf("resources: precheck %s.%s: %w", r.Name, f.Name, err)
		}
		if n > 0 {
			return &ConflictError{
				Message:  fmt.Sprintf("%s.%s becomes required, but existing rows have no value for it: give it a default", r.Name, f.Name),
				Problems: []Problem{{Field: r.Name + "." + f.Name, Rule: "required", Message: "existing rows have no value; add a default"}},
			}
		}
	}
	return nil
}

// loadRegistry reads the stored schema; an empty schema when there is none.
func loadRegistry(tx *gorm.DB) (*Schema, int, error) {
	var reg models.Registry
	err := tx.Where("id = ?", 1).Limit(1).Find(&reg).Error
	if err != nil {
		return nil, 0, fmt.Errorf("resources: load registry: %w", err)
	}
	if reg.ID == 0 {
		return &Schema{}, 0, nil
	}
	var s Schema
	if err := json.Unmarshal([]byte(reg.Schema), &s); err != nil {
		return nil, 0, fmt.Errorf("resources: stored registry: %w", err)
	}
	if err := s.validateStored(); err != nil {
		return nil, 0, fmt.Errorf("resources: stored registry: %w", err)
	}
	return &s, reg.Version, nil
}

// validateStored validates a schema read back from the registry. A
// classification that no longer compiles (stored by a version that did not
// type-check expressions, or against an older CEL) must not lock the
// database out: it stays in the schema, inactive, until an import
// replaces it, and InactiveClassifications reports it.
func (s *Schema) validateStored() error {
	err := s.Validate()
	var se *SchemaError
	if !errors.As(err, &se) {
		return err
	}
	for _, p := range se.Problems {
		if !strings.Contains(p.Field, ".classifications") {
			return err
		}
	}
	s.inactive = se.Problems
	return nil
}

// InactiveClassifications lists the stored classifications that do not
// compile and are therefore not evaluated.
func (s *Schema) InactiveClassifications() []Problem { return s.inactive }
