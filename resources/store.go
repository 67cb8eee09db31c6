// Package resources owns the declared schema: parsing and validating it,
// migrating the resource tables, and the generic, permission-checked queries
// behind the CRUD API. Every write runs through one group-commit writer, as
// GORM create/update/delete statements so that the event plugin registered
// on the handle sees each of them.
package resources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/herald-dev/herald/auth"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/models"
)

// Row is a record as the API returns it: column name to JSON value, with
// datetimes as TimeFormat strings.
type Row = map[string]any

// MaxBulk is the most records one POST may create.
const MaxBulk = 1000

// StoreConfig configures a Store.
type StoreConfig struct {
	// MaxBatch caps how many requests' writes share one transaction.
	// Default 64.
	MaxBatch int
	// OnCommit is called after every committed write transaction (the
	// outbox relay's wake-up). Optional; must not block.
	OnCommit func()
	// OnSchema is called after the schema in use changed (an import here,
	// or another instance's, seen by the refresh), with its version: views
	// made under the old schema (realtime streams) are out of date.
	// Optional; must not block.
	OnSchema func(version int)
	// Writers is how many write transactions run at once. Default 1: SQLite
	// has one writer connection anyway. PostgreSQL overlaps transactions'
	// work with other transactions' commits when it is larger.
	Writers int
	// TxHooks wrap every write transaction, in order (the event buffer
	// first). Optional.
	TxHooks []TxHook
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock; defaults to time.Now.
	Now func() time.Time
	// RefreshInterval is how often the store checks whether another
	// instance changed the schema. Default 2s.
	RefreshInterval time.Duration
	// WriteTimeout bounds one write transaction (a request waiting for a
	// lock held elsewhere gets 503 instead of waiting for ever). Default 10s.
	WriteTimeout time.Duration
}

// Store serves the declared resources.
type Store struct {
	db    *database.DB
	cfg   StoreConfig
	state atomic.Pointer[schemaState]
	check *validator.Validate
	w     *writer
	// apiWrites counts Create, Update and Delete calls (Writes).
	apiWrites atomic.Uint64

	mu          sync.Mutex
	stopRefresh chan struct{}
	refreshDone chan struct{}
}

// NewStore returns a Store on db. Call Apply or Load, then Start.
func NewStore(cfg StoreConfig, db *database.DB) *Store {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 64
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 2 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	s := &Store{db: db, cfg: cfg, check: validator.New()}
	s.setSchema(&Schema{}, 0)
	s.w = newWriter(db.Write, cfg.MaxBatch, cfg.Writers, cfg.WriteTimeout, cfg.TxHooks, cfg.OnCommit, cfg.Logger)
	return s
}

// Start starts the write path and the schema refresh; safe to call twice.
func (s *Store) Start() {
	s.w.start()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopRefresh == nil {
		s.stopRefresh, s.refreshDone = make(chan struct{}), make(chan struct{})
		go s.refreshLoop(s.stopRefresh, s.refreshDone)
	}
}

