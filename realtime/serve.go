package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/herald-dev/herald/events"
)

// Stream is one stream's parameters.
type Stream struct {
	// Caller keys the per-caller limit.
	Caller string
	// Resume is set when the client sent Last-Event-ID: events after
	// LastEventID are replayed from the log before live ones.
	Resume      bool
	LastEventID int64
	// Resource narrows the replay's query (the filter still decides).
	Resource string
	// Filter picks the events of the stream (before the view).
	Filter func(*events.Event) bool
	// Key and View render an event for this caller: View returns the
	// event as the caller may see it, false when it may not; frames are
	// encoded once per Key.
	Key  string
	View func(*events.Event) (events.Event, bool)
}

// writeDeadline bounds one write to a stream: a client that does not read
// for that long is cut off (it resumes with Last-Event-ID).
const writeDeadline = 10 * time.Second

// Open subscribes s. It fails with a *LimitError (429) before anything is
// written; the caller then calls Serve.
func (h *Hub) Open(s *Stream) (*Sub, int64, error) {
	return h.Subscribe(s.Caller, s.Filter)
}

// Serve writes the stream until the client goes, the hub drops it (slow,
// shutdown) or ctx ends: the headers and retry hint, the replay after
// Last-Event-ID (a reset first when retention removed events after it),
// then live events with no gap and no duplicate, a comment line as
// heartbeat. sub and head come from Open.
func (h *Hub) Serve(ctx context.Context, w http.ResponseWriter, sub *Sub, head int64, s *Stream) error {
	defer sub.Close()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // the stream only: no server write deadline
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	buf.WriteString("retry: 2000\n\n")
	write := func() error {
		if buf.Len() == 0 {
			return nil
		}
		_ = rc.SetWriteDeadline(time.Now().Add(writeDeadline))
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		if err == nil {
			err = rc.Flush()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && sub.Reason() != ReasonSlow {
			// The client stopped reading: as slow as a full buffer.
			h.m.slow.Inc()
		}
		return err
	}
	if err := write(); err != nil {
		return err
	}
	last := int64(-1) // the newest id sent: live events up to it are duplicates
	if s.Resume {
		var err error
		if last, err = h.replay(ctx, s, &buf, write); err != nil {
			return err
		}
	}
	// Live events are those after head (committed after the subscription);
	// the replay read everything committed up to its end, so together they
	// leave no gap, and live ones up to last are skipped as duplicates.
	_ = head
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.Done:
			if sub.Reason() == ReasonShutdown {
				buf.WriteString("retry: 2000\n: the server is shutting down; reconnect with Last-Event-ID\n\n")
				return write()
			}
			return nil
		case it := <-sub.C:
			h.put(&buf, it, s, last)
			// Whatever else is waiting goes in the same write.
		drain:
			for buf.Len() < 64<<10 {
				select {
				case it := <-sub.C:
					h.put(&buf, it, s, last)
				default:
					break drain
				}
			}
			if err := write(); err != nil {
				return err
			}
		}
	}
}

// put appends a live item: a heartbeat, or the event's frame when s sees
// it and it was not replayed already.
func (h *Hub) put(buf *bytes.Buffer, it *Item, s *Stream, last int64) {
	switch {
	case it == nil:
		buf.WriteString(": keep-alive\n\n")
	case it.Event.ID > last:
		h.frame(buf, it, s)
	}
}

// frame appends it's frame for s, if s sees it.
func (h *Hub) frame(buf *bytes.Buffer, it *Item, s *Stream) {
	f := it.Frame(s.Key, func() []byte {
		e, ok := s.View(it.Event)
		if !ok {
			return nil
		}
		return encodeFrame(&e)
	})
	if f != nil {
		buf.Write(f)
		h.m.frames.Inc()
	}
}

// encodeFrame renders an event as one SSE frame.
func encodeFrame(e *events.Event) []byte {
	data, err := json.Marshal(e)
	if err != nil {
		return nil
	}
	var b bytes.Buffer
	b.Grow(len(data) + len(e.EventType) + 40)
	b.WriteString("id: ")
	b.WriteString(strconv.FormatInt(e.ID, 10))
	b.WriteString("\nevent: ")
	b.WriteString(e.EventType)
	b.WriteString("\ndata: ")
	b.Write(data)
	b.WriteString("\n\n")
	return b.Bytes()
}

// replay sends the events after s.LastEventID from the log, in pages,
// until it has caught up with what is committed; live events queue in the
// subscription meanwhile. It returns the newest id it read.
func (h *Hub) replay(ctx context.Context, s *Stream, buf *bytes.Buffer, write func() error) (int64, error) {
	after := s.LastEventID
	removed, err := events.RemovedThrough(ctx, h.read)
	if err != nil {
		return after, err
	}
	if after < removed {
		fmt.Fprintf(buf, "event: reset\ndata: {\"lastEventId\":\"%d\",\"removedThrough\":\"%d\"}\n\n", after, removed)
		after = removed
	}
	audit := events.NewAudit(h.read)
	q := events.Query{Resource: s.Resource, After: after, Limit: 1000}
	for {
		page, err := audit.List(ctx, q)
		if err != nil {
			return after, err
		}
		for i := range page.Data {
			e := &page.Data[i]
			after = e.ID
			if s.Filter != nil && !s.Filter(e) {
				continue
			}
			v, ok := s.View(e)
			if !ok {
				continue
			}
			buf.Write(encodeFrame(&v))
			h.m.frames.Inc()
			h.m.replayed.Inc()
		}
		if err := write(); err != nil {
			return after, err
		}
		if page.Meta.Next == nil {
			return after, nil
		}
		q.After = after
	}
}
