package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/herald-dev/herald/database"
)

// Decoder turns a row scanned from a table (or the column values a create
// or update writes) into its API form. ok is false for tables that are not
// resources; those writes record no event. It must be safe for concurrent
// use.
type Decoder func(table string, raw map[string]any) (row map[string]any, ok bool, err error)

// Dialect tells the plugin how positions are assigned.
type Dialect string

// The dialects.
const (
	// SQLite positions are rowids: there is one writer, so insertion order
	// is commit order.
	SQLite Dialect = "sqlite"
	// Postgres positions come from a sequence, taken under an advisory
	// lock held until commit, by the transaction's last statement.
	Postgres Dialect = "postgres"
)

// Plugin is the GORM plugin that records events. Register it on the write
// handle: db.Use(events.NewPlugin(...)). It handles Create, Updates and
// Delete statements on resource tables made with a map or a WHERE clause,
// which is how package resources writes; rows are read before updates and
// deletes in the same transaction, so old values are exact.
type Plugin struct {
	decode  Decoder
	dialect Dialect
	now     func() time.Time
}

// The plugin records the rows database.Insert writes.
var _ database.InsertCapturer = (*Plugin)(nil)

// NewPlugin returns the plugin. now defaults to time.Now.
func NewPlugin(dialect Dialect, decode Decoder, now func() time.Time) *Plugin {
	if now == nil {
		now = time.Now
	}
	return &Plugin{decode: decode, dialect: dialect, now: now}
}

// Name implements gorm.Plugin.
func (p *Plugin) Name() string { return "herald:events" }

// Initialize implements gorm.Plugin.
func (p *Plugin) Initialize(db *gorm.DB) error {
	cb := db.Callback()
	if err := cb.Create().Before("gorm:create").Register("herald:events_require_tx", p.requireTx); err != nil {
		return err
	}
	if err := cb.Create().After("gorm:create").Register("herald:events_create", p.afterCreate); err != nil {
		return err
	}
	if err := cb.Update().Before("gorm:update").Register("herald:events_before_update", p.captureOld); err != nil {
		return err
	}
	if err := cb.Update().After("gorm:update").Register("herald:events_update", p.afterUpdate); err != nil {
		return err
	}
	if err := cb.Delete().Before("gorm:delete").Register("herald:events_before_delete", p.captureOld); err != nil {
		return err
	}
	return cb.Delete().After("gorm:delete").Register("herald:events_delete", p.afterDelete)
}

const oldRowsKey = "herald:events_old_rows"

// tracked tells whether the statement writes a resource table.
func (p *Plugin) tracked(db *gorm.DB) bool {
	t := db.Statement.Table
	return db.Error == nil && t != "" && !strings.HasPrefix(t, "herald_")
}

// requireTx refuses a write to a resource table outside a transaction:
// the row and its event must commit together, or a crash between them
// would lose the event.
func (p *Plugin) requireTx(db *gorm.DB) {
	if !p.tracked(db) {
		return
	}
	if _, ok := db.Statement.ConnPool.(gorm.TxCommitter); !ok {
		_ = db.AddError(fmt.Errorf("events: a write to %s must run in a transaction, so that the row and its event commit together", db.Statement.Table))
	}
}

// captureOld reads the rows an update or delete is about to touch.
func (p *Plugin) captureOld(db *gorm.DB) {
	if p.requireTx(db); !p.tracked(db) {
		return
	}
	where, ok := db.Statement.Clauses["WHERE"]
	if !ok {
		_ = db.AddError(fmt.Errorf("events: %s without WHERE on %s is not captured", "update/delete", db.Statement.Table))
		return
	}
	var raw []map[string]any
	err := db.Session(&gorm.Session{NewDB: true, SkipHooks: true}).
		Table(db.Statement.Table).Clauses(where.Expression).Find(&raw).Error
	if err != nil {
		_ = db.AddError(fmt.Errorf("events: read rows before write: %w", err))
		return
	}
	db.InstanceSet(oldRowsKey, raw)
}

