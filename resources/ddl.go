package resources

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/herald-dev/herald/database"
)

var q = database.Quote

// objectName builds a constraint or index name that fits PostgreSQL's 63
// byte limit, keeping it readable when it can.
func objectName(table, col, suffix string) string {
	n := table + "_" + col + "_" + suffix
	if len(n) <= 63 {
		return n
	}
	h := fnv.New32a()
	h.Write([]byte(n))
	return fmt.Sprintf("hx_%x_%s", h.Sum32(), suffix)
}

// columnType is the column's SQL type on the given engine.
func columnType(kind database.Kind, f *Field) string {
	if kind == database.SQLite {
		switch f.Type {
		case TypeInteger, TypeBoolean:
			return "INTEGER"
		case TypeNumber:
			return "REAL"
		}
		return "TEXT"
	}
	switch f.Type {
	case TypeUUID, TypeRelation:
		return "uuid"
	case TypeInteger:
		return "bigint"
	case TypeNumber:
		return "double precision"
	case TypeBoolean:
		return "boolean"
	case TypeDatetime:
		return "timestamptz"
	case TypeDate:
		return "date"
	case TypeJSON:
		return "jsonb"
	}
	return "text"
}

// checkExpr is the CHECK constraint body for enum and (SQLite) boolean
// columns, or "".
//
// On SQLite an enum is checked with a chain of equalities, not IN: for an
// IN list of three or more values SQLite builds an ephemeral index at every
// statement that checks it, one row or not, and the pure-Go SQLite maps and
// unmaps its buffers each time (measured on one INSERT with its event:
// 185-210 us with IN, 117-131 us with the chain). The two accept and refuse
// the same values (NULL included: both are NULL, which a CHECK lets pass).
// Tables made before keep their IN until a change rebuilds them.
func checkExpr(kind database.Kind, f *Field) string {
	switch {
	case f.Type == TypeEnum:
		vals := make([]string, len(f.EnumValues))
		for i, v := range f.EnumValues {
			vals[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		}
		if kind == database.SQLite {
			for i, v := range vals {
				vals[i] = q(f.Name) + " = " + v
			}
			return strings.Join(vals, " OR ")
		}
		return fmt.Sprintf("%s IN (%s)", q(f.Name), strings.Join(vals, ", "))
	case f.Type == TypeBoolean && kind == database.SQLite:
		return fmt.Sprintf("%s IN (0, 1)", q(f.Name))
	}
	return ""
}

func fkAction(a OnDelete) string {
	switch a {
	case Cascade:
		return "CASCADE"
	case SetNull:
		return "SET NULL"
	}
	return "RESTRICT"
}

// columnDef is a column definition. withFK adds the REFERENCES clause
// inline (SQLite always; PostgreSQL adds foreign keys after all tables exist).
func columnDef(kind database.Kind, table string, f *Field, withFK bool) string {
	var b strings.Builder
	b.WriteString(q(f.Name) + " " + columnType(kind, f))
	if f.Name == ColID {
		b.WriteString(" PRIMARY KEY")
	} else if f.Required {
		b.WriteString(" NOT NULL")
	}
	if c := checkExpr(kind, f); c != "" {
		fmt.Fprintf(&b, " CONSTRAINT %s CHECK (%s)", q(objectName(table, f.Name, "check")), c)
	}
	if withFK && f.Type == TypeRelation {
		fmt.Fprintf(&b, " CONSTRAINT %s REFERENCES %s (%s) ON DELETE %s", q(objectName(table, f.Name, "fkey")),
			q(f.Relation.Resource), q(ColID), fkAction(f.Relation.OnDelete))
	}
	return b.String()
}

func createTableSQL(kind database.Kind, name string, r *Resource) string {
	cols := r.Columns()
	defs := make([]string, len(cols))
	for i, f := range cols {
		defs[i] = columnDef(kind, r.Name, f, kind == database.SQLite)
	}
	return fmt.Sprintf("CREATE TABLE %s (\n  %s\n)", q(name), strings.Join(defs, ",\n  "))
}

func addForeignKeySQL(table string, f *Field) string {
	return fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY (%s) REFERENCES %s (%s) ON DELETE %s",
		q(table), q(objectName(table, f.Name, "fkey")), q(f.Name), q(f.Relation.Resource), q(ColID), fkAction(f.Relation.OnDelete))
}

// index is one index a resource's table should have.
type index struct {
	name, table, column string
	unique              bool
}

// wantedIndexes lists the indexes of a resource: unique fields, and plain
// indexes on sortable, filterable and relation fields, created_at, and
// the datetime fields that classifications compare with now.
func wantedIndexes(r *Resource) map[string]index {
	out := map[string]index{}
	add := func(col string, unique bool) {
		suffix := "idx"
		if unique {
			suffix = "key"
		}
		n := objectName(r.Name, col, suffix)
		out[n] = index{name: n, table: r.Name, column: col, unique: unique}
	}
	add(ColCreatedAt, false)
	if r.SoftDelete {
		add(ColDeletedAt, false)
	}
	for _, f := range r.Fields {
		if f.Unique {
			add(f.Name, true)
		} else if f.Sortable || f.Filterable || f.Type == TypeRelation {
			add(f.Name, false)
		}
	}
	// The time-based re-evaluation of classifications asks for the rows
	// whose datetime field lies in a range (Window).
	for _, c := range r.compiled {
		for _, w := range c.windows {
			if f := r.Column(w.Field); f != nil && !f.Unique {
				add(w.Field, false)
			}
		}
	}
	return out
}

func (ix index) createSQL() string {
	u := ""
	if ix.unique {
		u = "UNIQUE "
	}
	return fmt.Sprintf("CREATE %sINDEX IF NOT EXISTS %s ON %s (%s)", u, q(ix.name), q(ix.table), q(ix.column))
}