// Stop finishes queued writes and stops the write path and the schema
// refresh; safe to call twice.
func (s *Store) Stop() {
	s.w.stop()
	s.mu.Lock()
	stop, done := s.stopRefresh, s.refreshDone
	s.stopRefresh = nil
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// Write runs fn in a transaction of the write path that requests use:
// batched with them (group commit), under the write timeout, wrapped by
// the transaction hooks (so events appended with events.Append take
// their positions at the flush). fn may run more than once (a batch that
// meets another op's failure is re-run without it) and must leave no Go
// state behind that a re-run would not overwrite. Background services
// (the event relay's consumers, the webhook queue) write through it, so
// on SQLite they share the one writer connection with requests instead of
// holding it.
func (s *Store) Write(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.w.do(ctx, fn, false)
}

// Writes counts the API's writes (creates, updates, deletes) so far: a
// background job that sees some arrive during its batch pauses before the
// next one.
func (s *Store) Writes() uint64 { return s.apiWrites.Load() }

// write is Write for the API's own writes, counted for Writes.
func (s *Store) write(ctx context.Context, fn func(tx *gorm.DB) error) error {
	s.apiWrites.Add(1)
	return s.w.do(ctx, fn, false)
}

// WriteAlone is Write in a transaction of fn's own, never shared with
// other writes: for background work that reads rows and must not see
// another op's uncommitted changes in the same transaction (its hooks
// would then count them twice).
func (s *Store) WriteAlone(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.w.do(ctx, fn, true)
}

// DB returns the database the store runs on.
func (s *Store) DB() *database.DB { return s.db }

// schemaState is the applied schema and the registry version it came from,
// swapped together.
type schemaState struct {
	schema  *Schema
	version int
}

// SchemaVersion is the registry version of the schema in use.
func (s *Store) SchemaVersion() int { return s.state.Load().version }

// Schema returns the applied schema. Callers must not modify it.
func (s *Store) Schema() *Schema { return s.state.Load().schema }

// setSchema installs a schema unless a newer version is already in place
// (a refresh that read the registry before a local import committed must
// not undo it).
func (s *Store) setSchema(sc *Schema, version int) {
	next := &schemaState{schema: sc, version: version}
	for {
		cur := s.state.Load()
		if cur != nil && cur.version > version {
			return
		}
		if s.state.CompareAndSwap(cur, next) {
			if s.cfg.OnSchema != nil && (cur == nil || cur.version != version) {
				s.cfg.OnSchema(version)
			}
			return
		}
	}
}

// Load reads the stored schema into memory, for a start without a file.
func (s *Store) Load(ctx context.Context) error {
	sc, version, err := loadRegistry(s.db.Read.WithContext(ctx))
	if err != nil {
		return err
	}
	for _, p := range sc.InactiveClassifications() {
		s.cfg.Logger.Warn("resources: a stored classification does not compile and is not evaluated; import a corrected schema",
			"field", p.Field, "problem", p.Message)
	}
	s.setSchema(sc, version)
	return nil
}

// Refresh reloads the schema when another instance changed the stored
// registry, and makes the connections drop statements prepared against
// the old tables. Start runs it every RefreshInterval.
func (s *Store) Refresh(ctx context.Context) error {
	var stored int64
	if err := s.db.Read.WithContext(ctx).Raw("SELECT COALESCE(MAX(version), 0) FROM herald_registry").Scan(&stored).Error; err != nil {
		return fmt.Errorf("resources: read registry version: %w", err)
	}
	if stored == int64(s.state.Load().version) {
		return nil
	}
	if err := s.Load(ctx); err != nil {
		return err
	}
	s.db.InvalidateStatements()
	s.cfg.Logger.Info("schema reloaded: another instance changed it", "version", stored)
	return nil
}

func (s *Store) refreshLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(s.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		func() {
			defer func() {
				if p := recover(); p != nil {
					s.cfg.Logger.Error("resources: schema refresh panicked", "panic", p)
				}
			}()
			if err := s.Refresh(ctx); err != nil {
				s.cfg.Logger.Warn("resources: schema refresh", "err", err)
			}
		}()
		cancel()
	}
}

// ValidationError lists every offending field of a write (422).
type ValidationError struct{ Problems []Problem }

// Error implements error.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Message
	}
	return "invalid record: " + strings.Join(parts, "; ")
}

// ConflictError is a unique violation or a restrict rule (409).
type ConflictError struct {
	Message  string
	Problems []Problem
}

// Error implements error.
func (e *ConflictError) Error() string { return e.Message }

// Unwrap makes errors.Is(err, models.ErrConflict) true.
func (e *ConflictError) Unwrap() error { return models.ErrConflict }

func (s *Store) resource(name string) (*Schema, *Resource, error) {
	sc := s.Schema()
	r := sc.Resource(name)
	if r == nil {
		return nil, nil, fmt.Errorf("resources: unknown resource %q: %w", name, models.ErrNotFound)
	}
	return sc, r, nil
}

// resolve finds the resource and the caller's access for the action.
func (s *Store) resolve(ctx context.Context, resource, action string) (*Schema, *Resource, *access, error) {
	sc, r, err := s.resource(resource)
	if err != nil {
		return nil, nil, nil, err
	}
	a, err := s.authorize(ctx, sc, r, action)
	if err != nil {
		return nil, nil, nil, err
	}
	return sc, r, a, nil
}

// Allowed tells whether ctx's caller may do action on resource at all
// (404 for no such resource, 401 or 403 otherwise), so that a handler can
// refuse before it reads a body.
func (s *Store) Allowed(ctx context.Context, resource, action string) error {
	_, _, _, err := s.resolve(ctx, resource, action)
	return err
}

func (s *Store) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Microsecond) }

// decodeRow turns scanned columns into a Row.
func decodeRow(r *Resource, raw map[string]any) (Row, error) {
	row := make(Row, len(raw))
	for k, v := range raw {
		f := r.Column(k)
		if f == nil {
			continue
		}
		cv, err := f.fromDB(v)
		if err != nil {
			return nil, err
		}
		row[k] = Output(cv)
	}
	return row, nil
}

// DecodeRow turns a row scanned from resource's table into its API form. It
// reports false for an unknown resource. The event plugin uses it so events
// carry exactly what reads return.
func (s *Store) DecodeRow(resource string, raw map[string]any) (Row, bool, error) {
	r := s.Schema().Resource(resource)
	if r == nil {
		return nil, false, nil
	}
	row, err := decodeRow(r, raw)
	return row, true, err
}