func (p *Plugin) oldRows(db *gorm.DB) []map[string]any {
	v, _ := db.InstanceGet(oldRowsKey)
	raw, _ := v.([]map[string]any)
	return raw
}

func (p *Plugin) afterCreate(db *gorm.DB) {
	if !p.tracked(db) {
		return
	}
	vals, ok := db.Statement.Dest.(map[string]any)
	if !ok {
		_ = db.AddError(fmt.Errorf("events: create on %s must use a map", db.Statement.Table))
		return
	}
	raw := make(map[string]any, len(vals))
	for k, v := range vals {
		if !strings.HasPrefix(k, "@") { // GORM adds "@id" to create maps
			raw[k] = v
		}
	}
	_ = db.AddError(p.record(db, db.Statement.Table, nil, raw))
}

// Inserted records the created event of a row that database.Insert wrote
// on tx (implementing database.InsertCapturer): the create path inserts
// without GORM's Create callbacks. row is the row's column values as
// written; it is not modified.
func (p *Plugin) Inserted(tx *gorm.DB, table string, row map[string]any) error {
	if strings.HasPrefix(table, "herald_") {
		return nil
	}
	return p.record(tx, table, nil, row)
}

func (p *Plugin) afterUpdate(db *gorm.DB) {
	if !p.tracked(db) {
		return
	}
	set, ok := db.Statement.Dest.(map[string]any)
	if !ok {
		_ = db.AddError(fmt.Errorf("events: update on %s must use a map", db.Statement.Table))
		return
	}
	for _, old := range p.oldRows(db) {
		next := make(map[string]any, len(old))
		for k, v := range old {
			next[k] = v
		}
		for k, v := range set {
			next[k] = v
		}
		if err := p.record(db, db.Statement.Table, old, next); err != nil {
			_ = db.AddError(err)
			return
		}
	}
}

func (p *Plugin) afterDelete(db *gorm.DB) {
	if !p.tracked(db) {
		return
	}
	for _, old := range p.oldRows(db) {
		if err := p.record(db, db.Statement.Table, old, nil); err != nil {
			_ = db.AddError(err)
			return
		}
	}
}

// record builds the event of one row's change of table and inserts it in
// db's transaction (or buffers it). oldRaw or newRaw is nil for a create or
// delete.
func (p *Plugin) record(db *gorm.DB, table string, oldRaw, newRaw map[string]any) error {
	var old, new map[string]any
	var ok bool
	var err error
	if oldRaw != nil {
		if old, ok, err = p.decode(table, oldRaw); err != nil || !ok {
			return err
		}
	}
	if newRaw != nil {
		if new, ok, err = p.decode(table, newRaw); err != nil || !ok {
			return err
		}
	}
	op := OpUpdated
	switch {
	case old == nil:
		op = OpCreated
	case new == nil:
		op = OpDeleted
	case old["deleted_at"] == nil && new["deleted_at"] != nil:
		// A soft delete: the row leaves every reader's view.
		op, new = OpDeleted, nil
	}
	data, changed := diff(old, new)
	if !changed {
		return nil
	}
	row := new
	if row == nil {
		row = old
	}
	id, _ := row["id"].(string)
	ev, err := newPending(db.Statement.Context, table+"."+op, table, id, data, p.now())
	if err != nil {
		return err
	}
	if v, ok := db.Get(bufferKey); ok {
		buf := v.(*Buffer)
		buf.events = append(buf.events, ev)
		buf.changes = append(buf.changes, Change{Resource: table, ResourceID: id, Op: op, Old: old, New: new,
			Context: db.Statement.Context})
		return nil
	}
	return insertEvents(db.Session(&gorm.Session{NewDB: true, SkipHooks: true}), p.dialect, []pendingEvent{ev})
}

