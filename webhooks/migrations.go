package webhooks

import "github.com/herald-dev/herald/database"

// Migrations are the webhook tables' steps in the ordered history of
// Herald's own tables (database.Migrate).
func Migrations() []database.Migration {
	return []database.Migration{
		{ID: 10, Name: "webhooks and deliveries", SQL: map[database.Kind][]string{
			database.SQLite: append([]string{
				`CREATE TABLE herald_webhooks (id text PRIMARY KEY, name text NOT NULL, url text NOT NULL, resource text NOT NULL,
  events text NOT NULL, fields text NOT NULL, related text NOT NULL, classification text NOT NULL, format text NOT NULL,
  auth_type text NOT NULL, auth_config text NOT NULL, secret text NOT NULL, previous_secret text NOT NULL,
  previous_secret_until datetime, headers text NOT NULL, max_attempts integer NOT NULL, initial_interval_ms integer NOT NULL,
  max_interval_ms integer NOT NULL, timeout_ms integer NOT NULL, ordered boolean NOT NULL, rate_limit real NOT NULL DEFAULT 0,
  paused boolean NOT NULL, resumed_at datetime, enabled boolean NOT NULL, disabled_reason text NOT NULL,
  dead_streak integer NOT NULL, created_at datetime NOT NULL, updated_at datetime NOT NULL)`,
				`CREATE TABLE herald_deliveries (id integer PRIMARY KEY AUTOINCREMENT,
  webhook_id text NOT NULL REFERENCES herald_webhooks (id) ON DELETE CASCADE, event_id text NOT NULL,
  event_type text NOT NULL, resource_name text NOT NULL, resource_id text NOT NULL, event_created_at datetime NOT NULL,
  payload text NOT NULL, traceparent text NOT NULL, status text NOT NULL, attempts integer NOT NULL,
  next_attempt_at datetime NOT NULL, claimed_by text NOT NULL, claim_expires_at datetime, attempt_log text NOT NULL,
  created_at datetime NOT NULL, updated_at datetime NOT NULL)`,
				`CREATE TABLE herald_invocations (event_id text PRIMARY KEY,
  webhook_id text NOT NULL REFERENCES herald_webhooks (id) ON DELETE CASCADE)`,
			}, deliveryIndexes...),
			database.Postgres: append([]string{
				`CREATE TABLE herald_webhooks (id text PRIMARY KEY, name text NOT NULL, url text NOT NULL, resource text NOT NULL,
  events text NOT NULL, fields text NOT NULL, related text NOT NULL, classification text NOT NULL, format text NOT NULL,
  auth_type text NOT NULL, auth_config text NOT NULL, secret text NOT NULL, previous_secret text NOT NULL,
  previous_secret_until timestamptz, headers text NOT NULL, max_attempts integer NOT NULL, initial_interval_ms bigint NOT NULL,
  max_interval_ms bigint NOT NULL, timeout_ms bigint NOT NULL, ordered boolean NOT NULL, rate_limit double precision NOT NULL DEFAULT 0,
  paused boolean NOT NULL, resumed_at timestamptz, enabled boolean NOT NULL, disabled_reason text NOT NULL,
  dead_streak integer NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)`,
				`CREATE TABLE herald_deliveries (id bigserial PRIMARY KEY,
  webhook_id text NOT NULL REFERENCES herald_webhooks (id) ON DELETE CASCADE, event_id text NOT NULL,
  event_type text NOT NULL, resource_name text NOT NULL, resource_id text NOT NULL, event_created_at timestamptz NOT NULL,
  payload text NOT NULL, traceparent text NOT NULL, status text NOT NULL, attempts integer NOT NULL,
  next_attempt_at timestamptz NOT NULL, claimed_by text NOT NULL, claim_expires_at timestamptz, attempt_log text NOT NULL,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)`,
				`CREATE TABLE herald_invocations (event_id text PRIMARY KEY,
  webhook_id text NOT NULL REFERENCES herald_webhooks (id) ON DELETE CASCADE)`,
			}, deliveryIndexes...),
		}},
	}
}

var deliveryIndexes = []string{
	`CREATE UNIQUE INDEX herald_webhooks_name_key ON herald_webhooks (name)`,
	// A repeated dispatch of an event (a retried relay step, a replay) is
	// harmless: one delivery per event and webhook.
	`CREATE UNIQUE INDEX herald_deliveries_event_key ON herald_deliveries (event_id, webhook_id)`,
	// The delivery log, newest first.
	`CREATE INDEX herald_deliveries_webhook_idx ON herald_deliveries (webhook_id, id)`,
	// Claims: the oldest unfinished deliveries of a webhook, and of one row
	// of it for ordered webhooks.
	`CREATE INDEX herald_deliveries_due_idx ON herald_deliveries (webhook_id, id) WHERE status IN ('pending', 'retrying')`,
	`CREATE INDEX herald_deliveries_row_idx ON herald_deliveries (webhook_id, resource_id, id) WHERE status IN ('pending', 'retrying')`,
	// The retention hold.
	`CREATE INDEX herald_deliveries_held_idx ON herald_deliveries (event_created_at) WHERE status IN ('pending', 'retrying')`,
}
