package database

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Migration is one step in the history of Herald's own tables (herald_*).
// Steps are applied in ID order, each in its own transaction together with
// the row that records it in herald_migrations, so a step is applied
// exactly once and a failed one leaves nothing behind. A step, once
// released, never changes: a later change is a new step.
type Migration struct {
	// ID orders the steps; IDs are unique and only ever grow.
	ID int
	// Name says what the step does (recorded with it).
	Name string
	// SQL holds the statements per engine, run in order.
	SQL map[Kind][]string
}

// Migrate applies the steps of list that db has not recorded yet. On
// PostgreSQL the caller serialises instances (an advisory lock) around it.
func Migrate(ctx context.Context, db *gorm.DB, kind Kind, list []Migration) error {
	for i := 1; i < len(list); i++ {
		if list[i].ID <= list[i-1].ID {
			return fmt.Errorf("database: migration %d (%s) is out of order", list[i].ID, list[i].Name)
		}
	}
	create := `CREATE TABLE IF NOT EXISTS herald_migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)`
	if kind == SQLite {
		create = `CREATE TABLE IF NOT EXISTS herald_migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at datetime NOT NULL)`
	}
	if err := db.WithContext(ctx).Exec(create).Error; err != nil {
		return fmt.Errorf("database: migrations table: %w", err)
	}
	var done []int
	if err := db.WithContext(ctx).Raw("SELECT id FROM herald_migrations").Scan(&done).Error; err != nil {
		return fmt.Errorf("database: read migrations: %w", err)
	}
	applied := make(map[int]bool, len(done))
	for _, id := range done {
		applied[id] = true
	}
	for _, m := range list {
		if applied[m.ID] {
			continue
		}
		err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			for _, stmt := range m.SQL[kind] {
				if err := tx.Exec(stmt).Error; err != nil {
					return fmt.Errorf("%q: %w", firstLine(stmt), err)
				}
			}
			return tx.Exec("INSERT INTO herald_migrations (id, name, applied_at) VALUES (?, ?, ?)",
				m.ID, m.Name, time.Now().UTC()).Error
		})
		if err != nil {
			return fmt.Errorf("database: migration %d (%s): %w", m.ID, m.Name, err)
		}
	}
	return nil
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
