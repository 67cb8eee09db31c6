package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
)

// TestConditionalRequests: records carry a strong ETag; If-None-Match
// answers 304, a stale If-Match answers 412 and changes nothing (no row
// change, no event), on both engines.
func TestConditionalRequests(t *testing.T) {
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			env := apptest.Start(t, kind, shopSchema)
			defer env.Stop()
			events := func() int {
				var page struct{ Data []any }
				require.NoError(t, json.Unmarshal(env.Admin("GET", "/v1/_events?limit=1000", nil).Body, &page))
				return len(page.Data)
			}
			r := env.Admin("POST", "/v1/products", map[string]any{"sku": "ABC", "price": 10})
			require.Equal(t, 201, r.Status, "%s", r.Body)
			id, created := r.JSON()["id"].(string), r.Header.Get("ETag")
			require.Regexp(t, `^"[0-9a-f]+"$`, created, "a strong, quoted tag")
			path := "/v1/products/" + id

			r = env.Admin("GET", path, nil)
			require.Equal(t, created, r.Header.Get("ETag"), "GET answers the tag the create gave")
			r = env.Admin("GET", path+"?fields=sku", nil)
			require.Equal(t, created, r.Header.Get("ETag"), "the tag does not depend on the fields shown")

			for _, h := range []string{created, "*", `"nope", ` + created, "W/" + created} {
				r = env.Do("GET", path, nil, apptest.AdminKey, "If-None-Match", h)
				require.Equal(t, http.StatusNotModified, r.Status, "If-None-Match %s", h)
				require.Empty(t, r.Body)
				require.Equal(t, created, r.Header.Get("ETag"))
			}
			r = env.Do("GET", path, nil, apptest.AdminKey, "If-None-Match", `"other"`)
			require.Equal(t, 200, r.Status)

			// A current If-Match applies the write and moves the tag on.
			r = env.Do("PATCH", path, map[string]any{"price": 11}, apptest.AdminKey, "If-Match", created)
			require.Equal(t, 200, r.Status, "%s", r.Body)
			second := r.Header.Get("ETag")
			require.NotEqual(t, created, second)
			require.Equal(t, second, env.Admin("GET", path, nil).Header.Get("ETag"))

			// A stale one changes nothing, on every write method.
			before := events()
			for _, w := range []struct {
				method string
				body   any
			}{{"PATCH", map[string]any{"price": 99}}, {"PUT", map[string]any{"sku": "XYZ", "price": 99}}, {"DELETE", nil}} {
				r = env.Do(w.method, path, w.body, apptest.AdminKey, "If-Match", created)
				require.Equal(t, http.StatusPreconditionFailed, r.Status, "%s: %s", w.method, r.Body)
				require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"))
				require.Contains(t, string(r.Body), "precondition-failed")
			}
			require.Equal(t, before, events(), "a refused write emits nothing")
			r = env.Admin("GET", path, nil)
			require.EqualValues(t, 11, r.JSON()["price"])
			require.Equal(t, second, r.Header.Get("ETag"))

			// An update that changes nothing keeps the tag; "*" matches.
			r = env.Do("PATCH", path, map[string]any{"price": 11}, apptest.AdminKey, "If-Match", "*")
			require.Equal(t, 200, r.Status, "%s", r.Body)
			require.Equal(t, second, r.Header.Get("ETag"))

			// Quick successive writes never repeat a tag.
			seen := map[string]bool{created: true, second: true}
			tag := second
			for i := range 20 {
				r = env.Do("PATCH", path, map[string]any{"stock": i + 1}, apptest.AdminKey, "If-Match", tag)
				require.Equal(t, 200, r.Status, "%s", r.Body)
				tag = r.Header.Get("ETag")
				require.False(t, seen[tag], "tag %s repeated", tag)
				seen[tag] = true
			}

			// include changes the representation and so the tag; that tag
			// is no If-Match for the record itself.
			r = env.Admin("POST", "/v1/customers", map[string]any{"name": "Ada", "email": "ada@example.com"})
			cust := r.JSON()["id"].(string)
			r = env.Admin("POST", "/v1/orders", map[string]any{"customer_id": cust, "product_id": id, "quantity": 1})
			require.Equal(t, 201, r.Status, "%s", r.Body)
			order, orderTag := r.JSON()["id"].(string), r.Header.Get("ETag")
			r = env.Admin("GET", "/v1/orders/"+order+"?include=product_id", nil)
			withInclude := r.Header.Get("ETag")
			require.NotEqual(t, orderTag, withInclude)
			require.Equal(t, http.StatusNotModified, env.Do("GET", "/v1/orders/"+order+"?include=product_id", nil, apptest.AdminKey, "If-None-Match", withInclude).Status)
			require.Equal(t, 200, env.Do("PATCH", path, map[string]any{"price": 12}, apptest.AdminKey).Status)
			require.Equal(t, 200, env.Do("GET", "/v1/orders/"+order+"?include=product_id", nil, apptest.AdminKey, "If-None-Match", withInclude).Status,
				"a change of the included product changes the tag")
			require.Equal(t, http.StatusPreconditionFailed, env.Do("PATCH", "/v1/orders/"+order, map[string]any{"quantity": 2}, apptest.AdminKey, "If-Match", withInclude).Status)

			// A missing record is 404 whatever the precondition.
			require.Equal(t, 404, env.Do("DELETE", "/v1/products/01a23456-0000-7000-8000-00000000dead", nil, apptest.AdminKey, "If-Match", created).Status)

			// The current tag deletes.
			r = env.Do("DELETE", path, nil, apptest.AdminKey, "If-Match", env.Admin("GET", path, nil).Header.Get("ETag"))
			require.Equal(t, 409, r.Status, "restricted by the order: %s", r.Body)
			require.Equal(t, 204, env.Admin("DELETE", "/v1/orders/"+order, nil).Status)
			r = env.Do("DELETE", path, nil, apptest.AdminKey, "If-Match", env.Admin("GET", path, nil).Header.Get("ETag"))
			require.Equal(t, 204, r.Status, "%s", r.Body)
		})
	}
}

