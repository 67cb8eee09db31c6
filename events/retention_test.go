package events_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database/dbtest"
	"github.com/herald-dev/herald/events"
)

// TestRetention removes dispatched events older than the retention, in
// batches, and keeps undispatched and recent ones.
func TestRetention(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, itemsSchema)
			for i := range 5 {
				r := admin(t, env, "POST", "/v1/items", map[string]any{"key": "old-" + string(rune('a'+i)), "writer": 0, "n": i})
				require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
			}
			require.Eventually(t, func() bool {
				for _, e := range eventsAfter(t, env, 0).Events {
					if e.DispatchedAt == nil {
						return false
					}
				}
				return true
			}, 10*time.Second, 20*time.Millisecond, "the relay dispatches the old events")

			// New events the relay does not get to: not dispatched yet.
			env.App.Relay().Stop()
			for i := range 3 {
				r := admin(t, env, "POST", "/v1/items", map[string]any{"key": "new-" + string(rune('a'+i)), "writer": 0, "n": i})
				require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
			}

			// Everything is older than a retention of one hour, two hours on.
			later := func() time.Time { return time.Now().Add(2 * time.Hour) }
			ret := events.NewRetention(events.RetentionConfig{Retention: time.Hour, BatchSize: 2, Pause: time.Millisecond, Now: later},
				env.App.DB().Write)
			n, err := ret.Sweep(context.Background())
			require.NoError(t, err)
			require.EqualValues(t, 5, n, "the dispatched events go, in batches of 2")
			left := eventsAfter(t, env, 0).Events
			require.Len(t, left, 3, "undispatched events stay, however old")
			for _, e := range left {
				require.Nil(t, e.DispatchedAt)
			}

			// A retention longer than their age keeps dispatched events too.
			require.NoError(t, env.App.Relay().Start(context.Background()))
			require.Eventually(t, func() bool { return eventsAfter(t, env, 0).Events[2].DispatchedAt != nil },
				10*time.Second, 20*time.Millisecond)
			keep := events.NewRetention(events.RetentionConfig{Retention: 24 * time.Hour, Now: later}, env.App.DB().Write)
			n, err = keep.Sweep(context.Background())
			require.NoError(t, err)
			require.Zero(t, n)
			require.Len(t, eventsAfter(t, env, 0).Events, 3)
		})
	}
}
