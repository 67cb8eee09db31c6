package webhooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"golang.org/x/net/http/httpguts"

	"github.com/herald-dev/herald/models"
	"github.com/herald-dev/herald/resources"
)

// The delivery formats.
const (
	FormatEvent  = "event"
	FormatHasura = "hasura"
	FormatIDs    = "ids"
)

// The auth types.
const (
	AuthHMAC   = "hmac"
	AuthBearer = "bearer"
	AuthBasic  = "basic"
	AuthNone   = "none"
)

// Spec is a webhook as the admin API takes it (SPEC section 6). Zero
// values mean the defaults named on each field.
type Spec struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Resource is a resource name or "*".
	Resource string `json:"resource"`
	// Events default to created, updated and deleted.
	Events []string `json:"events"`
	// Fields: updates fire only when one of these changed.
	Fields []string `json:"fields"`
	// Related names related resources ("orders", or "orders.customer_id"
	// where several relations join the two): a change of a related row
	// fires the webhook for the source rows it touches (related.go).
	Related []string `json:"related"`
	// Classification, when set, makes the webhook fire on that
	// classification's transitions instead of on mutations.
	Classification *ClassificationFilter `json:"classification"`
	// Format defaults to "event".
	Format string `json:"format"`
	Auth   Auth   `json:"auth"`
	// Headers are sent with every delivery.
	Headers map[string]string `json:"headers"`
	Retry   Retry             `json:"retry"`
	Ordered bool              `json:"ordered"`
	// RateLimit caps requests per second to the endpoint; 0 is no cap.
	RateLimit float64 `json:"rateLimit"`
	Paused    bool    `json:"paused"`
	// Enabled defaults to true.
	Enabled *bool `json:"enabled"`
}

