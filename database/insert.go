package database

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
)

// InsertCapturer is a GORM plugin that captures rows written by Insert,
// which bypasses GORM's Create callbacks. Package events' plugin is one:
// it records the row's created event in the same transaction.
type InsertCapturer interface {
	gorm.Plugin
	Inserted(tx *gorm.DB, table string, row map[string]any) error
}

// Insert writes one row of table on tx (a write transaction): the columns
// named by cols, with their values from row (database values, as a
// driver takes them: strings, numbers, booleans, times or nil). It then
// hands the row to every InsertCapturer plugin of tx.
//
// It is the create path's INSERT, and does what GORM's Create with a map
// would do for about a third of its allocations: GORM parses a map
// destination as a model first, and builds (and formats) an error for
// every statement when that fails, then converts the map to clauses.
// When tx's context holds a recording span, the statement runs through
// GORM's raw callbacks instead, so it gets its span ("INSERT table") like
// every other statement.
func Insert(tx *gorm.DB, table string, cols []string, row map[string]any) error {
	ctx, err := txContext(tx, "an insert into "+table)
	if err != nil {
		return err
	}
	postgres := tx.Dialector.Name() == "postgres"
	var sql strings.Builder
	sql.Grow(32 + 16*len(cols))
	sql.WriteString("INSERT INTO ")
	sql.WriteString(Quote(table))
	sql.WriteString(" (")
	for i, c := range cols {
		if i > 0 {
			sql.WriteString(", ")
		}
		sql.WriteString(Quote(c))
	}
	sql.WriteString(") VALUES (")
	traced := trace.SpanFromContext(ctx).IsRecording()
	args := make([]any, len(cols))
	for i, c := range cols {
		if i > 0 {
			sql.WriteString(", ")
		}
		if postgres && !traced {
			sql.WriteByte('$')
			sql.WriteString(strconv.Itoa(i + 1))
		} else {
			sql.WriteByte('?')
		}
		args[i] = row[c]
	}
	sql.WriteByte(')')
	if _, err := exec(tx, ctx, traced, sql.String(), args); err != nil {
		return err
	}
	for _, p := range tx.Config.Plugins {
		if c, ok := p.(InsertCapturer); ok {
			if err := c.Inserted(tx, table, row); err != nil {
				return err
			}
		}
	}
	return nil
}

// Exec runs a statement with ? placeholders on tx's transaction and
// returns the rows it affected. Like Insert, it skips GORM's statement
// building (clauses, a copy of the statement, a parameter scan) unless
// tx's context holds a recording span, when the statement goes through
// GORM for its span. On PostgreSQL it always goes through GORM, which
// turns ? into $n.
func Exec(tx *gorm.DB, sql string, args ...any) (int64, error) {
	ctx, err := txContext(tx, fmt.Sprintf("%.40s...", sql))
	if err != nil {
		return 0, err
	}
	viaGORM := trace.SpanFromContext(ctx).IsRecording() || tx.Dialector.Name() == "postgres"
	return exec(tx, ctx, viaGORM, sql, args)
}

// txContext is the context of tx's statements, or an error naming what
// tried to run when tx is not a transaction (a row and its event must
// commit together).
func txContext(tx *gorm.DB, what string) (context.Context, error) {
	if _, ok := tx.Statement.ConnPool.(gorm.TxCommitter); !ok {
		return nil, fmt.Errorf("database: %s must run in a transaction", what)
	}
	if tx.Statement.Context == nil {
		return context.Background(), nil
	}
	return tx.Statement.Context, nil
}

// exec runs sql through GORM's raw callbacks (viaGORM: its span, and ?
// turned into the dialect's placeholders) or straight on the transaction.
func exec(tx *gorm.DB, ctx context.Context, viaGORM bool, sql string, args []any) (int64, error) {
	if viaGORM {
		res := tx.Exec(sql, args...)
		return res.RowsAffected, res.Error
	}
	res, err := tx.Statement.ConnPool.ExecContext(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