// selectFrom is "SELECT <every column> FROM <table>". Naming the columns,
// never *, keeps a connection that prepared a statement before a schema
// change from reading columns by stale positions.
func selectFrom(r *Resource) string {
	cols := r.Columns()
	names := make([]string, len(cols))
	for i, f := range cols {
		names[i] = q(f.Name)
	}
	return "SELECT " + strings.Join(names, ", ") + " FROM " + q(r.Name)
}

// selectRows runs a SELECT on tx and decodes the rows.
func selectRows(tx *gorm.DB, r *Resource, sql string, args ...any) ([]Row, error) {
	var raw []map[string]any
	if err := tx.Raw(sql, args...).Scan(&raw).Error; err != nil {
		return nil, fmt.Errorf("resources: query %s: %w", r.Name, err)
	}
	rows := make([]Row, len(raw))
	for i, m := range raw {
		row, err := decodeRow(r, m)
		if err != nil {
			return nil, err
		}
		rows[i] = row
	}
	return rows, nil
}

// findOne reads one row by id inside tx, visible (not soft-deleted) unless
// withDeleted, with the access's row filters; nil when there is none.
func (s *Store) findOne(tx *gorm.DB, r *Resource, a *access, id string, withDeleted bool, lock rowLock) (Row, error) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		// Only the standard form: uuid.Parse also takes urn:uuid:, braces
		// and no hyphens, which PostgreSQL read differently from SQLite.
		return nil, nil
	}
	b := &sqlBuilder{kind: s.db.Kind}
	b.add(q(ColID)+" = ?", u.String())
	if r.SoftDelete && !withDeleted {
		b.add(q(ColDeletedAt) + " IS NULL")
	}
	a.addRowFilters(b)
	sql := selectFrom(r) + b.where()
	if lock != "" && s.db.Kind == database.Postgres {
		sql += " " + string(lock)
	}
	rows, err := selectRows(tx, r, sql, b.args...)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	return rows[0], nil
}

// rowLock is how findOne locks the row it reads (PostgreSQL; SQLite has
// one writer).
type rowLock string

const (
	noLock    rowLock = ""
	forUpdate rowLock = "FOR UPDATE"
	forShare  rowLock = "FOR SHARE"
)

// ListResult is a page of records.
type ListResult struct {
	Data []Row    `json:"data"`
	Meta ListMeta `json:"meta"`
}

// ListMeta describes the page.
type ListMeta struct {
	Limit  int     `json:"limit"`
	Offset int     `json:"offset"`
	Total  int64   `json:"total"`
	Next   *string `json:"next"`
}

// List returns a page of a resource's records.
func (s *Store) List(ctx context.Context, resource string, params url.Values) (*ListResult, error) {
	sc, r, a, err := s.resolve(ctx, resource, ActionRead)
	if err != nil {
		return nil, err
	}
	lq, err := ParseListQuery(r, params)
	if err != nil {
		return nil, err
	}
	if err := a.checkReadable(lq); err != nil {
		return nil, err
	}
	b := &sqlBuilder{kind: s.db.Kind}
	if r.SoftDelete {
		b.add(q(ColDeletedAt) + " IS NULL")
	}
	a.addRowFilters(b)
	for _, f := range lq.Filters {
		b.addFilter(f)
	}
	db := s.db.Read.WithContext(ctx)
	var total int64
	if err := db.Raw("SELECT COUNT(*) FROM "+q(r.Name)+b.where(), b.args...).Scan(&total).Error; err != nil {
		return nil, fmt.Errorf("resources: count %s: %w", r.Name, err)
	}
	if lq.After != nil {
		b.addAfter(lq.Sort, lq.After)
	}
	sql := fmt.Sprintf("%s%s%s LIMIT %d OFFSET %d", selectFrom(r), b.where(), orderBy(lq.Sort), lq.Limit+1, lq.Offset)
	rows, err := selectRows(db, r, sql, b.args...)
	if err != nil {
		return nil, err
	}
	res := &ListResult{Meta: ListMeta{Limit: lq.Limit, Offset: lq.Offset, Total: total}}
	if len(rows) > lq.Limit {
		rows = rows[:lq.Limit]
		next := encodeCursor(lq.Sort, rows[len(rows)-1])
		res.Meta.Next = &next
	}
	if err := s.expand(ctx, db, sc, r, rows, lq.Include); err != nil {
		return nil, err
	}
	for i := range rows {
		rows[i] = a.project(rows[i], lq.Fields)
	}
	res.Data = rows
	return res, nil
}

