package events

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/herald-dev/herald/models"
)

// IndexerName is the cursor of the consumer that indexes the log.
const IndexerName = "herald.index"

// Indexer is the consumer that keeps herald_event_index: each event's
// keys (type, resource, record, user, time) under the indexes the audit
// API, record history and retention search by. The event log itself has
// only its primary key and the eventId key, so a write inserts one event
// row and touches two B-trees instead of six; the indexes are filled after
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

// keyConsumer is a consumer that needs only the events' key columns.
type keyConsumer interface {
	consumeKeys(keys []models.Event) func(tx *gorm.DB) error
}

// readKeys reads the key columns of up to limit events after cursor, in
// log order (scanned by hand: this runs for every event).
func readKeys(db *gorm.DB, cursor int64, limit int) ([]models.Event, error) {
	rows, err := db.Raw(`SELECT id, event_type, resource_name, resource_id, user_id, created_at FROM herald_events
  WHERE id > ? ORDER BY id LIMIT ?`, cursor, limit).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []models.Event
	for rows.Next() {
		var k models.Event
		var user *string
		if err := rows.Scan(&k.ID, &k.EventType, &k.ResourceName, &k.ResourceID, &user, &k.CreatedAt); err != nil {
			return nil, err
		}
		if user != nil {
			k.UserID = *user
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

func (*Indexer) consumeKeys(keys []models.Event) func(tx *gorm.DB) error {
	return func(tx *gorm.DB) error {
		// Idempotent (the batch may be applied again): keyed on the id.
		const cols = 6
		for start := 0; start < len(keys); start += 150 { // under SQLite's 999 parameters
			chunk := keys[start:min(start+150, len(keys))]
			var sql strings.Builder
			sql.WriteString(`INSERT INTO herald_event_index (id, event_type, resource_name, resource_id, user_id, created_at) VALUES `)
			args := make([]any, 0, cols*len(chunk))
			for i, k := range chunk {
				if i > 0 {
					sql.WriteString(", ")
				}
				sql.WriteString("(?, ?, ?, ?, ?, ?)")
				var user any
				if k.UserID != "" {
					user = k.UserID
				}
				args = append(args, k.ID, k.EventType, k.ResourceName, k.ResourceID, user, k.CreatedAt.UTC())
			}
			sql.WriteString(" ON CONFLICT (id) DO NOTHING")
			if err := tx.Exec(sql.String(), args...).Error; err != nil {
				return fmt.Errorf("events: index: %w", err)
			}
		}
		return nil
	}
}

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
	sub := fmt.Sprintf(`SELECT id FROM (SELECT id FROM herald_event_index WHERE %[1]s%[2]s ORDER BY %[3]s LIMIT %[4]d) ix
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
