//go:build !race

package api_test

import (
	"os"
	"strconv"
	"testing"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
)

// createAllocBudget is the most heap allocations one create over the HTTP
// handler may make on SQLite with events on (the request, the writer and
// the capture; the relay, which runs apart, is stopped), measured as
// BenchmarkCreate does and kept in bench/create-path.txt. A change that
// adds allocations to the write path fails here; one that removes some
// lowers the budget. .ci/run runs it without -race.
const createAllocBudget = 290

// TestCreateAllocationBudget guards the create path's allocations (not its
// time: this machine is shared and noisy, while allocation counts are
// stable once the background relay is stopped and tracing is pinned).
// Skipped under -race, which allocates differently.
func TestCreateAllocationBudget(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	env := apptest.Start(t, database.SQLite, benchSchema)
	env.App.Relay().Stop() // its steps follow the clock, not the creates
	h := env.App.Handler()
	for range 50 {
		benchCreate(t, h) // warm up: the first statements
	}
	got := testing.AllocsPerRun(500, func() { benchCreate(t, h) })
	budget := float64(createAllocBudget)
	if v, _ := strconv.ParseFloat(os.Getenv("HERALD_CREATE_ALLOC_BUDGET"), 64); v > 0 {
		budget = v
	}
	t.Logf("allocations per create: %.0f (budget %.0f)", got, budget)
	if got > budget {
		t.Errorf("a create makes %.0f allocations, over the budget of %.0f: see bench/create-path.txt", got, budget)
	}
}
