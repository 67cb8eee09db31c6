package app_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
)

// secretEnv sets every secret setting; help must show none of them.
func secretEnv(k string) string {
	return map[string]string{
		"HERALD_ADMIN_KEY":    "admin-key-that-must-not-show",
		"HERALD_JWT_SECRET":   "jwt-secret-that-must-not-show",
		"HERALD_DATABASE_URL": "postgres://herald:db-password-that-must-not-show@db:5432/herald",
	}[k]
}

func runMain(t *testing.T, getenv func(string) string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := app.Main(context.Background(), args, getenv, &out, &errOut, app.Options{})
	return code, out.String(), errOut.String()
}

func TestHelpShowsNoSecretAndExitsZero(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--help", "-h", "-help"} {
		code, out, errOut := runMain(t, secretEnv, arg)
		require.Equal(t, 0, code, "%s: %s", arg, errOut)
		require.Empty(t, errOut)
		require.True(t, strings.HasPrefix(out, "herald: a REST API"), "a one-line description first: %s", out)
		for _, want := range []string{"-admin-key", "HERALD_ADMIN_KEY", "-database-url", "healthcheck", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_SERVICE_NAME", `(default "herald.db")`} {
			require.Contains(t, out, want)
		}
		require.NotContains(t, out, "must-not-show")
		require.NotContains(t, out, "help requested")
	}
}

func TestBadSettingsNeverEchoSecrets(t *testing.T) {
	t.Parallel()
	env := func(k string) string {
		return map[string]string{"HERALD_ADMIN_KEY": "short-secret"}[k]
	}
	code, _, errOut := runMain(t, env)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "HERALD_ADMIN_KEY")
	require.NotContains(t, errOut, "short-secret")

	env = func(k string) string {
		return map[string]string{"HERALD_DATABASE_URL": "postgres://u:pw-secret@db/x", "HERALD_MAX_BODY": "lots"}[k]
	}
	code, _, errOut = runMain(t, env)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "HERALD_MAX_BODY")
	require.NotContains(t, errOut, "pw-secret")

	// Bad settings make a healthcheck unhealthy (1): Docker reserves 2.
	code, _, _ = runMain(t, env, "healthcheck")
	require.Equal(t, 1, code)
}

func TestDatabaseURLRedacted(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"herald.db": "herald.db",
		"postgres://u:pw-secret@db:5432/x?sslmode=disable":           "postgres://u:xxxxx@db:5432/x?sslmode=disable",
		"postgres://u@db/x?password=pw-secret&sslmode=require":       "postgres://u@db/x?password=xxxxx&sslmode=require",
		"postgresql://db/x?sslpassword=pw-secret&PassWord=pw-secret": "postgresql://db/x?PassWord=xxxxx&sslpassword=xxxxx",
	} {
		require.Equal(t, want, app.RedactURL(in))
	}
}

func TestVersionAndUnknownArguments(t *testing.T) {
	t.Parallel()
	code, out, _ := runMain(t, secretEnv, "--version")
	require.Equal(t, 0, code)
	require.Regexp(t, `^herald \S+\n$`, out)

	// An unknown command or a stray argument is a usage error before
	// anything else happens: no server starts, no database is created.
	dir := t.TempDir()
	db := filepath.Join(dir, "herald.db")
	getenv := func(k string) string {
		return map[string]string{"HERALD_DATABASE_URL": db, "HERALD_ADDR": "127.0.0.1:0"}[k]
	}
	for _, args := range [][]string{{"help"}, {"serve", "extra"}, {"--addr", ":0", "stray"}, {"--no-such-flag"}} {
		code, out, errOut := runMain(t, getenv, args...)
		require.Equal(t, 2, code, "%v", args)
		require.Empty(t, out, "%v", args)
		require.NotEmpty(t, errOut, "%v", args)
		require.NoFileExists(t, db, "%v created a database", args)
	}
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	var status atomic.Int32
	status.Store(http.StatusOK)
	var path atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path.Store(r.URL.Path)
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, addr := range []string{":" + port, "0.0.0.0:" + port, "127.0.0.1:" + port} {
		getenv := func(k string) string { return map[string]string{"HERALD_ADDR": addr}[k] }
		code, _, errOut := runMain(t, getenv, "healthcheck")
		require.Equal(t, 0, code, "%s: %s", addr, errOut)
		require.Equal(t, "/readyz", path.Load())
	}
	code, _, _ := runMain(t, func(string) string { return "" }, "healthcheck", "--addr", "127.0.0.1:"+port)
	require.Equal(t, 0, code, "the flag works too")

	status.Store(http.StatusServiceUnavailable)
	code, _, errOut := runMain(t, func(string) string { return "" }, "healthcheck", "--addr", ":"+port)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "503")

	srv.Close()
	code, _, _ = runMain(t, func(string) string { return "" }, "healthcheck", "--addr", ":"+port)
	require.Equal(t, 1, code, "nothing listening")
}

// TestBinaryCommandLine runs the built binary: --help exits 0 without
// secrets, healthcheck answers for a running server.
func TestBinaryCommandLine(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	bin := apptest.Build(t, filepath.Join(filepath.Dir(file), ".."))
	cmd := exec.Command(bin, "--help")
	cmd.Env = []string{"HERALD_ADMIN_KEY=admin-key-that-must-not-show", "HERALD_JWT_SECRET=jwt-secret-that-must-not-show"}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NotContains(t, string(out), "must-not-show")

	env := apptest.Start(t, "sqlite", "resources: []\n")
	_, port, _ := net.SplitHostPort(env.Server.Listener.Addr().String())
	out, err = exec.Command(bin, "healthcheck", "--addr", ":"+port).CombinedOutput()
	require.NoError(t, err, "%s", out)
	env.Stop()
	err = exec.Command(bin, "healthcheck", "--addr", ":"+port).Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 1, exit.ExitCode())
}
