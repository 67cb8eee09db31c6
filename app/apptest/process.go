package apptest

import (
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Build builds the herald binary once for t, from the module root
// (moduleRoot, relative to the test's package directory), and returns its
// path. It skips t in -short mode or without a go toolchain.
func Build(t testing.TB, moduleRoot string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping in -short mode: the test builds and runs the herald binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: no go toolchain on PATH to build the herald binary")
	}
	bin := filepath.Join(t.TempDir(), "herald")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Dir = moduleRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("apptest: go build: %v: %s", err, out)
	}
	return bin
}

// Process is a herald process started by a test.
type Process struct {
	Cmd  *exec.Cmd
	Base string // http://127.0.0.1:port
	log  string
	// Exited is closed once the process has exited; Err is then cmd.Wait's.
	Exited chan struct{}
	Err    error
}

// Log returns what the process wrote to stdout and stderr so far.
func (p *Process) Log() string {
	raw, _ := os.ReadFile(p.log)
	return string(raw)
}

// Kill SIGKILLs the process and waits until it is gone.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	if err := p.Cmd.Process.Kill(); err != nil {
		t.Fatalf("apptest: kill: %v", err)
	}
	<-p.Exited
	var exit *exec.ExitError
	if !errors.As(p.Err, &exit) {
		t.Fatalf("apptest: herald should die of SIGKILL: %v; log:\n%s", p.Err, p.Log())
	}
}

// Run starts the binary in dir with the environment variables vars
// (NAME=value; the test's own HERALD_* variables are not passed on) on a
// free port, and waits until /readyz answers 200. The process is killed
// when the test ends, if still running.
func Run(t testing.TB, bin, dir string, vars []string) *Process {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	logf, err := os.CreateTemp(dir, "herald-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, vars...)
	cmd.Env = append(cmd.Env, "HERALD_ADDR="+addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{Cmd: cmd, Base: "http://" + addr, log: logf.Name(), Exited: make(chan struct{})}
	go func() {
		p.Err = cmd.Wait()
		_ = logf.Close()
		close(p.Exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.Exited:
		default:
			_ = cmd.Process.Kill()
			<-p.Exited
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-p.Exited:
			t.Fatalf("apptest: herald exited during start-up: %v; log:\n%s", p.Err, p.Log())
		default:
		}
		if r, err := Send(client, p.Base, "GET", "/readyz", nil, ""); err == nil && r.Status == http.StatusOK {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("apptest: herald not ready within a minute; log:\n%s", p.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
