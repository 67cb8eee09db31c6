package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"time"
)

// Exit codes of Main.
const (
	exitOK    = 0
	exitError = 1 // the server failed, or healthcheck found it not ready
	exitUsage = 2 // a bad flag, setting or argument
)

// Main is the command line: `herald [flags]` serves, `herald healthcheck`
// asks a running server's /readyz, `herald --version` prints the version
// and `herald --help` the settings. It returns the exit code. Help shows
// each setting's built-in default, never a value from the environment,
// so no secret set there is printed.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, opts Options) int {
	cmd := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "", "serve", "healthcheck":
	default:
		fmt.Fprintf(stderr, "herald: unknown command %q (commands: serve, healthcheck; see herald --help)\n", cmd)
		return exitUsage
	}
	cfg, err := loadConfig(args, getenv, stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errVersion):
		fmt.Fprintln(stdout, "herald", version())
		return exitOK
	case err != nil:
		fmt.Fprintln(stderr, "herald:", err)
		if cmd == "healthcheck" {
			return exitError // Docker reserves 2; a healthcheck is healthy or not
		}
		return exitUsage
	}
	if cmd == "healthcheck" {
		if err := Healthcheck(ctx, cfg.Addr); err != nil {
			fmt.Fprintln(stderr, "herald: healthcheck:", err)
			return exitError
		}
		return exitOK
	}
	if opts.Getenv == nil {
		opts.Getenv = getenv
	}
	if err := Run(ctx, cfg, opts); err != nil {
		fmt.Fprintln(stderr, "herald:", err)
		return exitError
	}
	return exitOK
}

// errVersion is --version, answered by Main.
var errVersion = errors.New("version requested")

// version is Version, or the module version or VCS revision the binary
// was built from when no release set Version.
func version() string {
	if Version != "dev" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Version
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return Version
}

// usage prints the help text.
func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `herald: a REST API for the resources declared in a schema, with every committed write recorded as an event and sent to webhooks and SSE streams.

Usage:
  herald [flags]              serve (the default command; also "herald serve")
  herald healthcheck [flags]  ask the running server's /readyz (at -addr); exit 0 when ready, 1 otherwise
  herald --version            print the version
  herald --help               print this help

Every flag is also an environment variable (shown in parentheses); a flag
wins over the variable. Defaults shown are the built-in ones.

Flags:
`)
	fs.PrintDefaults()
	fmt.Fprint(w, `
OpenTelemetry (environment only):
  OTEL_SERVICE_NAME                     service name of the spans (default herald)
  OTEL_TRACES_EXPORTER                  otlp or none (default otlp, used when an endpoint is set)
  OTEL_EXPORTER_OTLP_ENDPOINT           OTLP endpoint; spans are exported only when it (or the next) is set
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT    OTLP endpoint for traces only
  OTEL_EXPORTER_OTLP_PROTOCOL           http/protobuf (default) or grpc; also OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
  OTEL_EXPORTER_OTLP_HEADERS            headers sent to the endpoint (also _TRACES_HEADERS)
  OTEL_EXPORTER_OTLP_TIMEOUT            export timeout in milliseconds (also _TRACES_TIMEOUT; default 10000)
  OTEL_EXPORTER_OTLP_COMPRESSION        gzip or none (also _TRACES_COMPRESSION)
  OTEL_RESOURCE_ATTRIBUTES              resource attributes of the spans (key=value,...)
  OTEL_TRACES_SAMPLER                   always_on, always_off, traceidratio, parentbased_always_on (default),
                                        parentbased_always_off, parentbased_traceidratio
  OTEL_TRACES_SAMPLER_ARG               the ratio for the traceidratio samplers
`)
}

// Healthcheck asks the server listening at addr (HERALD_ADDR's form,
// ":8080" for example) whether it is ready: nil when /readyz answers 200
// within 5 seconds.
func Healthcheck(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("HERALD_ADDR %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every interface: loopback is one
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/readyz"}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", u.String(), resp.Status)
	}
	return nil
}

// redactURL hides the passwords of a database URL for logs (the user
// info's, and password or sslpassword in the query, which pgx takes too);
// a SQLite path is returned as it is.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		if strings.Contains(s, "://") {
			return "(unparsable URL)"
		}
		return s
	}
	q := u.Query()
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Set(k, "xxxxx")
		}
	}
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// tracingTarget describes where spans go, for the start-up log.
func tracingTarget(getenv func(string) string) string {
	if strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") {
		return "off (OTEL_TRACES_EXPORTER=none)"
	}
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		endpoint = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if proto == "" {
		proto = "http/protobuf"
	}
	if endpoint == "" {
		if !strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "otlp") {
			return "off (no OTEL_EXPORTER_OTLP_ENDPOINT)"
		}
		// The OpenTelemetry default, which newTracerProvider uses then.
		endpoint = "http://localhost:4318"
		if proto == "grpc" {
			endpoint = "http://localhost:4317"
		}
	}
	return "otlp " + proto + " " + redactURL(endpoint)
}

// listenURL is the URL a listener serves, for the start-up log: an
// address on every interface is shown as localhost.
func listenURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// schemaSource says where the schema in use came from, for the start-up
// log.
func (a *App) schemaSource() string {
	n := len(a.store.Schema().Resources)
	if _, err := os.Stat(a.cfg.Schema); err == nil {
		return fmt.Sprintf("%s (%d resources)", a.cfg.Schema, n)
	}
	return fmt.Sprintf("stored registry, no %s (%d resources)", a.cfg.Schema, n)
}