// TestHeadAndMediaTypes: HEAD works wherever GET does, with GET's headers
// and no body; a body that is not JSON (or YAML for the import) is 415
// and writes nothing, on both engines.
func TestHeadAndMediaTypes(t *testing.T) {
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			env, id, _ := withProduct(t, kind)
			for _, path := range []string{"/healthz", "/readyz", "/metrics", "/v1/products", "/v1/products/" + id, "/v1/products/" + id + "/history", "/v1/_events", "/v1/_registry", "/v1/_webhooks"} {
				get := env.Admin("GET", path, nil)
				head := env.Admin("HEAD", path, nil)
				require.Equal(t, get.Status, head.Status, "HEAD %s", path)
				require.Equal(t, 200, head.Status, "HEAD %s", path)
				require.Empty(t, head.Body, "HEAD %s has no body", path)
				require.Equal(t, get.Header.Get("Content-Type"), head.Header.Get("Content-Type"), "HEAD %s", path)
				require.Equal(t, get.Header.Get("ETag"), head.Header.Get("ETag"), "HEAD %s", path)
			}
			require.Equal(t, 404, env.Admin("HEAD", "/v1/products/01a23456-0000-7000-8000-00000000dead", nil).Status)

			// HEAD on a stream answers its headers and ends: no frame, and
			// no stream held (more HEADs than the per-caller limit pass).
			for _, path := range []string{"/v1/products/stream", "/v1/_events/stream"} {
				for range 25 {
					r := env.Admin("HEAD", path, nil)
					require.Equal(t, 200, r.Status, "HEAD %s", path)
					require.Equal(t, "text/event-stream", r.Header.Get("Content-Type"))
					require.Empty(t, r.Body)
				}
				// What goes over the wire: the headers, then nothing (an
				// HTTP client drops a HEAD answer's body, so read the socket).
				conn, err := net.Dial("tcp", env.Server.Listener.Addr().String())
				require.NoError(t, err)
				_, err = fmt.Fprintf(conn, "HEAD %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", path, apptest.AdminKey)
				require.NoError(t, err)
				_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				raw, _ := io.ReadAll(conn)
				conn.Close()
				head, rest, _ := strings.Cut(string(raw), "\r\n\r\n")
				require.Contains(t, head, "200 OK")
				require.Empty(t, rest, "HEAD %s sent a body", path)
			}
			require.Equal(t, 400, env.Admin("HEAD", "/v1/products/stream?events=nope", nil).Status, "HEAD checks what GET checks")

			count := func() float64 {
				return env.Admin("GET", "/v1/products?_limit=1", nil).JSON()["meta"].(map[string]any)["total"].(float64)
			}
			before := count()
			for _, tc := range []struct{ method, path, ctype, body string }{
				{"POST", "/v1/products", "text/plain", `{"sku":"DEF","price":1}`},
				{"POST", "/v1/products", "application/x-www-form-urlencoded", `sku=DEF&price=1`},
				{"POST", "/v1/products", "multipart/form-data; boundary=x", "--x--"},
				{"POST", "/v1/products", "not a media type", `{"sku":"DEF","price":1}`},
				{"PATCH", "/v1/products/" + id, "text/plain", `{"price":2}`},
				{"PUT", "/v1/products/" + id, "application/xml", `<price>2</price>`},
				{"POST", "/v1/_webhooks", "text/plain", `{"name":"x","url":"http://example.com","resource":"*"}`},
				{"POST", "/v1/_registry/import", "text/plain", "resources: []\n"},
			} {
				r := env.Do(tc.method, tc.path, tc.body, apptest.AdminKey, "Content-Type", tc.ctype)
				require.Equal(t, http.StatusUnsupportedMediaType, r.Status, "%s %s as %s: %s", tc.method, tc.path, tc.ctype, r.Body)
				require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"))
				require.Contains(t, string(r.Body), "unsupported-media-type")
			}
			require.Equal(t, before, count(), "nothing written")
			require.EqualValues(t, 10, env.Admin("GET", "/v1/products/"+id, nil).JSON()["price"])

			// What is accepted: JSON types, no type at all, YAML for the import.
			for _, ct := range []string{"application/json; charset=utf-8", "application/merge-patch+json", ""} {
				r := env.Do("PATCH", "/v1/products/"+id, `{"price":3}`, apptest.AdminKey, "Content-Type", ct)
				require.Equal(t, 200, r.Status, "PATCH as %q: %s", ct, r.Body)
			}
			schema, _ := strings.CutPrefix(shopSchema, "\n")
			for _, ct := range []string{"application/yaml", "application/x-yaml", "text/yaml", "application/json"} {
				r := env.Do("POST", "/v1/_registry/import?dryRun=true", schema, apptest.AdminKey, "Content-Type", ct)
				require.Equal(t, 200, r.Status, "import as %s: %s", ct, r.Body)
			}
		})
	}
}