// Auth is how deliveries authenticate to the receiver.
type Auth struct {
	// Type is hmac (default: Standard Webhooks signatures), bearer, basic
	// or none.
	Type     string `json:"type"`
	Token    string `json:"token,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// Retry is the retry policy.
type Retry struct {
	// MaxAttempts defaults to 8 (1 to 100).
	MaxAttempts int `json:"maxAttempts"`
	// InitialInterval defaults to 5s: the first retry's backoff ceiling,
	// doubled for each further one.
	InitialInterval string `json:"initialInterval"`
	// MaxInterval defaults to 1h: the largest delay, Retry-After included.
	MaxInterval string `json:"maxInterval"`
	// Timeout defaults to 30s: how long one attempt may take.
	Timeout string `json:"timeout"`
}

// View is a webhook as the admin API shows it: no secret or credentials.
type View struct {
	ID             string                `json:"id"`
	Name           string                `json:"name"`
	URL            string                `json:"url"`
	Resource       string                `json:"resource"`
	Events         []string              `json:"events"`
	Fields         []string              `json:"fields"`
	Related        []string              `json:"related"`
	Classification *ClassificationFilter `json:"classification"`
	Format         string                `json:"format"`
	Auth           AuthView              `json:"auth"`
	Headers        map[string]string     `json:"headers"`
	Retry          Retry                 `json:"retry"`
	Ordered        bool                  `json:"ordered"`
	RateLimit      float64               `json:"rateLimit"`
	Paused         bool                  `json:"paused"`
	Enabled        bool                  `json:"enabled"`
	DisabledReason string                `json:"disabledReason,omitempty"`
	CreatedAt      time.Time             `json:"createdAt"`
	UpdatedAt      time.Time             `json:"updatedAt"`
	// Secret is set only in the answers to create and rotate-secret.
	Secret string `json:"secret,omitempty"`
}

// AuthView shows the auth type and, for basic, the user name.
type AuthView struct {
	Type     string `json:"type"`
	Username string `json:"username,omitempty"`
}

// hook is a webhook's stored settings, decoded for matching and sending.
type hook struct {
	models.Webhook
	events  []string
	fields  []string
	related []string
	// classification is nil unless the webhook fires on transitions.
	classification *ClassificationFilter
	headers        map[string]string
	auth           Auth
	initial        time.Duration
	maxBackoff     time.Duration
	timeout        time.Duration
}

func decodeHook(m *models.Webhook) (*hook, error) {
	h := &hook{Webhook: *m}
	for _, p := range []struct {
		raw string
		dst any
	}{{m.Events, &h.events}, {m.Fields, &h.fields}, {m.Related, &h.related}, {m.Classification, &h.classification},
		{m.Headers, &h.headers}, {m.AuthConfig, &h.auth}} {
		if p.raw == "" {
			continue
		}
		if err := json.Unmarshal([]byte(p.raw), p.dst); err != nil {
			return nil, fmt.Errorf("webhooks: decode webhook %s: %w", m.ID, err)
		}
	}
	h.auth.Type = m.AuthType
	h.initial = time.Duration(m.InitialIntervalMS) * time.Millisecond
	h.maxBackoff = time.Duration(m.MaxIntervalMS) * time.Millisecond
	h.timeout = time.Duration(m.TimeoutMS) * time.Millisecond
	return h, nil
}

func (h *hook) view() View {
	v := View{ID: h.ID, Name: h.Name, URL: h.URL, Resource: h.Resource, Events: h.events, Fields: h.fields,
		Related: h.related, Classification: h.classification, Format: h.Format, Auth: AuthView{Type: h.AuthType}, Headers: h.headers, Ordered: h.Ordered,
		RateLimit: h.RateLimit, Paused: h.Paused, Enabled: h.Enabled, DisabledReason: h.DisabledReason,
		CreatedAt: h.CreatedAt.UTC(), UpdatedAt: h.UpdatedAt.UTC(),
		Retry: Retry{MaxAttempts: h.MaxAttempts, InitialInterval: h.initial.String(), MaxInterval: h.maxBackoff.String(),
			Timeout: h.timeout.String()}}
	if h.AuthType == AuthBasic {
		v.Auth.Username = h.auth.Username
	}
	if v.Fields == nil {
		v.Fields = []string{}
	}
	if v.Related == nil {
		v.Related = []string{}
	}
	if v.Headers == nil {
		v.Headers = map[string]string{}
	}
	return v
}

// spec returns the stored settings as a Spec (credentials included), the
// base a PATCH is applied to.
func (h *hook) spec() Spec {
	enabled := h.Enabled
	return Spec{Name: h.Name, URL: h.URL, Resource: h.Resource, Events: h.events, Fields: h.fields,
		Related: h.related, Classification: h.classification, Format: h.Format, Auth: h.auth, Headers: h.headers, Ordered: h.Ordered, RateLimit: h.RateLimit,
		Paused: h.Paused, Enabled: &enabled,
		Retry: Retry{MaxAttempts: h.MaxAttempts, InitialInterval: h.initial.String(), MaxInterval: h.maxBackoff.String(),
			Timeout: h.timeout.String()}}
}

// specFields are the keys a Spec body may have.
var specFields = []string{"name", "url", "resource", "events", "fields", "related", "classification", "format",
	"auth", "headers", "retry", "ordered", "rateLimit", "paused", "enabled"}

// notNull are the keys that have no "null" (PATCH cannot unset them).
var notNull = []string{"name", "url", "resource", "format", "ordered", "paused", "enabled", "rateLimit"}

// decodeSpec overlays the JSON object body on base, naming every key that
// is unknown or of the wrong type.
func decodeSpec(body []byte, base Spec) (Spec, []resources.Problem, error) {
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return base, nil, &BodyError{"the body must be a JSON object"}
	}
	if trailing(body, dec) {
		return base, nil, &BodyError{"the body has data after the JSON value"}
	}
	var probs []resources.Problem
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(specFields, k) {
			probs = append(probs, resources.Problem{Field: k, Rule: "unknown", Message: "unknown field"})
			continue
		}
		if string(bytes.TrimSpace(obj[k])) == "null" && slices.Contains(notNull, k) {
			probs = append(probs, resources.Problem{Field: k, Rule: "type", Message: "must not be null"})
			continue
		}
		one, _ := json.Marshal(map[string]json.RawMessage{k: obj[k]})
		d := json.NewDecoder(bytes.NewReader(one))
		d.DisallowUnknownFields()
		if k == "auth" {
			base.Auth = Auth{} // a new auth replaces the old one whole
		}
		// A partial retry object keeps the other retry settings: decoding
		// into base overlays only the keys sent.
		if err := d.Decode(&base); err != nil {
			field, msg := typeProblem(k, err)
			probs = append(probs, resources.Problem{Field: field, Rule: "type", Message: msg})
		}
	}
	return base, probs, nil
}

// typeProblem names the field of a decoding error (a nested one as
// "retry.maxAttempts") and says what type it must have.
func typeProblem(k string, err error) (string, string) {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		field := k
		if ute.Field != "" {
			field = ute.Field
		}
		return field, "must be " + jsonType(ute.Type.Kind().String()) + ", not " + ute.Value
	}
	msg := err.Error()
	if i := strings.Index(msg, "unknown field "); i >= 0 {
		return k + "." + strings.Trim(msg[i+len("unknown field "):], `"`), "unknown field"
	}
	return k, "has the wrong type"
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int":
		return "an integer"
	case "float64":
		return "a number"
	case "slice":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	}
	return "of another type"
}

