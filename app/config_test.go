package app

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// envOf turns a map into a getenv function.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig(nil, envOf(nil))
	require.NoError(t, err)
	require.Equal(t, ":8080", cfg.Addr)
	require.Equal(t, "herald.db", cfg.DatabaseURL)
	require.Equal(t, "herald.yaml", cfg.Schema)
	require.False(t, cfg.SchemaExplicit, "the default schema file is optional")
	require.Empty(t, cfg.AdminKey)
	require.Equal(t, "role", cfg.JWTRoleClaim)
	require.Equal(t, 720*time.Hour, cfg.EventRetention)
	require.Equal(t, int64(1048576), cfg.MaxBody)
	require.Equal(t, "NORMAL", cfg.SQLiteSync)
	require.Equal(t, 30*time.Second, cfg.ShutdownTimeout)
	require.False(t, cfg.WebhookAllowPrivate)
	require.Empty(t, cfg.SessionClaims)
	require.Empty(t, cfg.TrustedProxies)
	require.Empty(t, cfg.CORSOrigins)
}

func TestLoadConfigValues(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, c Config)
	}{
		{name: "max body KiB", env: map[string]string{"HERALD_MAX_BODY": "512KiB"},
			check: func(t *testing.T, c Config) { require.Equal(t, int64(512*1024), c.MaxBody) }},
		{name: "max body MB is decimal", env: map[string]string{"HERALD_MAX_BODY": "2MB"},
			check: func(t *testing.T, c Config) { require.Equal(t, int64(2_000_000), c.MaxBody) }},
		{name: "max body plain bytes", env: map[string]string{"HERALD_MAX_BODY": "1048576"},
			check: func(t *testing.T, c Config) { require.Equal(t, int64(1048576), c.MaxBody) }},
		{name: "trusted proxies: CIDR and single address", env: map[string]string{"HERALD_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1"},
			check: func(t *testing.T, c Config) {
				require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.1/32")}, c.TrustedProxies)
			}},
		{name: "session claims are trimmed", env: map[string]string{"HERALD_SESSION_CLAIMS": "org, plan"},
			check: func(t *testing.T, c Config) { require.Equal(t, []string{"org", "plan"}, c.SessionClaims) }},
		{name: "cors origins", env: map[string]string{"HERALD_CORS_ORIGINS": "https://a.example,https://b.example"},
			check: func(t *testing.T, c Config) {
				require.Equal(t, []string{"https://a.example", "https://b.example"}, c.CORSOrigins)
			}},
		{name: "explicit schema", env: map[string]string{"HERALD_SCHEMA": "/etc/herald/schema.yaml"},
			check: func(t *testing.T, c Config) {
				require.Equal(t, "/etc/herald/schema.yaml", c.Schema)
				require.True(t, c.SchemaExplicit)
			}},
		{name: "plain values", env: map[string]string{
			"HERALD_ADDR": "127.0.0.1:9000", "HERALD_DATABASE_URL": "postgres://h@db/herald",
			"HERALD_ADMIN_KEY": "0123456789abcdef", "HERALD_JWT_SECRET": "s", "HERALD_JWKS_URL": "https://id.example/jwks.json",
			"HERALD_JWT_ROLE_CLAIM": "app.role", "HERALD_WEBHOOK_ALLOW_PRIVATE": "true",
			"HERALD_EVENT_RETENTION": "24h", "HERALD_SQLITE_SYNC": "full", "HERALD_SHUTDOWN_TIMEOUT": "5s",
		}, check: func(t *testing.T, c Config) {
			require.Equal(t, "127.0.0.1:9000", c.Addr)
			require.Equal(t, "postgres://h@db/herald", c.DatabaseURL)
			require.Equal(t, "0123456789abcdef", c.AdminKey)
			require.Equal(t, "s", c.JWTSecret)
			require.Equal(t, "https://id.example/jwks.json", c.JWKSURL)
			require.Equal(t, "app.role", c.JWTRoleClaim)
			require.True(t, c.WebhookAllowPrivate)
			require.Equal(t, 24*time.Hour, c.EventRetention)
			require.Equal(t, "FULL", c.SQLiteSync)
			require.Equal(t, 5*time.Second, c.ShutdownTimeout)
		}},
		{name: "flag wins over env", env: map[string]string{"HERALD_MAX_BODY": "2MB"}, args: []string{"-max-body", "64KiB"},
			check: func(t *testing.T, c Config) { require.Equal(t, int64(64*1024), c.MaxBody) }},
		{name: "flag without env", args: []string{"-addr=:9999", "-event-retention", "1h"},
			check: func(t *testing.T, c Config) {
				require.Equal(t, ":9999", c.Addr)
				require.Equal(t, time.Hour, c.EventRetention)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := LoadConfig(tt.args, envOf(tt.env))
			require.NoError(t, err)
			tt.check(t, cfg)
		})
	}
}

func TestLoadConfigErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name, variable, value string
		args                  []string
	}{
		{name: "size word", variable: "HERALD_MAX_BODY", value: "lots"},
		{name: "zero size", variable: "HERALD_MAX_BODY", value: "0"},
		{name: "negative size", variable: "HERALD_MAX_BODY", value: "-1KiB"},
		{name: "bad flag size", variable: "HERALD_MAX_BODY", args: []string{"-max-body", "huge"}},
		{name: "duration word", variable: "HERALD_EVENT_RETENTION", value: "forever"},
		{name: "negative duration", variable: "HERALD_EVENT_RETENTION", value: "-1h"},
		{name: "not a CIDR", variable: "HERALD_TRUSTED_PROXIES", value: "nope"},
		{name: "one bad CIDR in a list", variable: "HERALD_TRUSTED_PROXIES", value: "10.0.0.0/8, nope"},
		{name: "short admin key", variable: "HERALD_ADMIN_KEY", value: "short"},
		{name: "not a bool", variable: "HERALD_WEBHOOK_ALLOW_PRIVATE", value: "maybe"},
		{name: "sqlite sync OFF", variable: "HERALD_SQLITE_SYNC", value: "OFF"},
		{name: "jwks not http", variable: "HERALD_JWKS_URL", value: "ftp://x"},
		{name: "shutdown timeout word", variable: "HERALD_SHUTDOWN_TIMEOUT", value: "soon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			if tt.value != "" {
				env[tt.variable] = tt.value
			}
			_, err := LoadConfig(tt.args, envOf(env))
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.variable)
		})
	}
}

func TestLoadConfigUnknownFlag(t *testing.T) {
	_, err := LoadConfig([]string{"-no-such-flag"}, envOf(nil))
	require.Error(t, err)
}

// TestBadSettingsBeforeAnySideEffect: a short JWT secret or a bad schema
// file stops New before the database is created or an admin key printed.
func TestBadSettingsBeforeAnySideEffect(t *testing.T) {
	for name, tc := range map[string]struct {
		env    map[string]string
		schema string
		want   string
	}{
		"short jwt secret": {env: map[string]string{"HERALD_JWT_SECRET": "short"}, want: "HERALD_JWT_SECRET"},
		"bad schema":       {schema: "resources:\n  - name: Bad Name\n    fields: []\n", want: "HERALD_SCHEMA"},
		"bad expression": {schema: "resources:\n  - name: a\n    fields: [{name: n, type: integer}]\n    classifications: {c: \"n ==(\"}\n",
			want: "classification c of a"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			env := map[string]string{"HERALD_DATABASE_URL": filepath.Join(dir, "herald.db")}
			for k, v := range tc.env {
				env[k] = v
			}
			if tc.schema != "" {
				env["HERALD_SCHEMA"] = filepath.Join(dir, "herald.yaml")
				require.NoError(t, os.WriteFile(env["HERALD_SCHEMA"], []byte(tc.schema), 0o600))
			}
			cfg, err := LoadConfig(nil, envOf(env))
			require.NoError(t, err)
			var out bytes.Buffer
			_, err = New(context.Background(), cfg, Options{Out: &out, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			require.ErrorContains(t, err, tc.want)
			require.NoFileExists(t, filepath.Join(dir, "herald.db"), "no database was created")
			require.Empty(t, out.String(), "no admin key was printed")
		})
	}
}
