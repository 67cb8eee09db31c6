package database

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
)

const spanKey = "herald:span"

// Trace registers GORM callbacks that make one span per statement, a child
// of the span in the statement's context (the request's). It is what the
// GORM OpenTelemetry plugin does, without the ClickHouse and MySQL drivers
// that plugin links in.
func Trace(db *gorm.DB, kind Kind, tp trace.TracerProvider) error {
	tracer := tp.Tracer("github.com/herald-dev/herald/database")
	before := func(op string) func(*gorm.DB) {
		return func(tx *gorm.DB) {
			ctx := tx.Statement.Context
			if ctx == nil || !trace.SpanContextFromContext(ctx).IsValid() {
				return // no request span: background work stays untraced
			}
			_, span := tracer.Start(ctx, "db."+op, trace.WithSpanKind(trace.SpanKindClient))
			tx.InstanceSet(spanKey, span)
		}
	}
	after := func(tx *gorm.DB) {
		v, ok := tx.InstanceGet(spanKey)
		if !ok {
			return
		}
		span := v.(trace.Span)
		span.SetAttributes(attribute.String("db.system", string(kind)),
			attribute.String("db.collection.name", tx.Statement.Table),
			attribute.String("db.query.text", tx.Statement.SQL.String()),
			attribute.Int64("db.rows_affected", tx.Statement.RowsAffected))
		if tx.Error != nil && tx.Error != gorm.ErrRecordNotFound {
			span.RecordError(tx.Error)
			span.SetStatus(codes.Error, "query failed")
		}
		span.End()
	}
	cb := db.Callback()
	for _, reg := range []struct {
		op     string
		before func(string, func(*gorm.DB)) error
		after  func(string, func(*gorm.DB)) error
	}{
		{"create", cb.Create().Before("gorm:create").Register, cb.Create().After("gorm:create").Register},
		{"query", cb.Query().Before("gorm:query").Register, cb.Query().After("gorm:query").Register},
		{"update", cb.Update().Before("gorm:update").Register, cb.Update().After("gorm:update").Register},
		{"delete", cb.Delete().Before("gorm:delete").Register, cb.Delete().After("gorm:delete").Register},
		{"row", cb.Row().Before("gorm:row").Register, cb.Row().After("gorm:row").Register},
		{"raw", cb.Raw().Before("gorm:raw").Register, cb.Raw().After("gorm:raw").Register},
	} {
		if err := reg.before("herald:trace_before_"+reg.op, before(reg.op)); err != nil {
			return err
		}
		if err := reg.after("herald:trace_after_"+reg.op, after); err != nil {
			return err
		}
	}
	return nil
}
