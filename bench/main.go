// Command bench measures Herald's HTTP throughput and latency over loopback.
//
// It starts Herald in-process (through the app package) on a fresh SQLite
// file and/or a fresh PostgreSQL database, drives it with a fixed number of
// concurrent keep-alive clients for a fixed time per measurement, and prints
// one table row per (database, variant, operation, clients). A variant is a
// named configuration change, so two settings can be compared in one run; the
// ratio column relates each row to the first variant's matching row.
//
//	go run ./bench -db sqlite -clients 1,8 -duration 2s -ops create,read
//
// See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herald-dev/herald/database"
)

// defaultPGURL is the local server that -db postgres uses when neither
// -pg-url nor HERALD_BENCH_DATABASE_URL is set.
const defaultPGURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// options are the parsed command-line flags.
type options struct {
	dbs            []database.Kind
	pgURL          string
	clients        []int
	duration       time.Duration
	warmup         time.Duration
	ops            []op
	variants       []variant
	cpuProfile     string
	seed           int
	maxRequests    int
	sqliteSync     string
	json           bool
	webhooks       bool
	webhookRate    int
	webhookEvents  int
	sse            bool
	sseClient      bool
	sseURL         string
	sseSubscribers int
	sseRate        int
	sseIdle        int
	classify       bool
	classifyRows   int
	sseMeasure     bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	if opts.sseClient {
		return runSSEClients(opts.sseURL, opts.sseSubscribers, opts.sseMeasure)
	}
	if opts.cpuProfile != "" {
		f, err := os.Create(opts.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	env := describeEnv(opts)
	fmt.Fprint(stdout, env.header())
	if opts.webhooks {
		return runWebhookBench(ctx, opts, stdout, stderr)
	}
	if opts.sse {
		return runSSEBench(ctx, opts, stdout, stderr)
	}
	if opts.classify {
		return runClassifyBench(ctx, opts, stdout, stderr)
	}

	client := newClient(slices.Max(opts.clients))
	defer client.CloseIdleConnections()
	var results []result
	var runErr error
	for _, kind := range opts.dbs {
		for _, v := range opts.variants {
			rs, err := benchTarget(ctx, opts, client, kind, v, stderr)
			results = append(results, rs...)
			if err != nil {
				runErr = fmt.Errorf("%s/%s: %w", kind, v.name, err)
				break
			}
		}
		if runErr != nil {
			break
		}
	}
	// Print what was measured even when a later target failed or the run
	// was interrupted.
	if len(results) > 0 {
		printTable(stdout, opts, results)
		if opts.json {
			if err := printJSON(stdout, env, opts, results); err != nil && runErr == nil {
				runErr = err
			}
		}
	}
	if runErr == nil && ctx.Err() != nil {
		runErr = errors.New("interrupted")
	}
	return runErr
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbFlag := fs.String("db", "both", "database: sqlite, postgres or both")
	pgURL := fs.String("pg-url", "", "PostgreSQL server URL; a fresh database is created on it per run and dropped after\n(default $HERALD_BENCH_DATABASE_URL, else "+defaultPGURL+")")
	clientsFlag := fs.String("clients", "1,8,32", "comma-separated numbers of concurrent clients")
	duration := fs.Duration("duration", 5*time.Second, "measured time per (op, clients)")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time before each measurement (0 disables)")
	opsFlag := fs.String("ops", "create,read", "comma-separated operations: "+strings.Join(opNames(), ", "))
	variantsFlag := fs.String("variants", "default", "comma-separated variants to compare; the first is the ratio's base:\n"+variantHelp())
	seed := fs.Int("seed", 1000, "records created before measuring, so read and list have data")
	maxRequests := fs.Int("max-requests", 2_000_000, "cap on requests per measurement (bounds memory for latencies)")
	sqliteSync := fs.String("sqlite-sync", "NORMAL", "SQLite synchronous setting: NORMAL or FULL")
	jsonOut := fs.Bool("json", false, "also print each result as a JSON line after the table")
	classify := fs.Bool("classify", false, "run the classification benchmark instead: re-evaluating -classify-rows rows after a definition change")
	classifyRows := fs.Int("classify-rows", 1_000_000, "-classify: rows of the table")
	webhooks := fs.Bool("webhooks", false, "run the webhook benchmark instead: commit-to-delivery latency and delivery throughput")
	webhookRate := fs.Int("webhook-rate", 200, "-webhooks: writes per second of the latency measurement (-duration long)")
	webhookEvents := fs.Int("webhook-events", 20000, "-webhooks: deliveries of the throughput measurement")
	sse := fs.Bool("sse", false, "run the realtime benchmark instead: latency to many subscribers, memory per idle subscriber")
	sseSubscribers := fs.Int("sse-subscribers", 1000, "-sse: subscribers of the latency measurement")
	sseRate := fs.Int("sse-rate", 100, "-sse: writes per second of the latency measurement")
	sseIdle := fs.Int("sse-idle", 10000, "-sse: idle subscribers of the memory measurement")
	sseClient := fs.Bool("sse-client", false, "internal: be the child process that holds the streams")
	sseURL := fs.String("sse-url", "", "internal: -sse-client's stream URL")
	sseMeasure := fs.Bool("sse-measure", true, "internal: -sse-client measures latency")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (Herald and load) to this file")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./bench [flags]\n\nMeasures Herald's HTTP throughput over loopback.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}

	o := options{
		duration: *duration, warmup: *warmup, seed: *seed,
		maxRequests: *maxRequests, json: *jsonOut,
	}
	switch strings.ToLower(*dbFlag) {
	case "sqlite":
		o.dbs = []database.Kind{database.SQLite}
	case "postgres":
		o.dbs = []database.Kind{database.Postgres}
	case "both":
		o.dbs = []database.Kind{database.SQLite, database.Postgres}
	default:
		return o, fmt.Errorf("-db %q: want sqlite, postgres or both", *dbFlag)
	}
	o.pgURL = *pgURL
	if o.pgURL == "" {
		o.pgURL = getenv("HERALD_BENCH_DATABASE_URL")
	}
	if o.pgURL == "" {
		o.pgURL = defaultPGURL
	}
	if !database.IsPostgres(o.pgURL) {
		return o, fmt.Errorf("-pg-url %q: want a postgres:// URL", o.pgURL)
	}
	for _, s := range splitList(*clientsFlag) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 4096 {
			return o, fmt.Errorf("-clients %q: want numbers from 1 to 4096", *clientsFlag)
		}
		if !slices.Contains(o.clients, n) {
			o.clients = append(o.clients, n)
		}
	}
	if len(o.clients) == 0 {
		return o, errors.New("-clients: want at least one number")
	}
	if o.duration <= 0 || o.duration > time.Hour {
		return o, fmt.Errorf("-duration %s: want more than 0 and at most 1h", o.duration)
	}
	if o.warmup < 0 || o.warmup > time.Hour {
		return o, fmt.Errorf("-warmup %s: want 0 to 1h", o.warmup)
	}
	for _, name := range splitList(*opsFlag) {
		op, ok := lookupOp(name)
		if !ok {
			return o, fmt.Errorf("-ops: unknown operation %q (have %s)", name, strings.Join(opNames(), ", "))
		}
		if !slices.Contains(o.ops, op) {
			o.ops = append(o.ops, op)
		}
	}
	if len(o.ops) == 0 {
		return o, errors.New("-ops: want at least one operation")
	}
	for _, name := range splitList(*variantsFlag) {
		v, ok := lookupVariant(name)
		if !ok {
			return o, fmt.Errorf("-variants: unknown variant %q (have %s)", name, strings.Join(variantNames(), ", "))
		}
		if !slices.ContainsFunc(o.variants, func(x variant) bool { return x.name == v.name }) {
			o.variants = append(o.variants, v)
		}
	}
	if len(o.variants) == 0 {
		return o, errors.New("-variants: want at least one variant")
	}
	if o.seed < 1 || o.seed > 1_000_000 {
		return o, fmt.Errorf("-seed %d: want 1 to 1000000", o.seed)
	}
	if o.maxRequests < slices.Max(o.clients) || o.maxRequests > 50_000_000 {
		return o, fmt.Errorf("-max-requests %d: want at least the largest -clients and at most 50000000", o.maxRequests)
	}
	o.sqliteSync = strings.ToUpper(*sqliteSync)
	if o.sqliteSync != "NORMAL" && o.sqliteSync != "FULL" {
		return o, fmt.Errorf("-sqlite-sync %q: want NORMAL or FULL", *sqliteSync)
	}
	o.cpuProfile = *cpuProfile
	o.webhooks, o.webhookRate, o.webhookEvents = *webhooks, *webhookRate, *webhookEvents
	o.classify, o.classifyRows = *classify, *classifyRows
	if o.classifyRows < 1 || o.classifyRows > 100_000_000 {
		return o, fmt.Errorf("-classify-rows %d: want 1 to 100000000", o.classifyRows)
	}
	o.sse, o.sseClient, o.sseURL, o.sseSubscribers, o.sseRate, o.sseIdle, o.sseMeasure = *sse, *sseClient, *sseURL, *sseSubscribers, *sseRate, *sseIdle, *sseMeasure
	if o.sseSubscribers < 1 || o.sseRate < 1 || o.sseIdle < 1 {
		return o, errors.New("-sse-subscribers, -sse-rate and -sse-idle: want at least 1")
	}
	if o.webhookRate < 1 || o.webhookRate > 100_000 || o.webhookEvents < 1000 || o.webhookEvents > 10_000_000 {
		return o, errors.New("-webhook-rate: want 1 to 100000; -webhook-events: want 1000 to 10000000")
	}
	return o, nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