// newPending builds the row of an event, with the session variables and
// trace context that ctx carries.
func newPending(ctx context.Context, typ, resource, id string, data Data, now time.Time) (pendingEvent, error) {
	info := RequestInfoFrom(ctx)
	userID, _ := info.SessionVariables["userId"].(string)
	dataJSON, err := marshalData(data)
	if err != nil {
		return pendingEvent{}, fmt.Errorf("events: encode data: %w", err)
	}
	sessJSON, ok := database.AppendJSON(make([]byte, 0, 64), info.SessionVariables, true)
	if !ok {
		sessJSON, _ = json.Marshal(info.SessionVariables)
	}
	traceJSON, _ := json.Marshal(info.Trace)
	return pendingEvent{uuid.Must(uuid.NewV7()).String(), typ, resource, id, userID,
		now.UTC().Truncate(time.Microsecond), string(dataJSON), string(sessJSON), string(traceJSON)}, nil
}

// marshalData encodes d exactly as json.Marshal does, without reflecting
// over the rows (database.AppendJSON), falling back to json.Marshal for what
// that does not handle.
func marshalData(d Data) ([]byte, error) {
	if d.Classification == nil {
		b := append(make([]byte, 0, 512), `{"old":`...)
		b, ok1 := database.AppendJSON(b, d.Old, true)
		b = append(b, `,"new":`...)
		b, ok2 := database.AppendJSON(b, d.New, true)
		b = append(b, `,"changes":{"added":`...)
		b, ok3 := database.AppendJSON(b, d.Changes.Added, true)
		b = append(b, `,"updated":`...)
		b, ok4 := database.AppendJSON(b, d.Changes.Updated, true)
		b = append(b, `,"removed":`...)
		b, ok5 := database.AppendJSON(b, d.Changes.Removed, true)
		if ok1 && ok2 && ok3 && ok4 && ok5 {
			return append(b, "}}"...), nil
		}
	}
	return json.Marshal(d)
}

// pendingEvent is an event row waiting for its position.
type pendingEvent struct {
	eventID, eventType, resource, resourceID, userID string
	createdAt                                        time.Time
	data, session, trace                             string
}

// maxInsertRows bounds one multi-row INSERT (9 or 10 parameters a row,
// well under both engines' parameter limits). The SQLite driver matches
// each parameter to its argument by a linear search, so the time to bind a
// statement grows with the square of its parameters: there statements stay
// small (a bulk create of 600 rows with two classifications, 1,800 events
// in statements of 2,000 rows, took over 10 s under the race detector).
const (
	maxInsertRows       = 2000
	maxInsertRowsSQLite = 100
)

// positionLockKey is the transaction-scoped advisory lock under which
// PostgreSQL positions are taken ("hpos").
const positionLockKey = 0x68706f73

