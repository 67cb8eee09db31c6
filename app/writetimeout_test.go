package app_test

import (
	"context"
	"database/sql"
	"net/http"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
)

// TestWriteTimeout: a write that waits for a row another client holds
// locked gets 503 after HERALD_WRITE_TIMEOUT instead of hanging (and
// holding up its batch and shutdown); writes to other rows go on.
func TestWriteTimeout(t *testing.T) {
	env := apptest.Start(t, database.Postgres, schemaV1, func(c *app.Config) { c.WriteTimeout = 500 * time.Millisecond })
	ada := create(t, env, "authors", `{"name":"Ada"}`)

	db, err := sql.Open("pgx", env.Config.DatabaseURL)
	require.NoError(t, err)
	defer db.Close()
	holder, err := db.BeginTx(context.Background(), nil)
	require.NoError(t, err)
	defer holder.Rollback()
	_, err = holder.Exec(`SELECT 1 FROM authors WHERE id = $1 FOR UPDATE`, ada)
	require.NoError(t, err)

	start := time.Now()
	done := make(chan *apptest.Response, 1)
	go func() { done <- env.Admin("PATCH", "/v1/authors/"+ada, `{"name":"Ada L."}`) }()
	other := env.Admin("POST", "/v1/authors", `{"name":"Bo"}`)
	require.Equal(t, http.StatusCreated, other.Status, "a write to another row is not held up for good: %s", other.Body)
	resp := <-done
	require.Equal(t, http.StatusServiceUnavailable, resp.Status, "%s", resp.Body)
	require.Less(t, time.Since(start), 5*time.Second)
	require.NoError(t, holder.Rollback())

	require.Equal(t, http.StatusOK, env.Admin("PATCH", "/v1/authors/"+ada, `{"name":"Ada L."}`).Status, "free again")
	stopped := time.Now()
	env.Stop()
	require.Less(t, time.Since(stopped), 5*time.Second)
}
