// Package webhooks delivers the event log to registered HTTP endpoints
// (SPEC section 6): registration and validation (Service, Spec), matching
// and payload formats (event, hasura, ids), Standard Webhooks signing, the
// SSRF guard, and a durable delivery queue.
//
// The Dispatcher is the log's durable consumer (events.Consumer): it
// renders each matching event's payload once and inserts one delivery row
// per event and webhook in the relay's transaction, with the cursor's
// advance. The Queue sends the rows: it claims them with a lease and a
// token (FOR UPDATE SKIP LOCKED on PostgreSQL), sends each through the
// webhook's lane (its own concurrency, timeout and rate limit, so one slow
// endpoint holds only its lane), and records outcomes in batches, with
// retries, dead deliveries and the webhook's state (410, a streak of dead
// deliveries). Deliveries the inserting instance has room for are claimed
// at insertion and handed to its lanes after commit, which keeps the
// commit-to-delivery latency to a few milliseconds.
//
// Claims and records go through the write path (events.Writer), so on
// SQLite they share the one writer connection with requests. Times written
// to the database are UTC: SQLite compares them as text.
package webhooks