// trailing tells whether body has anything but white space after the
// value dec decoded. (Decoder.More misses a stray "}" or "]".)
func trailing(body []byte, dec *json.Decoder) bool {
	return len(bytes.TrimSpace(body[dec.InputOffset():])) > 0
}

// BodyError is a body that is not the JSON object expected (400).
type BodyError struct{ Message string }

// Error implements error.
func (e *BodyError) Error() string { return e.Message }

// reservedHeaders are the request headers Herald sets itself; custom
// headers may not override them.
var reservedHeaders = []string{"Content-Type", "Content-Length", "Content-Encoding", "Host", "User-Agent",
	"Authorization", "Proxy-Authorization", "Traceparent", "Tracestate", "Transfer-Encoding", "Connection", "Te",
	"Trailer", "Upgrade", "Expect", "Keep-Alive", "Proxy-Connection", "Cookie"}

// validate checks s against the schema and fills the defaults, naming
// every bad field.
func (s *Spec) validate(sc *resources.Schema, guard *Guard) []resources.Problem {
	var probs []resources.Problem
	bad := func(field, rule, msg string) {
		probs = append(probs, resources.Problem{Field: field, Rule: rule, Message: msg})
	}
	if s.Name = strings.TrimSpace(s.Name); s.Name == "" || len(s.Name) > 200 {
		bad("name", "required", "a name of 1 to 200 characters is required")
	} else if hasControl(s.Name) {
		bad("name", "characters", "must not contain control characters")
	}
	if s.URL == "" {
		bad("url", "required", "an http or https URL is required")
	} else if err := guard.CheckURL(s.URL); err != nil {
		bad("url", "url", err.Error())
	}
	var res *resources.Resource
	switch {
	case s.Resource == "":
		bad("resource", "required", `a resource name or "*" is required`)
	case s.Resource != "*":
		if res = sc.Resource(s.Resource); res == nil {
			bad("resource", "exists", fmt.Sprintf("no resource %q", s.Resource))
		}
	}
	if len(s.Events) == 0 {
		s.Events = []string{"created", "updated", "deleted"}
	}
	seen := map[string]bool{}
	for i, e := range s.Events {
		if e != "created" && e != "updated" && e != "deleted" {
			bad(fmt.Sprintf("events[%d]", i), "enum", "must be created, updated or deleted")
		} else if seen[e] {
			bad(fmt.Sprintf("events[%d]", i), "unique", "listed twice")
		}
		seen[e] = true
	}
	for i, f := range s.Fields {
		switch {
		case s.Resource == "*":
			bad(fmt.Sprintf("fields[%d]", i), "resource", `fields need a single resource, not "*"`)
		case res != nil && res.Column(f) == nil:
			bad(fmt.Sprintf("fields[%d]", i), "exists", fmt.Sprintf("resource %s has no field %q", s.Resource, f))
		}
	}
	if len(s.Related) > 0 {
		if s.Resource == "*" {
			bad("related", "resource", `related needs a single resource, not "*"`)
		} else if res != nil {
			resolveRelated(sc, s.Resource, s.Related, bad)
		}
	}
	if s.Classification != nil {
		s.Classification.validate(res, s.Resource, bad)
		if len(s.Related) > 0 {
			bad("related", "classification", "a classification webhook fires on transitions only: leave related out")
		}
	}
	switch s.Format {
	case "":
		s.Format = FormatEvent
	case FormatEvent, FormatHasura, FormatIDs:
	default:
		bad("format", "enum", "must be event, hasura or ids")
	}
	switch s.Auth.Type {
	case "":
		s.Auth.Type = AuthHMAC
		fallthrough
	case AuthHMAC, AuthNone:
		if s.Auth.Token != "" || s.Auth.Username != "" || s.Auth.Password != "" {
			bad("auth", "credentials", "credentials go only with bearer or basic")
		}
	case AuthBearer:
		if s.Auth.Token == "" || !httpguts.ValidHeaderFieldValue(s.Auth.Token) || strings.ContainsAny(s.Auth.Token, " \t") {
			bad("auth.token", "required", "bearer needs a token without spaces")
		}
		if s.Auth.Username != "" || s.Auth.Password != "" {
			bad("auth", "credentials", "bearer takes a token only")
		}
	case AuthBasic:
		if s.Auth.Username == "" || strings.Contains(s.Auth.Username, ":") {
			bad("auth.username", "required", "basic needs a user name without ':'")
		}
		if s.Auth.Token != "" {
			bad("auth", "credentials", "basic takes a username and password")
		}
		if hasControl(s.Auth.Username) || hasControl(s.Auth.Password) {
			bad("auth", "characters", "the username and password must not contain control characters")
		}
	default:
		bad("auth.type", "enum", "must be hmac, bearer, basic or none")
	}
	names := make([]string, 0, len(s.Headers))
	for k := range s.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		canon := http.CanonicalHeaderKey(k)
		switch {
		case !httpguts.ValidHeaderFieldName(k):
			bad("headers."+k, "header", "not a valid header name")
		case slices.Contains(reservedHeaders, canon) || strings.HasPrefix(canon, "Webhook-") || strings.HasPrefix(canon, "X-Herald-"):
			bad("headers."+k, "reserved", "Herald sets this header itself")
		case !httpguts.ValidHeaderFieldValue(s.Headers[k]) || strings.ContainsAny(s.Headers[k], "\r\n"):
			bad("headers."+k, "header", "not a valid header value")
		}
	}
	if len(s.Headers) > 50 {
		bad("headers", "max", "at most 50 headers")
	}
	if s.Retry.MaxAttempts == 0 {
		s.Retry.MaxAttempts = 8
	}
	if s.Retry.MaxAttempts < 1 || s.Retry.MaxAttempts > 100 {
		bad("retry.maxAttempts", "range", "must be from 1 to 100")
	}
	durations := []struct {
		name     string
		val      *string
		def      string
		min, max time.Duration
	}{
		{"retry.initialInterval", &s.Retry.InitialInterval, "5s", 10 * time.Millisecond, 24 * time.Hour},
		{"retry.maxInterval", &s.Retry.MaxInterval, "1h", 10 * time.Millisecond, 7 * 24 * time.Hour},
		{"retry.timeout", &s.Retry.Timeout, "30s", 100 * time.Millisecond, 5 * time.Minute},
	}
	parsed := map[string]time.Duration{}
	for _, d := range durations {
		if *d.val == "" {
			*d.val = d.def
		}
		v, err := time.ParseDuration(*d.val)
		if err != nil || v < d.min || v > d.max {
			bad(d.name, "duration", fmt.Sprintf("must be a duration from %s to %s, like %q", d.min, d.max, d.def))
			continue
		}
		parsed[d.name] = v
	}
	if i, ok := parsed["retry.initialInterval"]; ok {
		if m, ok := parsed["retry.maxInterval"]; ok && m < i {
			bad("retry.maxInterval", "min", "must not be less than initialInterval")
		}
	}
	if s.RateLimit < 0 || s.RateLimit > 10000 || math.IsNaN(s.RateLimit) {
		bad("rateLimit", "range", "must be from 0 (no limit) to 10000 requests per second")
	}
	if s.Enabled == nil {
		t := true
		s.Enabled = &t
	}
	return probs
}

