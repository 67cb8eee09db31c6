// Package classify turns classifications (SPEC section 8) into events.
//
// A classification is a named CEL expression over a row (compiled by
// package resources). Herald stores each live row's outcome per
// classification in herald_outcomes and emits R.classified, with
// data.classification = {name, from, to} and the change's old and new
// rows, whenever an outcome changes. Three paths do that:
//
//   - Writes: TxHook runs just before every write transaction commits,
//     after the row changes and before the event flush. It reads the
//     stored outcomes of the rows the transaction updated or deleted,
//     evaluates the classifications on each change in order (created:
//     null to x, updated: x to y, deleted, soft or hard, cascaded or not:
//     x to null), appends the transitions to the transaction's events and
//     writes the new outcomes. So a transition commits or rolls back with
//     its write, and carries the writer's session variables and trace.
//   - Time: outcomes that depend on `now` are re-evaluated by a background
//     job (Config.Interval, 30 s by default) with role "system" in the
//     session variables. Where every use of now compares it with a
//     datetime field (resources.Window), the job reads only the rows whose
//     field crossed the boundary since its last run, by an indexed range
//     query; other expressions are scanned in batches, and the log says so.
//   - Definitions: a classification added or changed is re-evaluated on
//     every row in the background (batches of Config.BatchSize, each its
//     own short write transaction, so writers are not blocked), emitting
//     the transitions from the stored outcomes (null for a new one); a
//     removed one emits x to null and its outcomes are deleted.
//
// Background transitions carry the row as it is in both old and new (it
// did not change). One instance at a time runs the background job: a
// lease row in herald_leases elects it.
package classify

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/resources"
)

