package events

import (
	"fmt"

	"github.com/herald-dev/herald/database"
)

// Migrations are the event log's steps in the ordered history of Herald's
// own tables (database.Migrate). The first matches what AutoMigrate made
// before the history existed, so existing databases adopt it unchanged.
func Migrations() []database.Migration {
	return []database.Migration{
		{ID: 2, Name: "event log", SQL: map[database.Kind][]string{
			database.SQLite: append([]string{
				`CREATE TABLE IF NOT EXISTS herald_events (id integer PRIMARY KEY AUTOINCREMENT, event_id text NOT NULL,
  event_type text NOT NULL, resource_name text NOT NULL, resource_id text NOT NULL, user_id text,
  created_at datetime NOT NULL, data text NOT NULL, session_variables text NOT NULL, trace_context text NOT NULL)`,
				`CREATE TABLE IF NOT EXISTS herald_dispatches (id integer PRIMARY KEY, dispatched_at datetime NOT NULL)`,
			}, eventIndexes...),
			database.Postgres: append([]string{
				`CREATE TABLE IF NOT EXISTS herald_events (id bigint PRIMARY KEY, event_id varchar(36) NOT NULL,
  event_type text NOT NULL, resource_name text NOT NULL, resource_id text NOT NULL, user_id text,
  created_at timestamptz NOT NULL, data text NOT NULL, session_variables text NOT NULL, trace_context text NOT NULL)`,
				`CREATE TABLE IF NOT EXISTS herald_dispatches (id bigint PRIMARY KEY, dispatched_at timestamptz NOT NULL)`,
				// Positions: see insertEvents. The sequence starts above
				// every position already used, under the position lock so
				// that no writer takes a value meanwhile.
				`CREATE SEQUENCE IF NOT EXISTS herald_event_pos`,
				fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, positionLockKey),
				`SELECT setval('herald_event_pos', GREATEST(
  (SELECT COALESCE(MAX(id), 0) FROM herald_events), (SELECT COALESCE(MAX(id), 0) FROM herald_dispatches),
  (SELECT last_value FROM herald_event_pos), 1))`,
			}, eventIndexes...),
		}},
		{ID: 3, Name: "consumer cursors", SQL: map[database.Kind][]string{
			database.SQLite:   {`CREATE TABLE herald_consumers (name text PRIMARY KEY, position integer NOT NULL, updated_at datetime NOT NULL)`},
			database.Postgres: {`CREATE TABLE herald_consumers (name text PRIMARY KEY, position bigint NOT NULL, updated_at timestamptz NOT NULL)`},
		}},
		// The log's secondary indexes move to herald_event_index, filled
		// after commit by the indexer (see Indexer). Existing events are
		// indexed here and the indexer's cursor starts after the last one
		// copied: positions follow commit order, so an event committing
		// meanwhile is after it, and readers find it by the tail scan.
		// Writers are not held up by the copy.
		{ID: 4, Name: "event index off the write path", SQL: map[database.Kind][]string{
			database.SQLite: append([]string{
				`CREATE TABLE herald_event_index (id integer PRIMARY KEY, event_type text NOT NULL, resource_name text NOT NULL,
  resource_id text NOT NULL, user_id text, created_at datetime NOT NULL)`,
				`INSERT INTO herald_event_index SELECT id, event_type, resource_name, resource_id, user_id, created_at FROM herald_events`,
			}, indexMove...),
			database.Postgres: append([]string{
				`CREATE TABLE herald_event_index (id bigint PRIMARY KEY, event_type text NOT NULL, resource_name text NOT NULL,
  resource_id text NOT NULL, user_id text, created_at timestamptz NOT NULL)`,
				`INSERT INTO herald_event_index SELECT id, event_type, resource_name, resource_id, user_id, created_at FROM herald_events`,
			}, indexMove...),
		}},
		// The eventId key moves to the index too: the log keeps only its
		// primary key, so a write touches one B-tree per event. Events are
		// found by eventId as by every other key (see keyed): in the index
		// up to the indexer's cursor, by a primary key scan after it.
		// eventIds are UUIDv7 (a millisecond time and 74 random bits), so
		// the unique constraint guarded nothing a write could meet.
		//
		// The column is added in a step of its own (an instant change, but
		// one that locks the table until its transaction ends) and is not
		// filled here: the indexer fills the rows without one, a batch at a
		// time (Indexer.consumeRange), including those an older instance
		// indexes during a rolling upgrade. Until then Audit.Get falls back
		// to the log for an eventId the index does not know.
		{ID: 5, Name: "eventId column in the event index", SQL: map[database.Kind][]string{
			database.SQLite:   {`ALTER TABLE herald_event_index ADD COLUMN event_id text`},
			database.Postgres: {`ALTER TABLE herald_event_index ADD COLUMN event_id varchar(36)`},
		}},
		{ID: 6, Name: "eventId key off the write path", SQL: map[database.Kind][]string{
			database.SQLite:   eventIDMove,
			database.Postgres: eventIDMove,
		}},
	}
}

var eventIDMove = []string{
	`CREATE INDEX herald_event_index_event_idx ON herald_event_index (event_id)`,
	// The rows the indexer still has to key (partial: empty once done).
	`CREATE INDEX herald_event_index_unkeyed_idx ON herald_event_index (id) WHERE event_id IS NULL`,
	`DROP INDEX IF EXISTS herald_events_event_id_key`,
}

// indexMove builds herald_event_index's indexes, drops the log's and
// starts the indexer's cursor after the events indexed.
var indexMove = []string{
	`CREATE INDEX herald_event_index_created_idx ON herald_event_index (created_at)`,
	`CREATE INDEX herald_event_index_user_idx ON herald_event_index (user_id, id)`,
	`CREATE INDEX herald_event_index_type_idx ON herald_event_index (event_type, id)`,
	`CREATE INDEX herald_event_index_resource_idx ON herald_event_index (resource_name, resource_id, id)`,
	`DROP INDEX IF EXISTS herald_events_created_idx`,
	`DROP INDEX IF EXISTS herald_events_user_idx`,
	`DROP INDEX IF EXISTS herald_events_type_idx`,
	`DROP INDEX IF EXISTS herald_events_resource_idx`,
	`INSERT INTO herald_consumers (name, position, updated_at)
  SELECT '` + IndexerName + `', COALESCE(MAX(id), 0), CURRENT_TIMESTAMP FROM herald_event_index WHERE true
  ON CONFLICT (name) DO UPDATE SET position = excluded.position`,
}

var eventIndexes = []string{
	`CREATE UNIQUE INDEX IF NOT EXISTS herald_events_event_id_key ON herald_events (event_id)`,
	`CREATE INDEX IF NOT EXISTS herald_events_created_idx ON herald_events (created_at)`,
	`CREATE INDEX IF NOT EXISTS herald_events_user_idx ON herald_events (user_id, id)`,
	`CREATE INDEX IF NOT EXISTS herald_events_type_idx ON herald_events (event_type, id)`,
	`CREATE INDEX IF NOT EXISTS herald_events_resource_idx ON herald_events (resource_name, resource_id, id)`,
}
