package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/models"
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
	// SchemaVersion is the schema the view was made under (0: none): the
	// stream ends, with a retry hint, when the schema changes.
	SchemaVersion int
	// Expires is when the caller's token expires (zero: never): the stream
	// ends then, with a retry hint.
	Expires time.Time
}

// writeDeadline bounds the writes of the headers and the replay, which
// the request's goroutine makes before the hub takes the connection over.
const writeDeadline = 10 * time.Second

// Open subscribes s. It fails with a *LimitError (429) or ErrShuttingDown
// (503) before anything is written; the caller then calls Serve.
func (h *Hub) Open(s *Stream) (*Sub, int64, error) {
	return h.Subscribe(s.Caller, s)
}

// Serve takes the connection over from net/http and starts the stream:
// the headers (with those already set on w, such as X-Request-ID) and
// the retry hint, the replay after Last-Event-ID (a reset first when
// retention removed events after it), then hands the connection to the
// hub, which sends live events with no gap and no duplicate, and a comment
// line as heartbeat. It returns once the hub has the connection; the
// response must not be touched after. sub and head come from Open.
func (h *Hub) Serve(ctx context.Context, w http.ResponseWriter, sub *Sub, head int64, s *Stream) error {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		sub.Close()
		return fmt.Errorf("realtime: take the connection over: %w", err)
	}
	var buf bytes.Buffer
	buf.WriteString("HTTP/1.1 200 OK\r\n")
	hdr := w.Header().Clone()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Set("Connection", "close") // the body ends when the stream does
	_ = hdr.Write(&buf)
	buf.WriteString("\r\nretry: 2000\n\n")
	write := func() error {
		if buf.Len() == 0 {
			return nil
		}
		_ = conn.SetWriteDeadline(time.Now().Add(writeDeadline))
		_, err := conn.Write(buf.Bytes())
		buf.Reset()
		return err
	}
	if err := write(); err != nil {
		sub.Close()
		_ = conn.Close()
		return nil
	}
	// Live events are those after head (committed after the subscription);
	// the replay reads everything committed up to its end, so together
	// they leave no gap, and live ones up to the replay's end are skipped.
	last := head
	if s.Resume {
		if last, err = h.replay(ctx, s, head, &buf, write); err != nil {
			h.cfg.Logger.Warn("realtime: replay", "err", err)
			sub.Close()
			_ = conn.Close()
			return nil
		}
	}
	h.attach(sub, conn, last)
	return nil
}

// frameOf returns it's frame for s (encoded once per view key), or nil
// when s does not see it.
func (h *Hub) frameOf(it *Item, s *Stream) []byte {
	return it.Frame(s.Key, func() []byte {
		e, ok := s.View(it.Event)
		if !ok {
			return nil
		}
		return encodeFrame(&e)
	})
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

// replay sends the events after s.LastEventID up to head (what the hub
// had handed out when the stream subscribed: everything after it arrives
// live), in pages. A reset comes first when retention removed events
// after that id, or when the id is beyond the log (a restored database, a
// stale id): the stream then starts where the log is. It returns the
// newest id it covered.
func (h *Hub) replay(ctx context.Context, s *Stream, head int64, buf *bytes.Buffer, write func() error) (int64, error) {
	after := s.LastEventID
	removed, err := events.RemovedThrough(ctx, h.read)
	if err != nil {
		return after, err
	}
	switch {
	case after < removed:
		fmt.Fprintf(buf, "event: reset\ndata: {\"lastEventId\":\"%d\",\"removedThrough\":\"%d\"}\n\n", after, removed)
		after = removed
	case after > head:
		var max int64
		if err := h.read.WithContext(ctx).Raw("SELECT COALESCE(MAX(id), 0) FROM herald_events").Scan(&max).Error; err != nil {
			return after, err
		}
		if after > max {
			fmt.Fprintf(buf, "event: reset\ndata: {\"lastEventId\":\"%d\",\"removedThrough\":\"%d\"}\n\n", after, removed)
			return head, write()
		}
		return after, write() // newer than this hub's head: live events follow
	}
	for after < head {
		var rows []models.Event
		q := h.read.WithContext(ctx).Where("id > ? AND id <= ?", after, head)
		if s.Resource != "" {
			q = q.Where("resource_name = ?", s.Resource)
		}
		if err := q.Order("id").Limit(1000).Find(&rows).Error; err != nil {
			return after, err
		}
		if len(rows) == 0 {
			break
		}
		for i := range rows {
			after = rows[i].ID
			e, err := decode(&rows[i])
			if err != nil || (s.Filter != nil && !s.Filter(e)) {
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
	}
	return max(after, head), write()
}