// Config configures a Classifier.
type Config struct {
	// Interval is how often outcomes that depend on now are re-evaluated.
	// Default 30s (SPEC: at least once a minute).
	Interval time.Duration
	// BatchSize is how many rows one background transaction evaluates.
	// Default 500.
	BatchSize int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Validate checks the settings and fills the defaults.
func (c *Config) Validate() error {
	if c.Interval == 0 {
		c.Interval = 30 * time.Second
	}
	if c.Interval < 10*time.Millisecond || c.Interval > time.Minute {
		return fmt.Errorf("classify: Interval %s: must be between 10ms and 1m", c.Interval)
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.BatchSize < 1 || c.BatchSize > 10000 {
		return fmt.Errorf("classify: BatchSize %d: must be between 1 and 10000", c.BatchSize)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Classifier evaluates classifications on writes (TxHook) and in the
// background (Start). It is safe for concurrent use.
type Classifier struct {
	cfg   Config
	store *resources.Store
	kind  database.Kind
	owner string // this instance's lease token

	kick chan struct{}

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	// unnarrowed remembers which expressions were reported as scanned.
	unnarrowed map[string]bool
}

// New returns a Classifier for store's schema.
func New(cfg Config, store *resources.Store) (*Classifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Classifier{cfg: cfg, store: store, kind: store.DB().Kind, owner: uuid.NewString(),
		kick: make(chan struct{}, 1), unnarrowed: map[string]bool{}}, nil
}

func (c *Classifier) now() time.Time { return c.cfg.Now().UTC() }

// TxHook is the write-path hook (resources.StoreConfig.TxHooks). It must
// come after the events hook, whose buffer it reads.
func (c *Classifier) TxHook(tx *gorm.DB) (*gorm.DB, func() error) {
	return tx, func() error { return c.onCommit(tx) }
}

type outcomeKey struct{ resource, id, name string }

// onCommit records the transitions of the transaction's row changes.
func (c *Classifier) onCommit(tx *gorm.DB) error {
	changes := events.PendingChanges(tx)
	if len(changes) == 0 {
		return nil
	}
	sc := c.store.Schema()
	// The stored outcome matters only for rows that existed before this
	// transaction: those whose first change here is not their creation.
	first := map[[2]string]bool{}
	need := map[string][]string{}
	for i := range changes {
		ch := &changes[i]
		r := sc.Resource(ch.Resource)
		if r == nil || len(r.ClassificationList()) == 0 {
			continue
		}
		k := [2]string{ch.Resource, ch.ResourceID}
		if first[k] {
			continue
		}
		first[k] = true
		if ch.Op != events.OpCreated {
			need[ch.Resource] = append(need[ch.Resource], ch.ResourceID)
		}
	}
	if len(first) == 0 {
		return nil
	}
	state := map[outcomeKey]*bool{}
	for res, ids := range need {
		if err := loadOutcomes(tx, res, ids, "", state); err != nil {
			return err
		}
	}
	dirty := map[outcomeKey]bool{}
	deleted := map[string][]string{}
	now := c.now()
	for i := range changes {
		ch := &changes[i]
		r := sc.Resource(ch.Resource)
		if r == nil || len(r.ClassificationList()) == 0 {
			continue
		}
		var act resources.Activation
		if ch.New != nil {
			act = r.Activation(ch.New)
		} else {
			deleted[ch.Resource] = append(deleted[ch.Resource], ch.ResourceID)
		}
		for _, cl := range r.ClassificationList() {
			k := outcomeKey{ch.Resource, ch.ResourceID, cl.Name}
			from := state[k]
			var to *bool
			if ch.New != nil {
				to = boolPtr(cl.Eval(act, now))
			}
			if sameOutcome(from, to) {
				continue
			}
			state[k], dirty[k] = to, true
			if err := appendTransition(tx, ch.Context, r.Name, ch.ResourceID, cl.Name, from, to, ch.Old, ch.New); err != nil {
				return err
			}
		}
	}
	return saveOutcomes(tx, state, dirty, deleted)
}

func boolPtr(b bool) *bool { return &b }

func sameOutcome(a, b *bool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// appendTransition adds one R.classified event to tx's transaction.
func appendTransition(tx *gorm.DB, ctx context.Context, resource, id, name string, from, to *bool, old, new map[string]any) error {
	_, err := events.Append(tx, events.NewEvent{Type: resource + "." + events.OpClassified, Resource: resource, ResourceID: id,
		Context: ctx, Data: events.Data{Old: old, New: new, Classification: &events.Transition{Name: name, From: from, To: to}}})
	return err
}

// chunkRows bounds the rows of one statement: the SQLite driver binds
// parameters in time quadratic in their number.
const chunkRows = 100

// loadOutcomes reads the stored outcomes of ids (of one classification,
// or of all when name is "") into state.
func loadOutcomes(tx *gorm.DB, resource string, ids []string, name string, state map[outcomeKey]*bool) error {
	for len(ids) > 0 {
		part := ids[:min(len(ids), 4*chunkRows)]
		ids = ids[len(part):]
		q := tx.Session(&gorm.Session{NewDB: true}).Table("herald_outcomes").Select("row_id, classification, outcome").
			Where("resource_name = ? AND row_id IN ?", resource, part)
		if name != "" {
			q = q.Where("classification = ?", name)
		}
		var rows []struct {
			RowID          string
			Classification string
			Outcome        bool
		}
		if err := q.Find(&rows).Error; err != nil {
			return fmt.Errorf("classify: read outcomes: %w", err)
		}
		for _, o := range rows {
			state[outcomeKey{resource, o.RowID, o.Classification}] = boolPtr(o.Outcome)
		}
	}
	return nil
}

// saveOutcomes writes the dirty outcomes (nil: delete) and removes every
// outcome of the deleted rows, including those of classifications no
// longer declared.
func saveOutcomes(tx *gorm.DB, state map[outcomeKey]*bool, dirty map[outcomeKey]bool, deleted map[string][]string) error {
	db := tx.Session(&gorm.Session{NewDB: true, SkipHooks: true})
	var up []outcomeKey
	gone := map[[2]string][]string{}
	for k := range dirty {
		if state[k] == nil {
			gone[[2]string{k.resource, k.name}] = append(gone[[2]string{k.resource, k.name}], k.id)
		} else {
			up = append(up, k)
		}
	}
	for len(up) > 0 {
		part := up[:min(len(up), chunkRows)]
		up = up[len(part):]
		var sql strings.Builder
		sql.WriteString("INSERT INTO herald_outcomes (resource_name, row_id, classification, outcome) VALUES ")
		args := make([]any, 0, 4*len(part))
		for i, k := range part {
			if i > 0 {
				sql.WriteString(", ")
			}
			sql.WriteString("(?, ?, ?, ?)")
			args = append(args, k.resource, k.id, k.name, *state[k])
		}
		sql.WriteString(" ON CONFLICT (resource_name, row_id, classification) DO UPDATE SET outcome = excluded.outcome")
		if err := db.Exec(sql.String(), args...).Error; err != nil {
			return fmt.Errorf("classify: write outcomes: %w", err)
		}
	}
	for rn, ids := range gone {
		if err := deleteOutcomes(db, rn[0], ids, rn[1]); err != nil {
			return err
		}
	}
	for res, ids := range deleted {
		if err := deleteOutcomes(db, res, ids, ""); err != nil {
			return err
		}
	}
	return nil
}

// deleteOutcomes deletes the outcomes of ids (of one classification, or
// all when name is "").
func deleteOutcomes(db *gorm.DB, resource string, ids []string, name string) error {
	for len(ids) > 0 {
		part := ids[:min(len(ids), 4*chunkRows)]
		ids = ids[len(part):]
		sql, args := "DELETE FROM herald_outcomes WHERE resource_name = ? AND row_id IN ?", []any{resource, part}
		if name != "" {
			sql += " AND classification = ?"
			args = append(args, name)
		}
		if err := db.Exec(sql, args...).Error; err != nil {
			return fmt.Errorf("classify: delete outcomes: %w", err)
		}
	}
	return nil
}
