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
	// ErrPreconditionFailed means a write's If-Match named a version of
	// the record that is no longer current.
	ErrPreconditionFailed = errors.New("precondition failed")
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

// Event is one row of the event log (the transactional outbox). ID is the
// log position: on SQLite the rowid (one writer, so commit order; never
// reused, AUTOINCREMENT); on PostgreSQL taken from a sequence under an
// advisory lock held until commit, so also commit order. Its secondary
// indexes are in herald_event_index, filled after commit (events.Indexer).
type Event struct {
	ID           int64  `gorm:"primaryKey;autoIncrement"`
	EventID      string `gorm:"size:36;not null"` // indexed in herald_event_index
	EventType    string `gorm:"not null"`
	ResourceName string `gorm:"not null"`
	ResourceID   string `gorm:"not null"`
	UserID       string
	CreatedAt    time.Time `gorm:"not null"`
	// DispatchedAt is not stored per event: it is read from the dispatch
	// watermark (see Dispatch).
	DispatchedAt     *time.Time `gorm:"->;-:migration"`
	Data             string     `gorm:"not null"` // JSON {"old","new","changes"}
	SessionVariables string     `gorm:"not null"` // JSON object
	TraceContext     string     `gorm:"not null"` // JSON object
}

// TableName pins the table name.
func (Event) TableName() string { return "herald_events" }

// Dispatch is one step of the relay's watermark: every event with an id up
// to ID was handed to the consumers at DispatchedAt. Positions are in
// commit order and the relay dispatches in position order, so one row per
// relay batch replaces an update of every event row.
type Dispatch struct {
	ID           int64     `gorm:"primaryKey;autoIncrement:false"`
	DispatchedAt time.Time `gorm:"not null"`
}

// TableName pins the table name.
func (Dispatch) TableName() string { return "herald_dispatches" }

// Cursor is a durable consumer's position in the event log: it has taken
// every event up to Position. The relay advances it in the same
// transaction as what the consumer stores for those events.
type Cursor struct {
	Name      string    `gorm:"primaryKey"`
	Position  int64     `gorm:"not null"`
	UpdatedAt time.Time `gorm:"not null"`
}

// TableName pins the table name.
func (Cursor) TableName() string { return "herald_consumers" }

// Webhook is a registered webhook. List-valued settings are stored as
// JSON text so that both engines keep them in one column.
type Webhook struct {
	ID                  string `gorm:"primaryKey"`
	Name                string `gorm:"not null"`
	URL                 string `gorm:"not null"`
	Resource            string `gorm:"not null"`
	Events              string `gorm:"not null"` // JSON array of created/updated/deleted
	Fields              string `gorm:"not null"` // JSON array
	Related             string `gorm:"not null"` // JSON array
	Classification      string `gorm:"not null"` // JSON object or ""
	Format              string `gorm:"not null"`
	AuthType            string `gorm:"not null"`
	AuthConfig          string `gorm:"not null"` // JSON: {"token"} or {"username","password"}
	Secret              string `gorm:"not null"`
	PreviousSecret      string `gorm:"not null"`
	PreviousSecretUntil *time.Time
	Headers             string `gorm:"not null"` // JSON object
	MaxAttempts         int    `gorm:"not null"`
	InitialIntervalMS   int64  `gorm:"column:initial_interval_ms;not null"`
	MaxIntervalMS       int64  `gorm:"column:max_interval_ms;not null"`
	TimeoutMS           int64  `gorm:"column:timeout_ms;not null"`
	Ordered             bool   `gorm:"not null"`
	RateLimit           float64
	Paused              bool       `gorm:"not null"`
	ResumedAt           *time.Time // set when unpaused, until the backlog is sent
	Enabled             bool       `gorm:"not null"`
	DisabledReason      string     `gorm:"not null"`
	DeadStreak          int        `gorm:"not null"`
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

// TableName pins the table name.
func (Webhook) TableName() string { return "herald_webhooks" }

// Delivery is one message to one webhook: an event (or, for the ids
// format, the rows one transaction touched) with its attempts. Payload is
// rendered once, so every attempt sends the same bytes.
type Delivery struct {
	ID             int64  `gorm:"primaryKey;autoIncrement"`
	WebhookID      string `gorm:"not null"`
	EventID        string `gorm:"not null"`
	EventType      string `gorm:"not null"`
	ResourceName   string `gorm:"not null"`
	ResourceID     string `gorm:"not null"`
	EventCreatedAt time.Time
	Payload        string `gorm:"not null"`
	Traceparent    string `gorm:"not null"`
	Status         string `gorm:"not null"`
	Attempts       int    `gorm:"not null"`
	NextAttemptAt  time.Time
	ClaimedBy      string `gorm:"not null"`
	ClaimExpiresAt *time.Time
	AttemptLog     string `gorm:"not null"` // JSON array of attempts
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// TableName pins the table name.
func (Delivery) TableName() string { return "herald_deliveries" }
