package webhooks

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/herald-dev/herald/events"
)

// eventPayload is the "event" format: the event of SPEC section 5 plus
// the webhook's id.
type eventPayload struct {
	events.Event
	WebhookID string `json:"webhookId"`
	// Related names the webhook's rows that a change of a related row
	// touched (related webhooks only).
	Related *relatedPayload `json:"related,omitempty"`
}

// hasuraPayload is Hasura's event-trigger payload, so that receivers
// written for Hasura work unchanged. delivery_info is left out: it would
// change between attempts, and every attempt sends the same bytes.
type hasuraPayload struct {
	Event struct {
		SessionVariables map[string]any `json:"session_variables"`
		Op               string         `json:"op"`
		Data             struct {
			Old            map[string]any     `json:"old"`
			New            map[string]any     `json:"new"`
			Classification *events.Transition `json:"classification,omitempty"`
		} `json:"data"`
		TraceContext *hasuraTrace `json:"trace_context,omitempty"`
	} `json:"event"`
	CreatedAt string `json:"created_at"`
	ID        string `json:"id"`
	Trigger   struct {
		Name string `json:"name"`
	} `json:"trigger"`
	Table struct {
		Schema string `json:"schema"`
		Name   string `json:"name"`
	} `json:"table"`
	Related *relatedPayload `json:"related,omitempty"`
}

type hasuraTrace struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

// hasuraOps maps Herald's operations to Hasura's. Hasura has no
// classification events: a transition goes as MANUAL (the row as it is),
// with event.data.classification saying which.
var hasuraOps = map[string]string{"created": "INSERT", "updated": "UPDATE", "deleted": "DELETE", "manual": "MANUAL",
	"classified": "MANUAL"}

// hasuraSession maps session variables to Hasura's x-hasura-* names:
// role and userId become x-hasura-role and x-hasura-user-id; the claims
// copied by HERALD_SESSION_CLAIMS become x-hasura-<claim> (lower case,
// "_" as "-"). The peer's ip and user agent have no Hasura counterpart
// and are left out.
func hasuraSession(sv map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range sv {
		switch k {
		case "role":
			out["x-hasura-role"] = v
		case "userId":
			out["x-hasura-user-id"] = v
		case "ip", "userAgent":
		default:
			out["x-hasura-"+strings.ReplaceAll(strings.ToLower(k), "_", "-")] = v
		}
	}
	return out
}

// render encodes an event for h in h's format (not ids, which batches);
// related names the source rows it touched, for related webhooks.
func render(h *hook, e *events.Event, related *relatedPayload) ([]byte, error) {
	if h.Format == FormatHasura {
		var p hasuraPayload
		p.Event.SessionVariables = hasuraSession(e.SessionVariables)
		p.Event.Op = hasuraOps[events.Op(e.EventType)]
		p.Event.Data.Old, p.Event.Data.New, p.Event.Data.Classification = e.Data.Old, e.Data.New, e.Data.Classification
		p.Related = related
		if e.TraceContext.TraceID != "" {
			p.Event.TraceContext = &hasuraTrace{TraceID: e.TraceContext.TraceID, SpanID: e.TraceContext.SpanID}
		}
		p.CreatedAt = e.CreatedAt.UTC().Format(time.RFC3339Nano)
		p.ID = e.EventID
		p.Trigger.Name = h.Name
		p.Table.Schema, p.Table.Name = "public", e.ResourceName
		return marshal(p)
	}
	return marshal(eventPayload{Event: *e, WebhookID: h.ID, Related: related})
}

// idsPayload is the "ids" format.
type idsPayload struct {
	HookID string   `json:"hook_id"`
	Rows   []string `json:"rows"`
}

// pingPayload is the body of a test delivery.
type pingPayload struct {
	Type      string    `json:"type"`
	WebhookID string    `json:"webhookId"`
	Timestamp time.Time `json:"timestamp"`
}

// pingType is the event type of test deliveries.
const pingType = "webhook.ping"

func marshal(v any) ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(b.String(), "\n")), nil
}

// traceparent continues the event's trace: W3C traceparent of the span
// that wrote it, or "" when it has none.
func traceparent(tc events.TraceContext) string {
	if len(tc.TraceID) != 32 || len(tc.SpanID) != 16 {
		return ""
	}
	return "00-" + tc.TraceID + "-" + tc.SpanID + "-01"
}
