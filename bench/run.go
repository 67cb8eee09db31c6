package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/herald-dev/herald/database"
)

// result is one table row.
type result struct {
	db      database.Kind
	variant string
	op      op
	clients int
	m       measurement
}

// benchTarget starts Herald on a fresh database of kind with variant v,
// seeds it, and measures every op at every client count, in the order
// given, so that each variant sees the same sequence (and table sizes).
func benchTarget(ctx context.Context, opts options, client *http.Client, kind database.Kind, v variant, progress io.Writer) (results []result, err error) {
	fmt.Fprintf(progress, "%s/%s: starting Herald on a fresh database\n", kind, v.name)
	t, err := startTarget(ctx, opts, kind, v)
	if err != nil {
		return nil, err
	}
	defer func() {
		// Idle keep-alive connections would otherwise wait for the server's
		// shutdown to close them.
		client.CloseIdleConnections()
		if serr := t.stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stop: %w", serr))
		}
	}()

	l := &loader{client: client, baseURL: t.baseURL, latBuf: make([]time.Duration, opts.maxRequests)}
	if err := l.seedItems(ctx, opts.seed); err != nil {
		return nil, err
	}
	seed := uint64(time.Now().UnixNano())
	for _, o := range opts.ops {
		for _, c := range opts.clients {
			if ctx.Err() != nil {
				return results, nil
			}
			if opts.warmup > 0 {
				seed++
				l.measure(ctx, o, c, opts.warmup, seed)
			}
			seed++
			m := l.measure(ctx, o, c, opts.duration, seed)
			if ctx.Err() != nil {
				return results, nil // cut short: not a fair row
			}
			r := result{db: kind, variant: v.name, op: o, clients: c, m: m}
			results = append(results, r)
			line := fmt.Sprintf("%s/%s: %-6s clients=%-4d %9.0f req/s  p50=%s  p99=%s  errors=%d",
				kind, v.name, o, c, m.reqPerSec(), fmtMS(m.p50), fmtMS(m.p99), m.errors)
			if m.capped {
				line += "  (request cap reached)"
			}
			if m.firstErr != "" {
				line += "  first error: " + m.firstErr
			}
			fmt.Fprintln(progress, line)
		}
	}
	return results, nil
}
