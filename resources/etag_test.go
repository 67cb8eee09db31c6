package resources

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/auth"
	"github.com/herald-dev/herald/database"
)

const etagSchema = `
resources:
  - name: products
    fields:
      - {name: price, type: number}
  - name: reviews
    fields:
      - {name: product_id, type: relation, relation: {resource: products, onDelete: setNull}}
      - {name: body, type: text}
`

// TestETagsUnderAFrozenClock: with a clock that never moves, every change
// of a row still moves its updated_at and so its tag (an update, a set-null
// cascade), and a schema import that changes what the record looks like
// changes the tag of rows it did not write.
func TestETagsUnderAFrozenClock(t *testing.T) {
	ctx := auth.WithPrincipal(context.Background(), auth.Admin())
	db, err := database.Open(ctx, database.Config{URL: filepath.Join(t.TempDir(), "h.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, db.Write.Exec(`CREATE TABLE herald_registry (id integer PRIMARY KEY, schema text NOT NULL, version integer NOT NULL, updated_at datetime)`).Error)
	frozen := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s := NewStore(StoreConfig{Now: func() time.Time { return frozen }}, db)
	sc, err := ParseSchema([]byte(etagSchema))
	require.NoError(t, err)
	_, err = s.Apply(ctx, sc, false, false)
	require.NoError(t, err)
	s.Start()
	t.Cleanup(s.Stop)

	rows, tags, err := s.Create(ctx, "products", map[string]any{"price": 1.0})
	require.NoError(t, err)
	id, tag := rows[0][ColID].(string), tags[0]
	seen := map[string]bool{tag: true}
	for i := range 5 {
		_, next, err := s.Update(ctx, "products", id, map[string]any{"price": float64(i + 2)}, false, []string{tag})
		require.NoError(t, err, "update %d with the current tag", i)
		require.False(t, seen[next], "update %d repeated a tag", i)
		seen[next], tag = true, next
	}
	row, got, err := s.Get(ctx, "products", id, nil)
	require.NoError(t, err)
	require.Equal(t, tag, got)
	require.Equal(t, "2026-12-01T12:00:00.000005Z", row[ColUpdatedAt], "five changes, five microseconds past the frozen clock")

	reviews, rtags, err := s.Create(ctx, "reviews", map[string]any{"product_id": id, "body": "ok"})
	require.NoError(t, err)
	rid := reviews[0][ColID].(string)
	require.NoError(t, s.Delete(ctx, "products", id, false, []string{tag}))
	_, afterCascade, err := s.Get(ctx, "reviews", rid, nil)
	require.NoError(t, err)
	require.NotEqual(t, rtags[0], afterCascade, "the set-null cascade changed the review, so its tag")
	_, _, err = s.Update(ctx, "reviews", rid, map[string]any{"body": "stale"}, false, []string{rtags[0]})
	require.ErrorContains(t, err, "precondition failed")

	// A new field with a default changes every review without writing it.
	sc, err = ParseSchema([]byte(etagSchema + "      - {name: stars, type: integer, default: 3}\n"))
	require.NoError(t, err)
	_, err = s.Apply(ctx, sc, false, false)
	require.NoError(t, err)
	_, afterImport, err := s.Get(ctx, "reviews", rid, nil)
	require.NoError(t, err)
	require.NotEqual(t, afterCascade, afterImport)
}
