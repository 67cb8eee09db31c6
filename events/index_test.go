package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
	"github.com/herald-dev/herald/events"
)

// TestIndexAndTailAnswerAlike checks the audit API and record history
// while the indexer is stopped (every filtered answer comes from the scan
// after its cursor), after it caught up (from the index), and with the
// answer split across its cursor, paged: the same events in the same
// order, none twice, none missing. A reader that searched the index only
// would miss the unindexed events; one that also scanned the indexed
// range would answer some twice.
func TestIndexAndTailAnswerAlike(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			env := apptest.Start(t, kind, itemsSchema)
			env.App.Relay().Stop()
			indexed := func() int64 {
				var n int64
				require.NoError(t, env.App.DB().Read.Raw("SELECT COUNT(*) FROM herald_event_index").Scan(&n).Error)
				return n
			}
			start := cursorOf(t, env, events.IndexerName)
			var records []string
			write := func(prefix string, n int) {
				for i := range n {
					r := admin(t, env, "POST", "/v1/items", map[string]any{"key": fmt.Sprintf("%s%d", prefix, i), "writer": i % 2, "n": i})
					require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
					id := r.JSON()["id"].(string)
					records = append(records, id)
					r = admin(t, env, "PATCH", "/v1/items/"+id, map[string]any{"n": 100 + i})
					require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
				}
			}
			// answers is every filtered answer this test compares, each
			// paged two events at a time.
			hourAgo := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
			inAnHour := time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
			var exactSince, exactUntil string // events' own createdAt: the bounds are exact
			answers := func() map[string][]int64 {
				out := map[string][]int64{}
				for _, q := range []url.Values{
					{"resource": {"items"}},
					{"type": {"updated"}},
					{"type": {"items.created"}},
					{"resourceId": {records[1]}},
					{"since": {hourAgo}},
					{"until": {inAnHour}, "resource": {"items"}},
					{"since": {exactSince}, "until": {exactUntil}},
				} {
					q.Set("limit", "2")
					key := q.Encode()
					var got []int64
					for {
						p := auditPage(t, env, q)
						got = append(got, ids(p.Events)...)
						if p.Next == nil {
							break
						}
						q.Set("after", *p.Next)
					}
					out[key] = got
				}
				for _, id := range records {
					var got []int64
					path := "/v1/items/" + id + "/history?limit=1"
					for {
						r := admin(t, env, "GET", path, nil)
						require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
						p := decodePage(t, r.Body)
						got = append(got, ids(p.Events)...)
						if p.Next == nil {
							break
						}
						path = "/v1/items/" + id + "/history?limit=1&before=" + *p.Next
					}
					out["history "+id] = got
				}
				// Every event by its eventId, found in the index or the
				// tail as the lists are.
				for _, e := range eventsAfter(t, env, start).Events {
					r := admin(t, env, "GET", "/v1/_events/"+e.EventID, nil)
					require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
					var got events.Event
					require.NoError(t, json.Unmarshal(r.Body, &got), "%s", r.Body)
					require.Equal(t, e.EventID, got.EventID)
					out["get "+e.EventID] = []int64{got.ID}
				}
				return out
			}
			write("a", 3)
			require.Zero(t, indexed(), "the indexer is stopped: nothing is indexed")
			first := eventsAfter(t, env, start).Events
			exactSince = first[1].CreatedAt.UTC().Format(time.RFC3339Nano)
			exactUntil = first[4].CreatedAt.UTC().Format(time.RFC3339Nano)
			unindexed := answers()
			window := url.Values{"since": {exactSince}, "until": {exactUntil}, "limit": {"2"}}.Encode()
			require.Equal(t, ids(first[1:4]), unindexed[window], "since is inclusive, until exclusive")
			require.Len(t, unindexed["limit=2&resource=items"], 6)
			require.Len(t, unindexed["limit=2&type=updated"], 3)
			require.Len(t, unindexed["history "+records[1]], 2)

			// The indexer catches up: the same answers, from the index.
			require.NoError(t, env.App.Relay().Start(t.Context()))
			head := lastEventID(t, env)
			waitUntil(t, 30*time.Second, func() bool { return cursorOf(t, env, events.IndexerName) == head }, "the indexer's cursor reaches the head")
			require.Greater(t, head, start)
			require.EqualValues(t, 6, indexed())
			require.Equal(t, unindexed, answers(), "the index answers as the scan did")

			// Split across the cursor: three pairs indexed, three not.
			env.App.Relay().Stop()
			write("b", 3)
			split := answers()
			require.Len(t, split["limit=2&resource=items"], 12)
			for key, got := range split {
				require.IsIncreasing(t, orderOf(key, got), "%s: in order, none twice", key)
			}
			require.NoError(t, env.App.Relay().Start(t.Context()))
			head = lastEventID(t, env)
			waitUntil(t, 30*time.Second, func() bool { return cursorOf(t, env, events.IndexerName) == head }, "the indexer's cursor reaches the head")
			require.Equal(t, split, answers(), "the index answers as the split did")

			// Index rows whose events are gone (an older instance's
			// retention deletes from the log only) are skipped before a
			// page is counted: pages stay full and paging goes on.
			all := eventsAfter(t, env, start).Events
			gone := ids(all[:4])
			require.NoError(t, env.App.DB().Write.Exec("DELETE FROM herald_events WHERE id IN ?", gone).Error)
			got := answers()["limit=2&resource=items"]
			require.Equal(t, ids(all[4:]), got, "every remaining event, none cut off by the gone ones")
		})
	}
}

