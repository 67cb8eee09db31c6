package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/app/apptest"
)

// FuzzHTTP sends arbitrary methods, paths, query strings and bodies, as
// the admin, as nobody and as a bad token, to a Herald on each engine,
// and fails on any 5xx, an error that is not problem+json, or answers
// that differ between the engines. Under
// go test it runs its seed corpus; go test -fuzz=FuzzHTTP ./api explores.
func FuzzHTTP(f *testing.F) {
	seeds := []struct {
		method      uint8
		path, query string
		body        string
		who         uint8
	}{
		{0, "/v1/customers", "name=Ada", "", 0},
		{0, "/v1/customers", "name=%ZZ", "", 0},
		{0, "/v1/customers", "name=Ada;x", "", 1},
		{0, "/v1/customers", "_sort=-name&_limit=2&_after=eyJ4IjoxfQ", "", 0},
		{0, "/v1/customers", "name__like=A%00", "", 0},
		{0, "/v1/orders", "placed_at__gt=0000-01-01T00:00:00Z", "", 0},
		{1, "/v1/customers", "", `{"name":"A\u0000","email":"a@b.co"}`, 0},
		{1, "/v1/customers", "", `{"name":"Ada","email":"ada@example.com"}}`, 0},
		{1, "/v1/customers", "", `[{"name":"Ada","email":"x@example.com"}]]`, 0},
		{1, "/v1/products", "", `{"sku":"ABC","price":1e400}`, 0},
		{1, "/v1/products", "", `{"sku":"ABC","price":1,"meta":{"a":"\u0000"}}`, 0},
		{1, "/v1/orders", "", `{"customer_id":"01A23456-0000-7000-8000-000000000001","quantity":1}`, 0},
		{2, "/v1/customers/01A23456-0000-7000-8000-000000000001", "", `{"name":"x"}`, 0},
		{3, "/v1/customers/not-a-uuid", "hard=true", "", 0},
		{0, "/v1/_events", "resourceName=x&after=-1", "", 0},
		{1, "/v1/_registry/import", "dryRun=true", "resources:\n  - name: sqlite_x\n    fields: []\n", 0},
		{1, "/v1/_registry/import", "dryRun=true", `{"resources":[{"name":"a","fields":[],"classifications":{"c":"x == ((("}}]}}`, 0},
		{1, "/v1/_webhooks", "", `{"name":"x","url":"http://example.com","resource":"customers","related":["orders."],"classification":{"name":"c"}}`, 0},
		{0, "/v1/customers/stream", "access_token=x&a=%ZZ", "", 1},
		{0, "/v1/%2e%2e/_registry", "", "", 2},
		{0, "/v1/customers/urn:uuid:01a23456-0000-7000-8000-000000000001", "", "", 0},
		{3, "/v1/customers/01a234560000700080000000000000001", "", "", 0},
		{0, "/v1/_events", "userId=a%00", "", 0},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, s.body, s.who)
	}
	// One Herald per engine: every input goes to each, and the answers
	// must agree (the same input gets the same status on both).
	var envs []*apptest.Env
	for _, kind := range kinds {
		envs = append(envs, apptest.Start(f, kind, shopSchema))
	}
	methods := []string{"GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"}
	// A stream never ends (an escaped path can still route to one): the
	// client gives up, and such an input is skipped.
	client := &http.Client{Timeout: 5 * time.Second}
	f.Fuzz(func(t *testing.T, method uint8, path, query, body string, who uint8) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#?") || len(path) > 2000 ||
			strings.ContainsAny(query, " \r\n\t#") || len(query) > 4000 {
			return // not an HTTP request line a client could send
		}
		if strings.HasSuffix(strings.TrimRight(path, "/"), "/stream") {
			return // streams do not end; they have their own tests
		}
		m := methods[int(method)%len(methods)]
		token := []string{apptest.AdminKey, "", "not-a-token"}[int(who)%3]
		target := path
		if query != "" {
			target += "?" + query
		}
		var b any
		if body != "" {
			b = body
		}
		statuses := make([]int, len(envs))
		for i, env := range envs {
			r, err := apptest.Send(client, env.Server.URL, m, target, b, token)
			if err != nil {
				return // the client refused to build it
			}
			if r.Status >= 500 {
				t.Fatalf("%s %s on %s: %d %s", m, target, env.Kind, r.Status, r.Body)
			}
			if r.Status >= 400 && m != "HEAD" && r.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%s %s on %s: %d with Content-Type %q: %s", m, target, env.Kind, r.Status, r.Header.Get("Content-Type"), r.Body)
			}
			statuses[i] = r.Status
		}
		for i := range statuses {
			if statuses[i] != statuses[0] {
				t.Fatalf("%s %s: %v on %v: the engines disagree", m, target, statuses, kinds)
			}
		}
	})
}