// Get returns one visible record and its entity tag (see ETag; with
// include, the tag covers the included records too); params may carry
// fields and include.
func (s *Store) Get(ctx context.Context, resource, id string, params url.Values) (Row, string, error) {
	sc, r, a, err := s.resolve(ctx, resource, ActionRead)
	if err != nil {
		return nil, "", err
	}
	fields, err := parseFields(r, params.Get("fields"))
	if err != nil {
		return nil, "", err
	}
	include, err := parseInclude(r, params.Get("include"))
	if err != nil {
		return nil, "", err
	}
	if err := a.checkReadable(&ListQuery{Fields: fields, Include: include}); err != nil {
		return nil, "", err
	}
	db := s.db.Read.WithContext(ctx)
	row, err := s.findOne(db, r, a, id, false, noLock)
	if err != nil {
		return nil, "", err
	}
	if row == nil {
		return nil, "", fmt.Errorf("resources: %s %s: %w", r.Name, id, models.ErrNotFound)
	}
	tag := r.ETag(row)
	if err := s.expand(ctx, db, sc, r, []Row{row}, include); err != nil {
		return nil, "", err
	}
	if len(include) > 0 {
		tag = expandedETag(tag, row[ExpandKey])
	}
	return a.project(row, fields), tag, nil
}

// expand adds each included relation's record under row["expand"][field],
// or null when it is missing or hidden from the caller.
func (s *Store) expand(ctx context.Context, db *gorm.DB, sc *Schema, r *Resource, rows []Row, include []string) error {
	for _, name := range include {
		f := r.Field(name)
		target := sc.Resource(f.Relation.Resource)
		ta, err := s.authorize(ctx, sc, target, ActionRead)
		if err != nil && !errors.Is(err, models.ErrForbidden) && !errors.Is(err, models.ErrUnauthorized) {
			return err
		}
		byID := map[string]Row{}
		var ids []any
		for _, row := range rows {
			if id, ok := row[name].(string); ok && byID[id] == nil {
				byID[id] = Row{}
				ids = append(ids, id)
			}
		}
		if ta != nil && len(ids) > 0 {
			b := &sqlBuilder{kind: s.db.Kind}
			b.addFilter(Filter{Field: target.Column(ColID), Op: "in", List: ids})
			if target.SoftDelete {
				b.add(q(ColDeletedAt) + " IS NULL")
			}
			ta.addRowFilters(b)
			found, err := selectRows(db, target, selectFrom(target)+b.where(), b.args...)
			if err != nil {
				return err
			}
			for _, t := range found {
				byID[t[ColID].(string)] = ta.project(t, nil)
			}
		}
		for _, row := range rows {
			ex, _ := row[ExpandKey].(map[string]any)
			if ex == nil {
				ex = map[string]any{}
				row[ExpandKey] = ex
			}
			id, _ := row[name].(string)
			if t := byID[id]; len(t) > 0 {
				ex[name] = t
			} else {
				ex[name] = nil
			}
		}
	}
	return nil
}

