package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config is Herald's configuration. Every setting is an environment
// variable and a flag of the same name in lower case without the prefix
// (HERALD_MAX_BODY is -max-body); a flag wins over the variable.
type Config struct {
	Addr                string         // HERALD_ADDR, default ":8080"
	DatabaseURL         string         // HERALD_DATABASE_URL, default "herald.db" (SQLite)
	Schema              string         // HERALD_SCHEMA, default "herald.yaml" (used when it exists)
	AdminKey            string         // HERALD_ADMIN_KEY, default: generated once and stored
	JWTSecret           string         // HERALD_JWT_SECRET (HS256)
	JWKSURL             string         // HERALD_JWKS_URL (RS256/ES256)
	JWTRoleClaim        string         // HERALD_JWT_ROLE_CLAIM, default "role"
	JWTAudience         string         // HERALD_JWT_AUDIENCE: required aud, when set
	JWTIssuer           string         // HERALD_JWT_ISSUER: required iss, when set
	SessionClaims       []string       // HERALD_SESSION_CLAIMS, comma-separated
	TrustedProxies      []netip.Prefix // HERALD_TRUSTED_PROXIES, comma-separated CIDRs
	CORSOrigins         []string       // HERALD_CORS_ORIGINS, comma-separated
	WebhookAllowPrivate bool           // HERALD_WEBHOOK_ALLOW_PRIVATE, default false
	EventRetention      time.Duration  // HERALD_EVENT_RETENTION, default 720h
	MaxBody             int64          // HERALD_MAX_BODY, default 1MiB
	SQLiteSync          string         // HERALD_SQLITE_SYNC: NORMAL (default) or FULL
	ShutdownTimeout     time.Duration  // HERALD_SHUTDOWN_TIMEOUT, default 30s
	ReadTimeout         time.Duration  // HERALD_READ_TIMEOUT, default 30s: to read a request, body included
	RequestTimeout      time.Duration  // HERALD_REQUEST_TIMEOUT, default 30s: a request's deadline, queries and write queue included
	IdleTimeout         time.Duration  // HERALD_IDLE_TIMEOUT, default 60s: an idle keep-alive connection
	MaxConns            int            // HERALD_MAX_CONNS, default 20000: open connections, streams included
	WriteTimeout        time.Duration  // HERALD_WRITE_TIMEOUT, default 10s
	SSEMaxPerCaller     int            // HERALD_SSE_MAX_PER_CALLER, default 20
	SSEMaxStreams       int            // HERALD_SSE_MAX_STREAMS, default 10000
	ClassifyInterval    time.Duration  // HERALD_CLASSIFY_INTERVAL, default 30s
	// ClassifyBatchSize is how many rows a background classification
	// transaction evaluates (default 500). No setting: tests set it.
	ClassifyBatchSize int
	// DisableEvents turns event capture off. It is no setting: only the
	// benchmark sets it, to measure what capture costs.
	DisableEvents bool
	// SchemaExplicit is true when HERALD_SCHEMA was set: a missing file is
	// then an error instead of "use the stored schema".
	SchemaExplicit bool
}

// setting describes one variable.
type setting struct {
	env, def, usage string
	set             func(c *Config, v string) error
}

