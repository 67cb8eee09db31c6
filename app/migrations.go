package app

import (
	"github.com/herald-dev/herald/classify"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/webhooks"
)

// migrations is the ordered history of Herald's own tables: each package
// contributes the steps of its tables, with IDs that fit one sequence.
func migrations() []database.Migration {
	list := []database.Migration{{ID: 1, Name: "registry and settings", SQL: map[database.Kind][]string{
		database.SQLite: {
			`CREATE TABLE IF NOT EXISTS herald_registry (id integer PRIMARY KEY, schema text NOT NULL, version integer NOT NULL, updated_at datetime)`,
			`CREATE TABLE IF NOT EXISTS herald_settings (key text PRIMARY KEY, value text NOT NULL)`,
		},
		database.Postgres: {
			`CREATE TABLE IF NOT EXISTS herald_registry (id bigint PRIMARY KEY, schema text NOT NULL, version bigint NOT NULL, updated_at timestamptz)`,
			`CREATE TABLE IF NOT EXISTS herald_settings (key text PRIMARY KEY, value text NOT NULL)`,
		},
	}}}
	list = append(list, events.Migrations()...)
	list = append(list, webhooks.Migrations()...)
	return append(list, classify.Migrations()...)
}
