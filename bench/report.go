package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

// env describes the machine and settings a run measured on.
type env struct {
	Time       string `json:"time"`
	GoVersion  string `json:"go"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	NumCPU     int    `json:"cpus"`
	CPUModel   string `json:"cpu_model,omitempty"`
	Revision   string `json:"revision,omitempty"`
	Duration   string `json:"duration"`
	Warmup     string `json:"warmup"`
	Seed       int    `json:"seed"`
	SQLiteSync string `json:"sqlite_sync"`
}

func describeEnv(o options) env {
	e := env{
		Time:       time.Now().UTC().Format(time.RFC3339),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
		CPUModel:   cpuModel(),
		Duration:   o.duration.String(),
		Warmup:     o.warmup.String(),
		Seed:       o.seed,
		SQLiteSync: o.sqliteSync,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				e.Revision = s.Value[:12]
			}
		}
	}
	return e
}

// cpuModel reads the CPU's name on Linux; elsewhere it is left out.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (e env) header() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Herald HTTP benchmark, %s\n", e.Time)
	fmt.Fprintf(&b, "%s %s/%s  GOMAXPROCS=%d  CPUs=%d", e.GoVersion, e.OS, e.Arch, e.GOMAXPROCS, e.NumCPU)
	if e.CPUModel != "" {
		fmt.Fprintf(&b, "  (%s)", e.CPUModel)
	}
	if e.Revision != "" {
		fmt.Fprintf(&b, "  herald %s", e.Revision)
	}
	fmt.Fprintf(&b, "\nduration %s per row after %s warm-up, %d seeded items, SQLite synchronous=%s\n\n",
		e.Duration, e.Warmup, e.Seed, e.SQLiteSync)
	return b.String()
}

// rowKey identifies the measurements that variants are compared on.
type rowKey struct {
	db      string
	op      op
	clients int
}

// ratios divides each result's req/s by that of the first variant's result
// with the same database, op and clients; ok is false where there is none.
func ratios(o options, results []result) (ratio []float64, ok []bool) {
	base := map[rowKey]float64{}
	for _, r := range results {
		if r.variant == o.variants[0].name {
			base[rowKey{string(r.db), r.op, r.clients}] = r.m.reqPerSec()
		}
	}
	ratio, ok = make([]float64, len(results)), make([]bool, len(results))
	for i, r := range results {
		if b, found := base[rowKey{string(r.db), r.op, r.clients}]; found && b > 0 {
			ratio[i], ok[i] = r.m.reqPerSec()/b, true
		}
	}
	return ratio, ok
}

// printTable prints the results grouped so that the variants of one
// (db, op, clients) are adjacent.
func printTable(w io.Writer, o options, results []result) {
	order := func(list []string, s string) int { return slices.Index(list, s) }
	var dbs, ops, vs []string
	for _, d := range o.dbs {
		dbs = append(dbs, string(d))
	}
	for _, x := range o.ops {
		ops = append(ops, string(x))
	}
	for _, v := range o.variants {
		vs = append(vs, v.name)
	}
	idx := make([]int, len(results))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ra, rb := results[a], results[b]
		if c := order(dbs, string(ra.db)) - order(dbs, string(rb.db)); c != 0 {
			return c
		}
		if c := order(ops, string(ra.op)) - order(ops, string(rb.op)); c != 0 {
			return c
		}
		if c := slices.Index(o.clients, ra.clients) - slices.Index(o.clients, rb.clients); c != 0 {
			return c
		}
		return order(vs, ra.variant) - order(vs, rb.variant)
	})
	ratio, ok := ratios(o, results)

	vw := len("variant")
	for _, v := range vs {
		vw = max(vw, len(v))
	}
	line := func(cols ...string) {
		fmt.Fprintf(w, "%-8s  %-*s  %-6s  %7s  %9s  %9s  %9s  %7s  %6s\n",
			cols[0], vw, cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8])
	}
	line("db", "variant", "op", "clients", "req/s", "p50", "p99", "errors", "ratio")
	for _, i := range idx {
		r := results[i]
		rs := "-"
		if ok[i] {
			rs = strconv.FormatFloat(ratio[i], 'f', 2, 64)
		}
		reqs := strconv.FormatFloat(r.m.reqPerSec(), 'f', 0, 64)
		if r.m.capped {
			reqs += "*"
		}
		line(string(r.db), r.variant, string(r.op), strconv.Itoa(r.clients), reqs,
			fmtMS(r.m.p50), fmtMS(r.m.p99), strconv.Itoa(r.m.errors), rs)
	}
	fmt.Fprintf(w, "\nratio: req/s relative to variant %q on the same db, op and clients.\n", o.variants[0].name)
	if slices.ContainsFunc(results, func(r result) bool { return r.m.capped }) {
		fmt.Fprintf(w, "*: stopped at -max-requests=%d before the deadline.\n", o.maxRequests)
	}
}

// printJSON prints one JSON object per result, each complete with the run's
// environment so lines from several runs can be pooled.
func printJSON(w io.Writer, e env, o options, results []result) error {
	type line struct {
		env
		DB        string   `json:"db"`
		Variant   string   `json:"variant"`
		Op        string   `json:"op"`
		Clients   int      `json:"clients"`
		Requests  int      `json:"requests"`
		Errors    int      `json:"errors"`
		Seconds   float64  `json:"seconds"`
		ReqPerSec float64  `json:"req_per_sec"`
		P50ms     float64  `json:"p50_ms"`
		P99ms     float64  `json:"p99_ms"`
		Ratio     *float64 `json:"ratio_vs_first_variant"`
		Capped    bool     `json:"capped,omitempty"`
		FirstErr  string   `json:"first_error,omitempty"`
	}
	ratio, ok := ratios(o, results)
	enc := json.NewEncoder(w)
	for i, r := range results {
		l := line{
			env: e, DB: string(r.db), Variant: r.variant, Op: string(r.op), Clients: r.clients,
			Requests: r.m.requests, Errors: r.m.errors, Seconds: r.m.elapsed.Seconds(),
			ReqPerSec: r.m.reqPerSec(), P50ms: ms(r.m.p50), P99ms: ms(r.m.p99),
			Capped: r.m.capped, FirstErr: r.m.firstErr,
		}
		if ok[i] {
			l.Ratio = &ratio[i]
		}
		if err := enc.Encode(l); err != nil {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fmtMS shows a latency in milliseconds with three significant-ish digits.
func fmtMS(d time.Duration) string {
	v := ms(d)
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 3, 64) + "ms"
	case v < 100:
		return strconv.FormatFloat(v, 'f', 2, 64) + "ms"
	default:
		return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
	}
}
