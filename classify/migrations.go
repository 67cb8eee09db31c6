package classify

import "github.com/herald-dev/herald/database"

// Migrations are the classification tables' steps in the ordered history
// of Herald's own tables (database.Migrate).
//
//   - herald_outcomes holds each live row's outcome per classification
//     (no row: null). The key leads with the row id, which is how writes
//     and batches look outcomes up: led by the resource name, PostgreSQL
//     with stale statistics scanned every outcome of the resource for each
//     batch (a 1M-row re-evaluation slowed down as it went).
//   - herald_classifications is what the background job last evaluated:
//     the expression, its state (backfill, ready, remove), the backfill's
//     cursor, and when the time-based evaluation last ran (unix µs).
//   - herald_leases elects the one instance that runs the job.
func Migrations() []database.Migration {
	return []database.Migration{
		{ID: 20, Name: "classification outcomes", SQL: map[database.Kind][]string{
			database.SQLite: {
				`CREATE TABLE herald_outcomes (resource_name text NOT NULL, row_id text NOT NULL, classification text NOT NULL,
  outcome boolean NOT NULL, PRIMARY KEY (row_id, resource_name, classification)) WITHOUT ROWID`,
				`CREATE TABLE herald_classifications (resource_name text NOT NULL, name text NOT NULL, expression text NOT NULL,
  state text NOT NULL, cursor text NOT NULL, evaluated_at bigint NOT NULL, PRIMARY KEY (resource_name, name))`,
				`CREATE TABLE herald_leases (name text PRIMARY KEY, owner text NOT NULL, expires_at bigint NOT NULL)`,
			},
			database.Postgres: {
				`CREATE TABLE herald_outcomes (resource_name text NOT NULL, row_id text NOT NULL, classification text NOT NULL,
  outcome boolean NOT NULL, PRIMARY KEY (row_id, resource_name, classification))`,
				`CREATE TABLE herald_classifications (resource_name text NOT NULL, name text NOT NULL, expression text NOT NULL,
  state text NOT NULL, cursor text NOT NULL, evaluated_at bigint NOT NULL, PRIMARY KEY (resource_name, name))`,
				`CREATE TABLE herald_leases (name text PRIMARY KEY, owner text NOT NULL, expires_at bigint NOT NULL)`,
			},
		}},
	}
}
