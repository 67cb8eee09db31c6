package database

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
)

const spanKey = "herald:span"

// Trace registers GORM callbacks that make one span per statement, a child
// of the span in the statement's context (the request's, or the write
// batch's). It is what the GORM OpenTelemetry plugin does, without the
// ClickHouse and MySQL drivers that plugin links in.
//
// Spans follow the OpenTelemetry database conventions: named
// "{db.operation.name} {db.collection.name}" ("INSERT products"), with
// db.system.name "sqlite" or "postgresql". A statement whose context holds
// no recording span (background work, or a trace that is not sampled) makes
// none, and costs nothing beyond that check.
func Trace(db *gorm.DB, kind Kind, tp trace.TracerProvider) error {
	tracer := tp.Tracer("github.com/herald-dev/herald/database")
	system := attribute.String("db.system.name", SystemName(kind))
	before := func(op string) func(*gorm.DB) {
		return func(tx *gorm.DB) {
			ctx := tx.Statement.Context
			if ctx == nil || !trace.SpanFromContext(ctx).IsRecording() {
				return // no traced parent: background work stays untraced
			}
			// The name is known only once the statement is built; after
			// sets it.
			_, span := tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient))
			tx.InstanceSet(spanKey, span)
		}
	}
	after := func(op string) func(*gorm.DB) {
		return func(tx *gorm.DB) {
			v, ok := tx.InstanceGet(spanKey)
			if !ok {
				return
			}
			span := v.(trace.Span)
			sql := tx.Statement.SQL.String()
			// The SQL says what ran: Raw(...).Find runs the query
			// callbacks with any statement.
			name, table := summarize(sql)
			if name == "" {
				name = op
			}
			if tx.Statement.Table != "" {
				table = tx.Statement.Table
			}
			attrs := make([]attribute.KeyValue, 0, 5)
			attrs = append(attrs, system, attribute.String("db.query.text", sql),
				attribute.Int64("db.rows_affected", tx.Statement.RowsAffected))
			if name != "" {
				attrs = append(attrs, attribute.String("db.operation.name", name))
			}
			if table != "" {
				attrs = append(attrs, attribute.String("db.collection.name", table))
			}
			span.SetAttributes(attrs...)
			span.SetName(spanName(name, table, system.Value.AsString()))
			if tx.Error != nil && tx.Error != gorm.ErrRecordNotFound {
				span.RecordError(tx.Error)
				span.SetStatus(codes.Error, "query failed")
			}
			span.End()
		}
	}
	cb := db.Callback()
	for _, reg := range []struct {
		name   string
		op     string // when the SQL says nothing (it always should)
		before func(string, func(*gorm.DB)) error
		after  func(string, func(*gorm.DB)) error
	}{
		{"create", "INSERT", cb.Create().Before("gorm:create").Register, cb.Create().After("gorm:create").Register},
		{"query", "SELECT", cb.Query().Before("gorm:query").Register, cb.Query().After("gorm:query").Register},
		{"update", "UPDATE", cb.Update().Before("gorm:update").Register, cb.Update().After("gorm:update").Register},
		{"delete", "DELETE", cb.Delete().Before("gorm:delete").Register, cb.Delete().After("gorm:delete").Register},
		{"row", "", cb.Row().Before("gorm:row").Register, cb.Row().After("gorm:row").Register},
		{"raw", "", cb.Raw().Before("gorm:raw").Register, cb.Raw().After("gorm:raw").Register},
	} {
		if err := reg.before("herald:trace_before_"+reg.name, before(reg.op)); err != nil {
			return err
		}
		if err := reg.after("herald:trace_after_"+reg.name, after(reg.op)); err != nil {
			return err
		}
	}
	return nil
}

// SystemName is the engine's db.system.name in OpenTelemetry's terms.
func SystemName(kind Kind) string {
	if kind == Postgres {
		return "postgresql"
	}
	return string(kind)
}

// spanName is "{operation} {table}", or the part of it that is known, or
// the database system (the conventions' fallback).
func spanName(op, table, system string) string {
	switch {
	case op != "" && table != "":
		return op + " " + table
	case op != "":
		return op
	default:
		return system
	}
}

// summarizeLimit bounds how much of a statement summarize reads: the
// operation and first table come early, and a multi-row INSERT can be
// hundreds of kilobytes.
const summarizeLimit = 4096

// summarize returns the operation of a statement (its first keyword,
// upper-cased) and the table it names first, either "" when unsure. A WITH
// statement that modifies data is summarised by its first INSERT, UPDATE or
// DELETE (the events flush is one), otherwise as a SELECT. It allocates
// nothing for upper-case SQL, which is what GORM writes.
func summarize(sql string) (op, table string) {
	if len(sql) > summarizeLimit {
		sql = sql[:summarizeLimit]
	}
	first, i := nextWord(sql, 0)
	if first == "" {
		return "", ""
	}
	op = upper(first)
	if op == "WITH" {
		op = "SELECT"
		for j := i; ; {
			var w string
			if w, j = nextWord(sql, j); w == "" {
				break
			}
			if u := upper(w); u == "INSERT" || u == "UPDATE" || u == "DELETE" {
				op, i = u, j
				break
			}
		}
	}
	// The word that introduces the table, by operation.
	var intro string
	switch op {
	case "INSERT":
		intro = "INTO"
	case "UPDATE":
		t, _ := nextWord(sql, i)
		return op, t
	case "SELECT", "DELETE":
		intro = "FROM"
	default:
		return op, ""
	}
	for {
		var w string
		if w, i = nextWord(sql, i); w == "" {
			return op, ""
		}
		if upper(w) == intro {
			t, _ := nextWord(sql, i)
			return op, t
		}
	}
}

// nextWord returns the identifier or keyword of sql at or after i (the
// quotes of a quoted identifier stripped; string literals skipped) and
// the index after it; "" at the end.
func nextWord(sql string, i int) (string, int) {
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == '"' || c == '`':
			end := i + 1
			for end < len(sql) && sql[end] != c {
				end++
			}
			return sql[i+1 : end], end + 1
		case c == '\'':
			i++
			for i < len(sql) && sql[i] != '\'' {
				i++
			}
			i++
		case isWordByte(c):
			end := i
			for end < len(sql) && (isWordByte(sql[end]) || sql[end] == '.') {
				end++
			}
			return sql[i:end], end
		default:
			i++
		}
	}
	return "", i
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// upper upper-cases an ASCII keyword without allocating when it already is.
func upper(w string) string {
	for i := 0; i < len(w); i++ {
		if c := w[i]; c >= 'a' && c <= 'z' {
			b := []byte(w)
			for j := i; j < len(b); j++ {
				if b[j] >= 'a' && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return w
}