// orderOf is got in increasing order when it is in its answer's order
// (history is newest first).
func orderOf(key string, got []int64) []int64 {
	if strings.HasPrefix(key, "history ") {
		out := make([]int64, len(got))
		for i, v := range got {
			out[len(got)-1-i] = v
		}
		return out
	}
	return got
}

// TestIndexMigrationIndexesTheLog upgrades a log written before the index
// existed: every event is indexed, the indexer's cursor starts after them
// (so none is indexed twice or skipped), and the log keeps only its
// primary key (migrations 5 and 6 move the eventId key to the index).
func TestIndexMigrationIndexesTheLog(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			ctx := t.Context()
			db := dbtest.Open(t, kind)
			all := events.Migrations()
			require.Equal(t, 4, all[2].ID)
			require.NoError(t, database.Migrate(ctx, db.Write, kind, all[:2]))
			now := time.Now().UTC()
			for i := int64(1); i <= 3; i++ {
				require.NoError(t, db.Write.Exec(`INSERT INTO herald_events (id, event_id, event_type, resource_name, resource_id, user_id,
  created_at, data, session_variables, trace_context) VALUES (?, ?, 'items.created', 'items', ?, 'u1', ?, '{}', '{}', '{}')`,
					i*10, uuid.NewString(), uuid.NewString(), now).Error)
			}
			require.NoError(t, database.Migrate(ctx, db.Write, kind, all))
			var keys []struct {
				ID           int64
				ResourceName string
				UserID       string
			}
			require.NoError(t, db.Read.Raw("SELECT id, resource_name, user_id FROM herald_event_index ORDER BY id").Scan(&keys).Error)
			require.Len(t, keys, 3)
			require.Equal(t, int64(30), keys[2].ID)
			require.Equal(t, "u1", keys[2].UserID)
			var pos int64
			require.NoError(t, db.Read.Raw("SELECT position FROM herald_consumers WHERE name = ?", events.IndexerName).Scan(&pos).Error)
			require.Equal(t, int64(30), pos)
			list := "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'herald_events' AND sql IS NOT NULL ORDER BY name"
			if kind == database.Postgres {
				list = "SELECT indexname FROM pg_indexes WHERE tablename = 'herald_events' AND indexname <> 'herald_events_pkey' ORDER BY indexname"
			}
			var names []string
			require.NoError(t, db.Read.Raw(list).Scan(&names).Error)
			require.Empty(t, names, "the log keeps only its primary key")
			var unkeyed int64
			require.NoError(t, db.Read.Raw("SELECT COUNT(*) FROM herald_event_index WHERE event_id IS NULL").Scan(&unkeyed).Error)
			require.EqualValues(t, 3, unkeyed, "the indexer, not the migration, keys the existing rows (TestUnkeyedIndexRows)")
		})
	}
}