// insertEvents writes events in order, in as few statements as it can.
//
// On SQLite the position is the rowid: there is one writer connection, so
// insertion order is commit order (AUTOINCREMENT: never reused).
//
// On PostgreSQL each statement first takes a transaction-scoped advisory
// lock, then a block of positions from the herald_event_pos sequence. The
// lock is released only once the transaction's commit is visible, so the
// next transaction's positions are larger and everything below them is
// already visible: positions follow commit order, and a reader that has
// seen N never later meets a smaller one. Buffered events are inserted as
// the transaction's last statement, so the lock covers only that insert
// and the commit, and it is always the last lock a transaction takes (no
// lock cycles). The statement also reports how long it waited for the
// lock, measured by the server around pg_advisory_xact_lock, for the
// herald.events.position_lock span: a separate statement to take the lock
// would add a round trip while holding it.
func insertEvents(tx *gorm.DB, dialect Dialect, evs []pendingEvent) error {
	limit := maxInsertRows
	if dialect == SQLite {
		limit = maxInsertRowsSQLite
	}
	for len(evs) > 0 {
		chunk := evs[:min(len(evs), limit)]
		evs = evs[len(chunk):]
		var sql strings.Builder
		args := make([]any, 0, len(chunk)*10+3)
		if dialect == Postgres {
			args = append(args, positionLockKey, len(chunk)-1, len(chunk))
			// The CTEs run in dependency order: t reads the clock, l
			// takes the lock, s reads the clock again and takes the
			// positions, i inserts (it runs once, to completion).
			sql.WriteString(`WITH t AS (SELECT clock_timestamp() AS asked),
l AS (SELECT asked, pg_advisory_xact_lock(?) FROM t),
s AS (SELECT setval('herald_event_pos', nextval('herald_event_pos') + ?) AS last,
  extract(epoch FROM clock_timestamp() - l.asked)::float8 AS waited FROM l),
i AS (INSERT INTO herald_events (id, event_id, event_type, resource_name, resource_id, user_id, created_at, data, session_variables, trace_context)
SELECT s.last - ? + v.ord, v.event_id, v.event_type, v.resource_name, v.resource_id, v.user_id, v.created_at, v.data, v.session_variables, v.trace_context
FROM s, (VALUES `)
			for i, e := range chunk {
				if i > 0 {
					sql.WriteString(", ")
				}
				sql.WriteString("(?::bigint, ?::text, ?::text, ?::text, ?::text, ?::text, ?::timestamptz, ?::text, ?::text, ?::text)")
				args = append(args, i+1, e.eventID, e.eventType, e.resource, e.resourceID, e.userID, e.createdAt, e.data, e.session, e.trace)
			}
			sql.WriteString(`) AS v(ord, event_id, event_type, resource_name, resource_id, user_id, created_at, data, session_variables, trace_context)
RETURNING 1)
SELECT (SELECT count(*) FROM i) AS inserted, (SELECT waited FROM s) AS waited`)
			// Find runs the statement and reads its one row inside
			// GORM's query callbacks, so its span covers all of it.
			var res struct {
				Inserted int64
				Waited   float64
			}
			start := time.Now()
			if err := tx.Table("herald_events").Raw(sql.String(), args...).Find(&res).Error; err != nil {
				return fmt.Errorf("events: record: %w", err)
			}
			positionLockSpan(tx.Statement.Context, start, res.Waited)
			if res.Inserted != int64(len(chunk)) {
				return fmt.Errorf("events: record: inserted %d of %d events", res.Inserted, len(chunk))
			}
			continue
		}
		// OR FAIL: a failed insert fails the transaction anyway, so the
		// statement need not be undoable on its own. Under the default
		// (ABORT) a multi-row INSERT opens a statement journal, whose 64 KiB
		// buffer the pure-Go SQLite maps and unmaps at every flush (about
		// 8% of the writer's time at 32 clients).
		sql.WriteString(`INSERT OR FAIL INTO herald_events (event_id, event_type, resource_name, resource_id, user_id, created_at, data, session_variables, trace_context) VALUES `)
		for i, e := range chunk {
			if i > 0 {
				sql.WriteString(", ")
			}
			sql.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
			args = append(args, e.eventID, e.eventType, e.resource, e.resourceID, e.userID,
				e.createdAt.Format("2006-01-02 15:04:05.999999-07:00"), e.data, e.session, e.trace)
		}
		n, err := database.Exec(tx, sql.String(), args...)
		if err != nil {
			return fmt.Errorf("events: record: %w", err)
		}
		if n != int64(len(chunk)) {
			return fmt.Errorf("events: record: inserted %d of %d events", n, len(chunk))
		}
	}
	return nil
}

// tracerName is the instrumentation scope of the events spans.
const tracerName = "github.com/herald-dev/herald/events"

// positionLockSpan records the wait for the position lock as a span under
// ctx's, when that one is recording: from the statement's start, as long as
// the server says it waited (the server's clock starts a little later, by
// half a round trip).
func positionLockSpan(ctx context.Context, start time.Time, waited float64) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return
	}
	_, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, "herald.events.position_lock",
		trace.WithTimestamp(start), trace.WithAttributes(attribute.Int64("herald.events.position_lock.key", positionLockKey)))
	span.End(trace.WithTimestamp(start.Add(time.Duration(waited * float64(time.Second)))))
}

const bufferKey = "herald:events_buffer"

