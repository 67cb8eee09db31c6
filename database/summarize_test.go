package database

import "testing"

// TestSummarize: raw statements are named by their operation and first
// table, the events flush's WITH statement by the INSERT it makes.
func TestSummarize(t *testing.T) {
	for _, tc := range []struct{ sql, op, table string }{
		{"INSERT INTO herald_events (event_id) VALUES (?)", "INSERT", "herald_events"},
		{"WITH t AS (SELECT clock_timestamp() AS asked), l AS (SELECT asked, pg_advisory_xact_lock($1) FROM t), " +
			"i AS (INSERT INTO herald_events (id) SELECT 1 FROM l RETURNING 1) SELECT (SELECT count(*) FROM i)",
			"INSERT", "herald_events"},
		{"WITH x AS (SELECT 1) SELECT * FROM things", "SELECT", "things"},
		{`select count(*) from "public.things" where name = 'from nowhere'`, "SELECT", "public.things"},
		{"UPDATE `things` SET a = 1", "UPDATE", "things"},
		{"DELETE FROM things WHERE id = $1", "DELETE", "things"},
		{"SELECT 1", "SELECT", ""},
		{"BEGIN", "BEGIN", ""},
		{"  ", "", ""},
	} {
		op, table := summarize(tc.sql)
		if op != tc.op || table != tc.table {
			t.Errorf("summarize(%q) = %q, %q; want %q, %q", tc.sql, op, table, tc.op, tc.table)
		}
	}
}