// TestNewFieldDefaultFillsRowsOnBothEngines: an import that adds an
// optional field with a default gives the rows that exist that default,
// on SQLite as on PostgreSQL, and their ETags change.
func TestNewFieldDefaultFillsRowsOnBothEngines(t *testing.T) {
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			env, id, tag := withProduct(t, kind)
			schema := strings.Replace(shopSchema, "      - {name: site, type: string, validations: [{rule: url}]}\n",
				"      - {name: site, type: string, validations: [{rule: url}]}\n      - {name: colour, type: string, default: red}\n", 1)
			r := env.Do("POST", "/v1/_registry/import", schema, apptest.AdminKey, "Content-Type", "application/yaml")
			require.Equal(t, 200, r.Status, "%s", r.Body)
			r = env.Admin("GET", "/v1/products/"+id, nil)
			require.Equal(t, "red", r.JSON()["colour"])
			require.NotEqual(t, tag, r.Header.Get("ETag"))
			require.Equal(t, 200, env.Do("GET", "/v1/products/"+id, nil, apptest.AdminKey, "If-None-Match", tag).Status)
		})
	}
}

// withProduct starts Herald on kind with the shop schema and one product
// (price 10), and returns its id and ETag.
func withProduct(t *testing.T, kind database.Kind) (*apptest.Env, string, string) {
	t.Helper()
	env := apptest.Start(t, kind, shopSchema)
	r := env.Admin("POST", "/v1/products", map[string]any{"sku": "ABC", "price": 10})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	return env, r.JSON()["id"].(string), r.Header.Get("ETag")
}