// Buffer holds the events of one write transaction until just before it
// commits. Deferring the inserts to one statement at the end means, on
// PostgreSQL, that the position lock is held only from that statement to
// the commit, so write transactions overlap in everything but their
// commits; and it turns many single-row inserts into one.
type Buffer struct {
	dialect Dialect
	events  []pendingEvent
	changes []Change
}

// Change is one row change captured in a write transaction: Op is
// created, updated or deleted (soft deletes included, New then nil), Old
// and New are the row in its API form.
type Change struct {
	Resource, ResourceID, Op string
	Old, New                 map[string]any
	// Context is the writing request's (its session and trace).
	Context context.Context
}

// PendingChanges returns the row changes buffered on tx so far, in order, for a
// TxHook that acts on them before commit (classifications). It returns nil
// for a handle without a buffer. The maps must not be modified.
func PendingChanges(tx *gorm.DB) []Change {
	v, ok := tx.Get(bufferKey)
	if !ok {
		return nil
	}
	return v.(*Buffer).changes
}

// Buffered returns tx with a fresh buffer: the plugin appends the events of
// every statement run on tx (or on sessions made from it) to the buffer
// instead of inserting them. The caller must Flush before committing;
// without a buffer the plugin inserts each event at once.
func Buffered(tx *gorm.DB, dialect Dialect) (*gorm.DB, *Buffer) {
	buf := &Buffer{dialect: dialect}
	return tx.Set(bufferKey, buf), buf
}

// Flush inserts the buffered events on tx, in order, and empties the
// buffer. Call it last before commit.
//
// When tx's context holds a recording span (the write batch's), the flush
// is a herald.events.flush span under it, with the event count.
func (b *Buffer) Flush(tx *gorm.DB) error {
	if len(b.events) == 0 {
		b.changes = nil
		return nil
	}
	var span trace.Span
	if parent := trace.SpanFromContext(tx.Statement.Context); parent.IsRecording() {
		var ctx context.Context
		ctx, span = parent.TracerProvider().Tracer(tracerName).Start(tx.Statement.Context, "herald.events.flush",
			trace.WithAttributes(attribute.Int("herald.events.count", len(b.events))))
		tx = tx.WithContext(ctx)
	}
	err := insertEvents(tx.Session(&gorm.Session{NewDB: true, SkipHooks: true}), b.dialect, b.events)
	b.events, b.changes = nil, nil
	if span != nil {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "flush failed")
		}
		span.End()
	}
	return err
}

// NewEvent is an event of a type the plugin does not record itself
// (R.manual, R.classified), added by another package to a write
// transaction with Append.
type NewEvent struct {
	// Type is the full event type, e.g. "orders.manual".
	Type       string
	Resource   string
	ResourceID string
	Data       Data
	// Context, when set, supplies the session variables and trace
	// context instead of tx's: a hook that records events for the changes
	// of several requests sharing one transaction passes each change's.
	Context context.Context
}

// Append adds e to tx's transaction: it is buffered with the plugin's own
// events and takes its position at the flush, like every other event, so
// it commits (or rolls back) with the transaction. Session variables and
// trace context come from tx's context, as for captured events. tx must be
// a handle of the write path (buffered); Append returns the eventId.
func Append(tx *gorm.DB, e NewEvent) (string, error) {
	v, ok := tx.Get(bufferKey)
	if !ok {
		return "", fmt.Errorf("events: append %s: not a write-path transaction", e.Type)
	}
	if e.Data.Changes.Added == nil {
		e.Data.Changes.Added = []string{}
	}
	if e.Data.Changes.Updated == nil {
		e.Data.Changes.Updated = []string{}
	}
	if e.Data.Changes.Removed == nil {
		e.Data.Changes.Removed = []string{}
	}
	ctx := e.Context
	if ctx == nil {
		ctx = tx.Statement.Context
	}
	ev, err := newPending(ctx, e.Type, e.Resource, e.ResourceID, e.Data, time.Now())
	if err != nil {
		return "", err
	}
	buf := v.(*Buffer)
	buf.events = append(buf.events, ev)
	return ev.eventID, nil
}