// TestRetentionTakesIndexedAndUnindexedEvents: dispatched events go
// whether the indexer has reached them or not, from the log and from the
// index alike. A retention that searched the index only would keep the
// unindexed ones; one that deleted from the log only would leave index
// rows pointing nowhere.
func TestRetentionTakesIndexedAndUnindexedEvents(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			env := apptest.Start(t, kind, itemsSchema)
			create := func(prefix string) {
				for i := range 3 {
					r := admin(t, env, "POST", "/v1/items", map[string]any{"key": fmt.Sprintf("%s%d", prefix, i), "writer": 0, "n": i})
					require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
				}
			}
			count := func(table string) int64 {
				var n int64
				require.NoError(t, env.App.DB().Read.Raw("SELECT COUNT(*) FROM "+table).Scan(&n).Error)
				return n
			}
			create("indexed")
			head := lastEventID(t, env)
			waitUntil(t, 30*time.Second, func() bool { return cursorOf(t, env, events.IndexerName) == head }, "the indexer indexes the first events")
			env.App.Relay().Stop()
			create("unindexed")
			// A relay of its own dispatches them; the indexer stays stopped.
			relay := events.NewRelay(events.RelayConfig{}, env.App.DB().Read, env.App.Store(),
				events.NewConsumerFunc("dispatcher", func(context.Context, []events.Event) error { return nil }))
			require.NoError(t, relay.Start(t.Context()))
			waitUntil(t, 30*time.Second, func() bool {
				for _, e := range eventsAfter(t, env, 0).Events {
					if e.DispatchedAt == nil {
						return false
					}
				}
				return true
			}, "every event dispatched")
			relay.Stop()
			require.EqualValues(t, 3, count("herald_event_index"))

			later := func() time.Time { return time.Now().Add(2 * time.Hour) }
			n, err := events.NewRetention(events.RetentionConfig{Retention: time.Hour, BatchSize: 2, Now: later}, env.App.DB().Write).
				Sweep(t.Context())
			require.NoError(t, err)
			require.EqualValues(t, 6, n)
			require.Zero(t, count("herald_events"))
			require.Zero(t, count("herald_event_index"))
		})
	}
}

// TestUnkeyedIndexRows: index rows without an eventId (indexed before
// migration 5, or by an older instance during a rolling upgrade) do not hide
// their events from GET /v1/_events/{eventId}, and the indexer keys them
// with its next batch. Without the fallback to the log the gets answer
// 404; without the indexer's keying the rows stay unkeyed.
func TestUnkeyedIndexRows(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			env := apptest.Start(t, kind, itemsSchema)
			start := cursorOf(t, env, events.IndexerName)
			create := func(key string) {
				r := admin(t, env, "POST", "/v1/items", map[string]any{"key": key, "writer": 1, "n": 1})
				require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
			}
			caughtUp := func() {
				head := lastEventID(t, env)
				waitUntil(t, 30*time.Second, func() bool { return cursorOf(t, env, events.IndexerName) == head }, "the indexer's cursor reaches the head")
			}
			for i := range 3 {
				create(fmt.Sprint("k", i))
			}
			caughtUp()
			env.App.Relay().Stop()
			written := eventsAfter(t, env, start).Events
			require.Len(t, written, 3)
			require.NoError(t, env.App.DB().Write.Exec("UPDATE herald_event_index SET event_id = NULL WHERE id IN ?", ids(written)).Error)
			unkeyed := func() (n int64) {
				require.NoError(t, env.App.DB().Read.Raw("SELECT COUNT(*) FROM herald_event_index WHERE event_id IS NULL").Scan(&n).Error)
				return n
			}
			require.EqualValues(t, 3, unkeyed())
			getAll := func(when string) {
				for _, e := range written {
					r := admin(t, env, "GET", "/v1/_events/"+e.EventID, nil)
					require.Equal(t, http.StatusOK, r.Status, "%s: %s", when, r.Body)
					var got events.Event
					require.NoError(t, json.Unmarshal(r.Body, &got))
					require.Equal(t, e.ID, got.ID, when)
				}
				r := admin(t, env, "GET", "/v1/_events/"+uuid.NewString(), nil)
				require.Equal(t, http.StatusNotFound, r.Status, "%s: an unknown eventId: %s", when, r.Body)
			}
			getAll("unkeyed")

			require.NoError(t, env.App.Relay().Start(t.Context()))
			create("after")
			caughtUp()
			require.Zero(t, unkeyed(), "the indexer's next batch keys them")
			getAll("keyed again")
		})
	}
}
