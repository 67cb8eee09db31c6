package events

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// IndexerName is the cursor of the consumer that indexes the log.
const IndexerName = "herald.index"

// Indexer is the consumer that keeps herald_event_index: each event's
// keys (eventId, type, resource, record, user, time) under the indexes the
// audit API, record history and retention search by. The event log itself
// has only its primary key, so a write inserts one event row and touches
// one B-tree instead of six; the indexes are filled after
// commit, a batch at a time, in the relay's transaction (measured on
// SQLite: a create's event went from 495-559 us to 366-374 us without
// them). Readers search the index up to the indexer's cursor and scan the
// few events after it by primary key (see keyed), so an event is found
// the moment it commits, as before.
type Indexer struct{}

var _ Consumer = (*Indexer)(nil)

// NewIndexer returns the indexer.
func NewIndexer() *Indexer { return &Indexer{} }

// Name implements Consumer.
func (*Indexer) Name() string { return IndexerName }

// Consume implements Consumer; the relay calls consumeKeys instead, with
// the events' keys only (no bodies to read or decode).
func (*Indexer) Consume(context.Context, []Event) (func(*gorm.DB) error, error) {
	return nil, fmt.Errorf("events: the indexer takes keys only")
}

// paced is a consumer that takes its batches at most every interval (the
// relay's MinInterval for the others).
type paced interface{ interval() time.Duration }

// indexInterval paces the indexer: large batches, each one transaction
// for hundreds of events, rather than one per few events. Readers scan the
// events after its cursor (at most this long's worth) by primary key.
const indexInterval = 100 * time.Millisecond

func (*Indexer) interval() time.Duration { return indexInterval }

// keyConsumer is a consumer that needs only the range of positions a
// batch covers (the indexer).
type keyConsumer interface {
	consumeRange(after, through int64) func(tx *gorm.DB) error
}

// readPositions reads the positions of up to limit events after cursor, in
// log order.
func readPositions(db *gorm.DB, cursor int64, limit int) ([]int64, error) {
	var ids []int64
	err := db.Raw(`SELECT id FROM herald_events WHERE id > ? ORDER BY id LIMIT ?`, cursor, limit).Scan(&ids).Error
	return ids, err
}

// consumeRange indexes the events in (after, through], copied from the log
// inside the write transaction: an event retention removed meanwhile is
// not indexed, and the index holds the log's values byte for byte (the
// migration copies them the same way). Idempotent (the batch may be
// applied again): keyed on the id.
func (*Indexer) consumeRange(after, through int64) func(tx *gorm.DB) error {
	return func(tx *gorm.DB) error {
		err := tx.Exec(`INSERT INTO herald_event_index (id, event_id, event_type, resource_name, resource_id, user_id, created_at)
  SELECT id, event_id, event_type, resource_name, resource_id, user_id, created_at FROM herald_events WHERE id > ? AND id <= ?
  ON CONFLICT (id) DO NOTHING`, after, through).Error
		if err != nil {
			return fmt.Errorf("events: index: %w", err)
		}
		// Index rows without an eventId (indexed before migration 5, or by
		// an older instance during a rolling upgrade) get theirs, a batch at
		// a time; an orphan (its event gone) gets "" and leaves the set.
		// With none left this is one probe of an empty partial index.
		err = tx.Exec(`UPDATE herald_event_index SET event_id =
  COALESCE((SELECT e.event_id FROM herald_events e WHERE e.id = herald_event_index.id), '')
  WHERE id IN (SELECT id FROM herald_event_index WHERE event_id IS NULL ORDER BY id LIMIT ?)`, keyBatch).Error
		if err != nil {
			return fmt.Errorf("events: index: key: %w", err)
		}
		return nil
	}
}

// keyBatch is how many unkeyed index rows each indexer batch keys.
const keyBatch = 5000

// keyFilter is a condition on the key columns, the same on the log and on
// its index.
type keyFilter struct {
	where []string
	args  []any
}

func (f *keyFilter) add(cond string, args ...any) {
	f.where = append(f.where, cond)
	f.args = append(f.args, args...)
}

func (f *keyFilter) empty() bool { return len(f.where) == 0 }

func (f *keyFilter) sql() string {
	if f.empty() {
		return "1 = 1"
	}
	return strings.Join(f.where, " AND ")
}

// keyed restricts tx (a query on herald_events) to the events matching f
// among those in the id window (after, before; 0 for none), taking at most
// limit of them in id order (desc for newest first): those the indexer
// has indexed through its index, and those after its cursor by a primary
// key scan. One statement, so one snapshot: the index and the cursor
// commit together, so the two sets neither overlap nor leave a gap.
func keyed(tx *gorm.DB, f *keyFilter, after, before int64, limit int, desc bool) *gorm.DB {
	dir := "id"
	if desc {
		dir = "id DESC"
	}
	where := f.sql()
	var args []any
	window := ""
	var wargs []any
	if after > 0 {
		window += " AND id > ?"
		wargs = append(wargs, after)
	}
	if before > 0 {
		window += " AND id < ?"
		wargs = append(wargs, before)
	}
	args = append(args, f.args...)
	args = append(args, wargs...)
	args = append(args, f.args...)
	args = append(args, wargs...)
	args = append(args, IndexerName)
	// An index row whose event is gone (an old instance's retention in a
	// rolling upgrade, a race with retention on PostgreSQL) is skipped
	// before the limit counts it, or it would cut the page short.
	sub := fmt.Sprintf(`SELECT id FROM (SELECT id FROM herald_event_index WHERE %[1]s%[2]s
  AND EXISTS (SELECT 1 FROM herald_events e WHERE e.id = herald_event_index.id) ORDER BY %[3]s LIMIT %[4]d) ix
UNION ALL
SELECT id FROM (SELECT id FROM herald_events WHERE %[1]s%[2]s
  AND id > (SELECT COALESCE(MAX(position), 0) FROM herald_consumers WHERE name = ?) ORDER BY %[3]s LIMIT %[4]d) tail`,
		where, window, dir, limit)
	return tx.Where("herald_events.id IN (?)", gorm.Expr(sub, args...)).Order(dir)
}

// retentionCandidates are up to limit events created before cutoff and at
// or below the dispatch watermark, oldest first: from the index, and from
// the few events after the indexer's cursor (by primary key), as keyed.
func retentionCandidates(tx *gorm.DB, cutoff time.Time, limit int) ([]int64, error) {
	var ids []int64
	const mark = `(SELECT COALESCE(MAX(id), 0) FROM herald_dispatches)`
	err := tx.Raw(`SELECT id FROM (SELECT id FROM herald_event_index WHERE created_at < ? AND id <= `+mark+` ORDER BY id LIMIT ?) ix
UNION ALL
SELECT id FROM (SELECT id FROM herald_events WHERE created_at < ? AND id <= `+mark+`
  AND id > (SELECT COALESCE(MAX(position), 0) FROM herald_consumers WHERE name = ?) ORDER BY id LIMIT ?) tail
ORDER BY id LIMIT ?`, cutoff, limit, cutoff, IndexerName, limit, limit).Find(&ids).Error
	return ids, err
}
