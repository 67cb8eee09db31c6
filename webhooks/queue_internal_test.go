package webhooks

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBackoff: exponential ceilings with full jitter, capped, and
// Retry-After (seconds or HTTP date) winning, capped too. The clock and
// the jitter are injected: nothing sleeps.
func TestBackoff(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ceiling := func(d time.Duration) time.Duration { return d }
	half := func(d time.Duration) time.Duration { return d / 2 }
	for _, c := range []struct {
		n      int
		hdr    http.Header
		jitter func(time.Duration) time.Duration
		want   time.Duration
	}{
		{1, nil, ceiling, 5 * time.Second},
		{2, nil, ceiling, 10 * time.Second},
		{4, nil, ceiling, 40 * time.Second},
		{4, nil, half, 20 * time.Second},
		{20, nil, ceiling, time.Minute},
		{64, nil, ceiling, time.Minute},
		{1, http.Header{"Retry-After": {"7"}}, half, 7 * time.Second},
		{1, http.Header{"Retry-After": {"3600"}}, ceiling, time.Minute},
		{1, http.Header{"Retry-After": {now.Add(30 * time.Second).Format(http.TimeFormat)}}, ceiling, 30 * time.Second},
		{1, http.Header{"Retry-After": {now.Add(-time.Hour).Format(http.TimeFormat)}}, ceiling, 0},
		{2, http.Header{"Retry-After": {"soon"}}, ceiling, 10 * time.Second},
	} {
		got := backoff(5*time.Second, time.Minute, c.n, c.hdr, now, c.jitter)
		require.Equal(t, c.want, got, "attempt %d %v", c.n, c.hdr)
	}
}

// TestGuardAtConnectTime: the dialer refuses internal addresses after DNS,
// so a name that resolves to loopback fails although it is a name, and
// redirects are not followed.
func TestGuardAtConnectTime(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))

	strict := NewQueue(QueueConfig{Guard: &Guard{}}, nil, nil, "")
	resp, err := strict.client.Get("http://localhost:" + port + "/")
	if resp != nil {
		resp.Body.Close()
	}
	require.Error(t, err, "localhost resolves to loopback: refused at connect time")
	require.Contains(t, err.Error(), "internal")

	open := NewQueue(QueueConfig{Guard: &Guard{AllowPrivate: true}}, nil, nil, "")
	resp, err = open.client.Get("http://localhost:" + port + "/redirect")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode, "redirects are not followed")

	g := &Guard{}
	for _, a := range []string{"127.0.0.1", "::1", "10.0.0.1", "169.254.169.254", "100.100.100.200", "fd00:ec2::254", "::ffff:10.0.0.1", "0.0.0.0"} {
		require.Error(t, g.CheckAddr(netip.MustParseAddr(a)), a)
	}
	for _, a := range []string{"203.0.113.7", "8.8.8.8", "2606:4700::1111"} {
		require.NoError(t, g.CheckAddr(netip.MustParseAddr(a)), a)
	}
}