// apply writes the validated spec into m.
func (s *Spec) apply(m *models.Webhook) {
	events, _ := json.Marshal(s.Events)
	fields := s.Fields
	if fields == nil {
		fields = []string{}
	}
	fj, _ := json.Marshal(fields)
	headers := s.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	hj, _ := json.Marshal(headers)
	authCfg, _ := json.Marshal(Auth{Token: s.Auth.Token, Username: s.Auth.Username, Password: s.Auth.Password})
	initial, _ := time.ParseDuration(s.Retry.InitialInterval)
	maxI, _ := time.ParseDuration(s.Retry.MaxInterval)
	timeout, _ := time.ParseDuration(s.Retry.Timeout)
	m.Name, m.URL, m.Resource, m.Format = s.Name, s.URL, s.Resource, s.Format
	related := s.Related
	if related == nil {
		related = []string{}
	}
	rj, _ := json.Marshal(related)
	cj := ""
	if s.Classification != nil {
		b, _ := json.Marshal(s.Classification)
		cj = string(b)
	}
	m.Events, m.Fields, m.Headers, m.Related, m.Classification = string(events), string(fj), string(hj), string(rj), cj
	m.AuthType, m.AuthConfig = s.Auth.Type, string(authCfg)
	m.MaxAttempts = s.Retry.MaxAttempts
	m.InitialIntervalMS, m.MaxIntervalMS, m.TimeoutMS = initial.Milliseconds(), maxI.Milliseconds(), timeout.Milliseconds()
	m.Ordered, m.RateLimit, m.Paused = s.Ordered, s.RateLimit, s.Paused
	if *s.Enabled && !m.Enabled {
		m.DisabledReason, m.DeadStreak = "", 0
	}
	m.Enabled = *s.Enabled
}

// hasControl tells whether s has a control character (NUL included, which
// PostgreSQL cannot store in text).
func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}

// checkURLShape refuses what is not an absolute http(s) URL.
func checkURLShape(raw string) (*url.URL, error) {
	if len(raw) > 2048 {
		return nil, fmt.Errorf("at most 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("must be an absolute http or https URL")
	}
	if u.User != nil {
		return nil, fmt.Errorf("credentials in the URL are refused; use auth basic")
	}
	return u, nil
}
