// Package models holds the GORM models of Herald's own tables and the sentinel
// errors shared across packages. It is a leaf: it imports nothing of Herald.
package models

import (
	"errors"
	"time"
)

// Sentinel errors. Packages wrap them with %w; the API maps them to statuses.
var (
	// ErrNotFound means the record or resource does not exist or is hidden.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a unique constraint or a restrict rule refused a write.
	ErrConflict = errors.New("conflict")
	// ErrForbidden means the caller's role may not do this.
	ErrForbidden = errors.New("forbidden")
)

// Registry is the single row that stores the applied schema, so a restart
// without the schema file keeps serving the same resources.
type Registry struct {
	ID        int    `gorm:"primaryKey;autoIncrement:false"`
	Schema    string `gorm:"not null"` // JSON of resources.Schema
	Version   int    `gorm:"not null"`
	UpdatedAt time.Time
}

// TableName pins the table name.
func (Registry) TableName() string { return "herald_registry" }

// Setting is a key/value row for instance-wide settings such as the
// generated admin key.
type Setting struct {
	Key   string `gorm:"primaryKey"`
	Value string `gorm:"not null"`
}

// TableName pins the table name.
func (Setting) TableName() string { return "herald_settings" }

// ErrUnauthorized means credentials are missing or bad where they are needed.
var ErrUnauthorized = errors.New("unauthorized")