// Create inserts one record (body is an object) or several atomically (an
// array of at most MaxBulk objects). It returns the created rows and their
// entity tags.
func (s *Store) Create(ctx context.Context, resource string, body any) ([]Row, []string, error) {
	sc, r, a, err := s.resolve(ctx, resource, ActionCreate)
	if err != nil {
		return nil, nil, err
	}
	var objs []map[string]any
	prefix := func(int) string { return "" }
	switch v := body.(type) {
	case map[string]any:
		objs = []map[string]any{v}
	case []any:
		if len(v) == 0 || len(v) > MaxBulk {
			return nil, nil, &ValidationError{[]Problem{{Field: "", Rule: "maxItems", Message: fmt.Sprintf("send 1 to %d records", MaxBulk)}}}
		}
		prefix = func(i int) string { return fmt.Sprintf("[%d].", i) }
		for i, item := range v {
			m, ok := item.(map[string]any)
			if !ok {
				return nil, nil, &ValidationError{[]Problem{{Field: fmt.Sprintf("[%d]", i), Rule: "type", Message: "must be an object"}}}
			}
			objs = append(objs, m)
		}
	default:
		return nil, nil, &ValidationError{[]Problem{{Field: "", Rule: "type", Message: "body must be an object or an array of objects"}}}
	}
	now := s.now()
	var probs []Problem
	vals := make([]map[string]any, len(objs))
	for i, obj := range objs {
		v, p := s.prepareCreate(r, a, obj, now)
		for _, pr := range p {
			pr.Field = prefix(i) + pr.Field
			probs = append(probs, pr)
		}
		vals[i] = v
	}
	if err := a.forbidden(); err != nil {
		return nil, nil, err
	}
	if len(probs) > 0 {
		return nil, nil, &ValidationError{probs}
	}
	err = s.write(ctx, func(tx *gorm.DB) error {
		for i, v := range vals {
			if err := s.checkParents(tx, sc, r, v, prefix(i)); err != nil {
				return err
			}
			if err := s.insert(tx, r, v); err != nil {
				return withPrefix(s.mapWriteError(tx, r, v, err), prefix(i))
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	rows, tags := make([]Row, len(vals)), make([]string, len(vals))
	for i, v := range vals {
		out := outputRow(v)
		rows[i], tags[i] = a.project(out, nil), r.ETag(out)
	}
	return rows, tags, nil
}

// prepareCreate checks one object and returns its canonical column values.
func (s *Store) prepareCreate(r *Resource, a *access, obj map[string]any, now time.Time) (map[string]any, []Problem) {
	vals := map[string]any{}
	var probs []Problem
	bad := map[string]bool{} // sent with a wrong type: no "required" as well
	for _, k := range orderedKeys(r, obj) {
		v := obj[k]
		if k == ColID {
			cv, err := r.Column(ColID).coerce(v)
			if err != nil || cv == nil {
				probs = append(probs, Problem{Field: k, Rule: "type", Message: "must be a UUID string"})
			}
			vals[ColID] = cv
			continue
		}
		p := s.coerceInto(r, a, vals, k, v)
		if len(p) > 0 {
			bad[k] = true
		}
		probs = append(probs, p...)
	}
	probs = append(probs, a.applyChecks(vals)...)
	for _, f := range r.Fields {
		if _, ok := vals[f.Name]; !ok && !bad[f.Name] {
			vals[f.Name] = f.Default
		}
	}
	for _, p := range s.validateRecord(r, vals) {
		if !bad[p.Field] {
			probs = append(probs, p)
		}
	}
	if vals[ColID] == nil {
		vals[ColID] = uuid.Must(uuid.NewV7()).String()
	}
	vals[ColCreatedAt] = now
	vals[ColUpdatedAt] = now
	if r.SoftDelete {
		vals[ColDeletedAt] = nil
	}
	return vals, probs
}

// coerceInto checks one written key and stores its canonical value.
// withPrefix names the item of a bulk create ("[1].sku") in the problems
// of err, as validation does.
func withPrefix(err error, prefix string) error {
	if prefix == "" {
		return err
	}
	var ve *ValidationError
	var ce *ConflictError
	var probs []Problem
	switch {
	case errors.As(err, &ve):
		probs = ve.Problems
	case errors.As(err, &ce):
		probs = ce.Problems
	}
	for i := range probs {
		probs[i].Field = prefix + probs[i].Field
	}
	return err
}

// orderedKeys lists a body's keys in a stable order, so that a 422 lists
// its problems the same way every time: the resource's columns in schema
// order, then the other keys alphabetically.
func orderedKeys(r *Resource, obj map[string]any) []string {
	keys := make([]string, 0, len(obj))
	for _, f := range r.Columns() {
		if _, ok := obj[f.Name]; ok {
			keys = append(keys, f.Name)
		}
	}
	var rest []string
	for k := range obj {
		if r.Column(k) == nil {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(keys, rest...)
}

func (s *Store) coerceInto(r *Resource, a *access, vals map[string]any, k string, v any) []Problem {
	f := r.Field(k)
	if f == nil {
		if r.Column(k) != nil {
			return []Problem{{Field: k, Rule: "readOnly", Message: "is set by Herald"}}
		}
		return []Problem{{Field: k, Rule: "unknown", Message: "is not a field of " + r.Name}}
	}
	a.checkWritable(k)
	cv, err := f.coerceInput(v)
	if err != nil {
		return []Problem{{Field: k, Rule: "type", Message: err.Error()}}
	}
	vals[k] = cv
	return nil
}

// validateRecord applies required and the validation rules to every
// declared field of a complete record.
func (s *Store) validateRecord(r *Resource, vals map[string]any) []Problem {
	var probs []Problem
	for _, f := range r.Fields {
		v := vals[f.Name]
		if v == nil {
			if f.Required {
				probs = append(probs, Problem{Field: f.Name, Rule: "required", Message: "is required"})
			}
			continue
		}
		probs = append(probs, f.validate(v, s.check)...)
	}
	return probs
}

// dbValues turns canonical values into a fresh map of parameters (GORM
// writes into the map it is given, so every attempt gets its own).
func (s *Store) dbValues(r *Resource, vals map[string]any) map[string]any {
	out := make(map[string]any, len(vals))
	for k, v := range vals {
		out[k] = toDB(s.db.Kind, r.Column(k), v)
	}
	return out
}

// insert writes a new row: vals holds every column's canonical value
// (prepareCreate's). database.Insert hands the row to the events plugin,
// which records its created event.
func (s *Store) insert(tx *gorm.DB, r *Resource, vals map[string]any) error {
	cols := r.Columns()
	names := make([]string, 0, len(cols))
	row := make(map[string]any, len(vals))
	for _, c := range cols {
		if v, ok := vals[c.Name]; ok {
			names = append(names, c.Name)
			row[c.Name] = toDB(s.db.Kind, c, v)
		}
	}
	return database.Insert(tx, r.Name, names, row)
}

func outputRow(vals map[string]any) Row {
	row := make(Row, len(vals))
	for k, v := range vals {
		row[k] = Output(v)
	}
	return row
}

// Update changes a record: a partial update (PATCH) or, with replace, a full
// replace (PUT) where absent fields take their default or null. An update
// that changes nothing writes nothing and returns the row as it is. With
// ifMatch (entity tags, or "*"), a row whose tag is not among them is left
// alone: PreconditionFailed. It returns the row and its new entity tag.
func (s *Store) Update(ctx context.Context, resource, id string, body map[string]any, replace bool, ifMatch []string) (Row, string, error) {
	sc, r, a, err := s.resolve(ctx, resource, ActionUpdate)
	if err != nil {
		return nil, "", err
	}
	vals := map[string]any{}
	var probs []Problem
	for _, k := range orderedKeys(r, body) {
		v := body[k]
		if k == ColID {
			if v != id {
				probs = append(probs, Problem{Field: k, Rule: "readOnly", Message: "cannot change a record's id"})
			}
			continue
		}
		probs = append(probs, s.coerceInto(r, a, vals, k, v)...)
	}
	// Checks first, so a checked field that PUT leaves out is filled from
	// the claim rather than reset.
	probs = append(probs, a.applyChecks(vals)...)
	if replace {
		// A full replace resets only what the role may write; fields it may
		// not write keep their values.
		for _, f := range r.Fields {
			if _, ok := vals[f.Name]; !ok && a.writable(f.Name) {
				vals[f.Name] = f.Default
			}
		}
	}
	if err := a.forbidden(); err != nil {
		return nil, "", err
	}
	if len(probs) > 0 {
		return nil, "", &ValidationError{probs}
	}
	var result Row
	err = s.write(ctx, func(tx *gorm.DB) error {
		old, err := s.findOne(tx, r, a, id, false, forUpdate)
		if err != nil {
			return err
		}
		if old == nil {
			return fmt.Errorf("resources: %s %s: %w", r.Name, id, models.ErrNotFound)
		}
		if err := r.checkIfMatch(old, ifMatch); err != nil {
			return err
		}
		merged := map[string]any{}
		for _, f := range r.Fields {
			if v, ok := vals[f.Name]; ok {
				merged[f.Name] = v
			} else {
				cv, _ := f.coerce(old[f.Name])
				merged[f.Name] = cv
			}
		}
		if p := s.validateRecord(r, merged); len(p) > 0 {
			return &ValidationError{p}
		}
		changed := map[string]any{}
		for k, v := range vals {
			if !sameValue(Output(v), old[k]) {
				changed[k] = v
			}
		}
		result = Row{}
		for k, v := range old {
			result[k] = v
		}
		if len(changed) == 0 {
			return nil
		}
		if err := s.checkParents(tx, sc, r, changed, ""); err != nil {
			return err
		}
		changed[ColUpdatedAt] = s.nextUpdatedAt(old[ColUpdatedAt])
		if err := tx.Table(r.Name).Where(q(ColID)+" = ?", id).Updates(s.dbValues(r, changed)).Error; err != nil {
			return s.mapWriteError(tx, r, changed, err)
		}
		for k, v := range changed {
			result[k] = Output(v)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return a.project(result, nil), r.ETag(result), nil
}

// sameValue compares two values in output form.
func sameValue(a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	fa, aNum := toFloat(a)
	fb, bNum := toFloat(b)
	if aNum && bNum {
		return fa == fb
	}
	return fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b) || jsonEqual(a, b)
}

// Delete removes a record: soft (sets deleted_at) when the resource has soft
// delete and hard is false, otherwise for good. Relations to it are handled
// here, row by row, so every touched row goes through the GORM callbacks:
// restrict refuses (409), cascade deletes the referring rows, setNull clears
// the reference. With ifMatch (entity tags, or "*"), a row whose tag is
// not among them is left alone: PreconditionFailed.
func (s *Store) Delete(ctx context.Context, resource, id string, hard bool, ifMatch []string) error {
	sc, r, a, err := s.resolve(ctx, resource, ActionDelete)
	if err != nil {
		return err
	}
	if hard && !a.admin {
		return fmt.Errorf("resources: hard delete is for admins: %w", models.ErrForbidden)
	}
	return s.write(ctx, func(tx *gorm.DB) error {
		if ifMatch != nil {
			row, err := s.findOne(tx, r, a, id, hard, forUpdate)
			if err != nil {
				return err
			}
			if row == nil {
				return fmt.Errorf("resources: %s %s: %w", r.Name, id, models.ErrNotFound)
			}
			if err := r.checkIfMatch(row, ifMatch); err != nil {
				return err
			}
		}
		return s.deleteRow(tx, sc, r, a, id, hard, map[string]bool{})
	})
}

func (s *Store) deleteRow(tx *gorm.DB, sc *Schema, r *Resource, a *access, id string, hard bool, seen map[string]bool) error {
	key := r.Name + "/" + id
	if seen[key] {
		return nil
	}
	seen[key] = true
	row, err := s.findOne(tx, r, a, id, hard, forUpdate)
	if err != nil {
		return err
	}
	if row == nil {
		return fmt.Errorf("resources: %s %s: %w", r.Name, id, models.ErrNotFound)
	}
	soft := r.SoftDelete && !hard && row[ColDeletedAt] == nil
	for _, child := range sc.Resources {
		for _, f := range child.Fields {
			if f.Type != TypeRelation || f.Relation.Resource != r.Name {
				continue
			}
			b := &sqlBuilder{kind: s.db.Kind}
			b.add(q(f.Name)+" = ?", id)
			if child.SoftDelete && soft {
				b.add(q(ColDeletedAt) + " IS NULL")
			}
			lock := ""
			if s.db.Kind == database.Postgres {
				lock = " FOR UPDATE" // no one re-points them while we act on them
			}
			var refs []map[string]any
			if err := tx.Raw("SELECT "+q(ColID)+", "+q(ColUpdatedAt)+" FROM "+q(child.Name)+b.where()+lock, b.args...).Scan(&refs).Error; err != nil {
				return fmt.Errorf("resources: find %s referring to %s: %w", child.Name, r.Name, err)
			}
			if len(refs) == 0 {
				continue
			}
			ids := make([]string, len(refs))
			for i, ref := range refs {
				v, err := systemFields[ColID].fromDB(ref[ColID])
				if err != nil {
					return fmt.Errorf("resources: find %s referring to %s: %w", child.Name, r.Name, err)
				}
				ids[i], _ = v.(string)
			}
			switch f.Relation.OnDelete {
			case Restrict:
				return &ConflictError{
					Message:  fmt.Sprintf("%d %s record(s) refer to this record through %s", len(ids), child.Name, f.Name),
					Problems: []Problem{{Field: child.Name + "." + f.Name, Rule: "restrict", Message: "still refers to this record"}},
				}
			case Cascade:
				// A soft delete cascades softly where the child has soft
				// delete; a row that really goes takes its children with it,
				// those already soft-deleted included, so that no reference
				// is left dangling.
				for _, cid := range ids {
					if err := s.deleteRow(tx, sc, child, fullAccess, cid, !soft || !child.SoftDelete, seen); err != nil {
						return err
					}
				}
			case SetNull:
				for i, ref := range refs {
					cid := ids[i]
					prev, err := systemFields[ColUpdatedAt].fromDB(ref[ColUpdatedAt])
					if err != nil {
						return fmt.Errorf("resources: %s %s: %w", child.Name, cid, err)
					}
					upd := map[string]any{f.Name: nil, ColUpdatedAt: s.nextUpdatedAt(prev)}
					if err := tx.Table(child.Name).Where(q(ColID)+" = ? AND "+q(f.Name)+" = ?", cid, id).Updates(s.dbValues(child, upd)).Error; err != nil {
						return fmt.Errorf("resources: clear %s.%s: %w", child.Name, f.Name, err)
					}
				}
			}
		}
	}
	if soft {
		upd := map[string]any{ColDeletedAt: s.now()}
		if err := tx.Table(r.Name).Where(q(ColID)+" = ?", id).Updates(s.dbValues(r, upd)).Error; err != nil {
			return fmt.Errorf("resources: soft delete %s: %w", r.Name, err)
		}
		return nil
	}
	if err := tx.Table(r.Name).Where(q(ColID)+" = ?", id).Delete(map[string]any{}).Error; err != nil {
		return s.mapWriteError(tx, r, nil, err)
	}
	return nil
}

// checkParents refuses relations to soft-deleted records, which the
// foreign key still sees but every read hides (422, as for a missing one).
// On PostgreSQL the parent is share-locked so it cannot be deleted before
// this write commits.
func (s *Store) checkParents(tx *gorm.DB, sc *Schema, r *Resource, vals map[string]any, prefix string) error {
	var probs []Problem
	ctx := tx.Statement.Context
	admin := auth.FromContext(ctx).IsAdmin()
	for _, f := range r.Fields {
		v, ok := vals[f.Name]
		if f.Type != TypeRelation || !ok || v == nil {
			continue
		}
		parent := sc.Resource(f.Relation.Resource)
		if parent == nil {
			continue
		}
		// SPEC: a relation value must name a row the caller may read, and
		// a hidden row is answered exactly as a missing one (else the
		// answer would tell whether a hidden id exists). A role with no
		// read permission on the parent resource can name none.
		if !admin {
			var row Row
			if pa, err := s.authorize(ctx, sc, parent, ActionRead); err == nil {
				id, _ := v.(string)
				// FOR SHARE: a concurrent (soft) delete of the parent
				// waits for this write, as the foreign key makes a hard
				// one wait.
				if row, err = s.findOne(tx, parent, pa, id, false, forShare); err != nil {
					return err
				}
			}
			if row == nil {
				probs = append(probs, Problem{Field: prefix + f.Name, Rule: "relation", Message: "refers to a record that does not exist"})
			}
			continue
		}
		if !parent.SoftDelete {
			continue
		}
		sql := "SELECT COUNT(*) FROM " + q(parent.Name) + " WHERE " + q(ColID) + " = ? AND " + q(ColDeletedAt) + " IS NULL"
		if s.db.Kind == database.Postgres {
			sql = "SELECT COUNT(*) FROM (SELECT 1 FROM " + q(parent.Name) + " WHERE " + q(ColID) + " = ? AND " + q(ColDeletedAt) + " IS NULL FOR SHARE) AS p"
		}
		var n int64
		if err := tx.Raw(sql, toDB(s.db.Kind, f, v)).Scan(&n).Error; err != nil {
			return fmt.Errorf("resources: check %s: %w", f.Name, err)
		}
		if n == 0 {
			probs = append(probs, Problem{Field: prefix + f.Name, Rule: "relation", Message: "refers to a record that does not exist"})
		}
	}
	if len(probs) > 0 {
		return &ValidationError{probs}
	}
	return nil
}

// mapWriteError turns a constraint violation into the API's error for it.
func (s *Store) mapWriteError(tx *gorm.DB, r *Resource, vals map[string]any, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		field := constraintField(r, pgErr.ConstraintName, pgErr.ColumnName)
		switch pgErr.Code {
		case "23505":
			return &ConflictError{Message: "a record with this " + field + " already exists",
				Problems: []Problem{{Field: field, Rule: "unique", Message: "must be unique"}}}
		case "23503":
			if strings.Contains(pgErr.Message, "update or delete") {
				return &ConflictError{Message: "other records still refer to this record"}
			}
			return &ValidationError{[]Problem{{Field: field, Rule: "relation", Message: "refers to a record that does not exist"}}}
		case "23502":
			return &ValidationError{[]Problem{{Field: field, Rule: "required", Message: "is required"}}}
		case "23514":
			return &ValidationError{[]Problem{{Field: field, Rule: "check", Message: "violates a constraint"}}}
		}
		return fmt.Errorf("resources: write %s: %w", r.Name, err)
	}
	msg := err.Error()
	field := ""
	if m := sqliteConstraintRE.FindStringSubmatch(msg); m != nil {
		field = m[1]
	}
	switch {
	case strings.Contains(msg, "UNIQUE constraint failed"):
		return &ConflictError{Message: "a record with this " + field + " already exists",
			Problems: []Problem{{Field: field, Rule: "unique", Message: "must be unique"}}}
	case strings.Contains(msg, "FOREIGN KEY constraint failed"):
		if vals == nil {
			return &ConflictError{Message: "other records still refer to this record"}
		}
		// SQLite does not say which key failed: look for the missing parent.
		var probs []Problem
		for _, f := range r.Fields {
			v, ok := vals[f.Name]
			if f.Type != TypeRelation || !ok || v == nil {
				continue
			}
			var n int64
			if tx.Raw("SELECT COUNT(*) FROM "+q(f.Relation.Resource)+" WHERE "+q(ColID)+" = ?", v).Scan(&n).Error == nil && n == 0 {
				probs = append(probs, Problem{Field: f.Name, Rule: "relation", Message: "refers to a record that does not exist"})
			}
		}
		if len(probs) == 0 {
			probs = []Problem{{Field: "", Rule: "relation", Message: "refers to a record that does not exist"}}
		}
		return &ValidationError{probs}
	case strings.Contains(msg, "NOT NULL constraint failed"):
		return &ValidationError{[]Problem{{Field: field, Rule: "required", Message: "is required"}}}
	case strings.Contains(msg, "CHECK constraint failed"):
		return &ValidationError{[]Problem{{Field: "", Rule: "check", Message: "violates a constraint"}}}
	}
	return fmt.Errorf("resources: write %s: %w", r.Name, err)
}

// sqliteConstraintRE finds the column in "UNIQUE constraint failed: t.c (2067)".
var sqliteConstraintRE = regexp.MustCompile(`constraint failed: [a-z0-9_]+\.([a-z0-9_]+)`)

// constraintField finds the field a PostgreSQL constraint belongs to.
func constraintField(r *Resource, constraint, column string) string {
	if column != "" {
		return column
	}
	for _, f := range r.Columns() {
		for _, suffix := range []string{"key", "fkey", "check"} {
			if objectName(r.Name, f.Name, suffix) == constraint {
				return f.Name
			}
		}
	}
	return constraint
}