var settings = []setting{
	{"HERALD_ADDR", ":8080", "listen address", func(c *Config, v string) error { c.Addr = v; return nil }},
	{"HERALD_DATABASE_URL", "herald.db", "postgres:// URL, or a SQLite file path", func(c *Config, v string) error { c.DatabaseURL = v; return nil }},
	{"HERALD_SCHEMA", "", "schema file (default herald.yaml when it exists)", func(c *Config, v string) error {
		c.Schema, c.SchemaExplicit = v, v != ""
		if v == "" {
			c.Schema = "herald.yaml"
		}
		return nil
	}},
	{"HERALD_ADMIN_KEY", "", "admin bearer key (generated and stored when unset)", func(c *Config, v string) error {
		if v != "" && len(v) < 16 {
			return errors.New("must be at least 16 characters")
		}
		c.AdminKey = v
		return nil
	}},
	{"HERALD_JWT_SECRET", "", "HS256 secret for JWTs", func(c *Config, v string) error { c.JWTSecret = v; return nil }},
	{"HERALD_JWKS_URL", "", "JWKS URL for RS256/ES256 JWTs", func(c *Config, v string) error {
		if v != "" && !strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
			return errors.New("must be an http(s) URL")
		}
		c.JWKSURL = v
		return nil
	}},
	{"HERALD_JWT_ROLE_CLAIM", "role", "claim (dotted path) that holds the role", func(c *Config, v string) error {
		if v == "" {
			return errors.New("must not be empty")
		}
		c.JWTRoleClaim = v
		return nil
	}},
	{"HERALD_JWT_AUDIENCE", "", "audience (aud) a JWT must name", func(c *Config, v string) error { c.JWTAudience = v; return nil }},
	{"HERALD_JWT_ISSUER", "", "issuer (iss) a JWT must have", func(c *Config, v string) error { c.JWTIssuer = v; return nil }},
	{"HERALD_SESSION_CLAIMS", "", "claims copied into session variables", func(c *Config, v string) error { c.SessionClaims = splitList(v); return nil }},
	{"HERALD_TRUSTED_PROXIES", "", "CIDRs whose X-Forwarded-For is trusted", func(c *Config, v string) error {
		c.TrustedProxies = nil
		for _, s := range splitList(v) {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					return fmt.Errorf("%q is not a CIDR", s)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			c.TrustedProxies = append(c.TrustedProxies, p.Masked())
		}
		return nil
	}},
	{"HERALD_CORS_ORIGINS", "", "allowed CORS origins", func(c *Config, v string) error { c.CORSOrigins = splitList(v); return nil }},
	{"HERALD_WEBHOOK_ALLOW_PRIVATE", "false", "allow webhooks to private addresses", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		c.WebhookAllowPrivate = b
		return err
	}},
	{"HERALD_EVENT_RETENTION", "720h", "how long events are kept", positiveDuration(func(c *Config) *time.Duration { return &c.EventRetention })},
	{"HERALD_MAX_BODY", "1MiB", "largest request body", func(c *Config, v string) error {
		n, err := parseSize(v)
		c.MaxBody = n
		return err
	}},
	{"HERALD_SQLITE_SYNC", "NORMAL", "SQLite synchronous: NORMAL or FULL", func(c *Config, v string) error {
		v = strings.ToUpper(v)
		if v != "NORMAL" && v != "FULL" {
			return errors.New("must be NORMAL or FULL")
		}
		c.SQLiteSync = v
		return nil
	}},
	{"HERALD_WRITE_TIMEOUT", "10s", "longest a write transaction may take (then 503)", positiveDuration(func(c *Config) *time.Duration { return &c.WriteTimeout })},
	{"HERALD_SSE_MAX_PER_CALLER", "20", "most SSE streams of one caller (admin key, user, or IP for public)", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err == nil && (n < 1 || n > 1_000_000) {
			err = errors.New("must be from 1 to 1000000")
		}
		c.SSEMaxPerCaller = n
		return err
	}},
	{"HERALD_SSE_MAX_STREAMS", "10000", "most SSE streams of this instance", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err == nil && (n < 1 || n > 1_000_000) {
			err = errors.New("must be from 1 to 1000000")
		}
		c.SSEMaxStreams = n
		return err
	}},
	{"HERALD_CLASSIFY_INTERVAL", "30s", "how often classifications that use now are re-evaluated (10ms to 1m)", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err == nil && (d < 10*time.Millisecond || d > time.Minute) {
			err = errors.New("must be from 10ms to 1m")
		}
		c.ClassifyInterval = d
		return err
	}},
	{"HERALD_READ_TIMEOUT", "30s", "longest time to read a request, body included (a client that trickles is cut off)", positiveDuration(func(c *Config) *time.Duration { return &c.ReadTimeout })},
	{"HERALD_REQUEST_TIMEOUT", "30s", "a request's deadline, its queries and its wait in the write queue included (streams and imports exempt)", positiveDuration(func(c *Config) *time.Duration { return &c.RequestTimeout })},
	{"HERALD_IDLE_TIMEOUT", "60s", "how long an idle keep-alive connection stays open", positiveDuration(func(c *Config) *time.Duration { return &c.IdleTimeout })},
	{"HERALD_MAX_CONNS", "20000", "most open connections (SSE streams included); more wait to be accepted", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err == nil && (n < 1 || n > 1_000_000) {
			err = errors.New("must be from 1 to 1000000")
		}
		c.MaxConns = n
		return err
	}},
	{"HERALD_SHUTDOWN_TIMEOUT", "30s", "how long SIGTERM waits for requests in flight", positiveDuration(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
}

// positiveDuration is the setter of a duration setting that must be
// positive.
func positiveDuration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err == nil && d <= 0 {
			err = errors.New("must be positive")
		}
		*field(c) = d
		return err
	}
}

// LoadConfig reads the settings from flags (args, without the program
// name) over environment variables (getenv). A bad value is an error that
// names the variable; -help is flag.ErrHelp (the help printed to stdout
// when given, see Main).
func LoadConfig(args []string, getenv func(string) string) (Config, error) {
	return loadConfig(args, getenv, io.Discard)
}

func loadConfig(args []string, getenv func(string) string, help io.Writer) (Config, error) {
	fs := flag.NewFlagSet("herald", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, help goes to help
	fs.Usage = func() {}     // printed below for -help only, not for every bad flag
	vals := make([]*string, len(settings))
	for i, s := range settings {
		// The built-in default, never the environment's value: help
		// prints defaults, and a secret set there must not show.
		vals[i] = fs.String(flagName(s.env), s.def, s.usage+" ("+s.env+")")
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(help)
			usage(help, fs)
		}
		return Config{}, err
	}
	if *showVersion {
		return Config{}, errVersion
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (settings are flags or environment variables; see herald --help)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var c Config
	for i, s := range settings {
		v := *vals[i]
		if !set[flagName(s.env)] {
			if ev := getenv(s.env); ev != "" {
				v = ev
			}
		}
		if err := s.set(&c, v); err != nil {
			shown := strconv.Quote(v)
			switch s.env {
			case "HERALD_ADMIN_KEY", "HERALD_JWT_SECRET":
				shown = "(secret, not shown)"
			case "HERALD_DATABASE_URL":
				shown = strconv.Quote(redactURL(v))
			}
			return Config{}, fmt.Errorf("config: %s=%s: %w", s.env, shown, err)
		}
	}
	return c, nil
}

func flagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "HERALD_")), "_", "-")
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

// parseSize reads a byte size such as 1MiB, 512KiB, 2MB or 1048576.
func parseSize(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000_000}, {"GB", 1000_000_000}, {"B", 1}}
	num, mult := strings.TrimSpace(v), int64(1)
	for _, u := range units {
		if s, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(s), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("must be a positive size such as 1MiB or 65536")
	}
	return n * mult, nil
}
