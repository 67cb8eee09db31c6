package api_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
)

// contractsSchema is SPEC section 2's contracts example with the roles the
// permission scenarios need:
//   - user: reads its own rows (owner_id = sub) limited to title, status and
//     amount; creates with owner_id forced to sub; updates title and status
//     of its own rows; may not delete.
//   - auditor: reads every field of draft and active rows, nothing of
//     customers (so an include of customer_id must expand to null).
//   - sales: reads every contract, and of customers only the name of pro
//     customers (so expansions are projected and filtered).
//   - public: reads pro customers and tickets, nothing of contracts (so
//     an include of a ticket's contract_id must expand to null).
const contractsSchema = `
resources:
  - name: customers
    fields:
      - {name: name, type: string, required: true}
      - {name: tier, type: enum, enumValues: [free, pro], default: free, filterable: true}
  - name: contracts
    fields:
      - {name: title, type: string, required: true, validations: [{rule: minLength, value: 3}]}
      - {name: status, type: enum, enumValues: [draft, active, ended], default: draft, filterable: true}
      - {name: amount, type: number, sortable: true, filterable: true, validations: [{rule: min, value: 0}]}
      - {name: customer_id, type: relation, required: true, relation: {resource: customers, onDelete: cascade}}
      - {name: owner_id, type: uuid, sortable: true, filterable: true}
  - name: tickets
    fields:
      - {name: subject, type: string}
      - {name: contract_id, type: relation, relation: {resource: contracts, onDelete: cascade}}
permissions:
  - {resource: contracts, role: user, action: read, fields: [title, status, amount],
     filters: [{field: owner_id, operator: eq, claim: sub}]}
  - {resource: contracts, role: user, action: create, fields: [title, amount, customer_id, owner_id],
     checks: [{field: owner_id, operator: eq, claim: sub}]}
  - {resource: contracts, role: user, action: update, fields: [title, status],
     filters: [{field: owner_id, operator: eq, claim: sub}]}
  - {resource: contracts, role: auditor, action: read,
     filters: [{field: status, operator: in, value: [draft, active]}]}
  - {resource: contracts, role: sales, action: read}
  # SPEC section 3: a relation value must name a row the caller may read,
  # so users who create contracts for a customer may read customers.
  - {resource: customers, role: user, action: read, fields: [name]}
  - {resource: customers, role: sales, action: read, fields: [name],
     filters: [{field: tier, operator: eq, value: pro}]}
  - {resource: customers, role: public, action: read,
     filters: [{field: tier, operator: eq, value: pro}]}
  - {resource: tickets, role: public, action: read}
`

// The two users of the scenarios. owner_id is a uuid field (as in SPEC), so
// the subs that fill it are UUIDs.
const (
	userU1 = "0190a000-0000-7000-8000-0000000000a1"
	userU2 = "0190a000-0000-7000-8000-0000000000a2"
)

// jwtSecret is the HS256 secret of the test instances (at least 32 bytes).
const jwtSecret = "permissions-test-secret-0123456789abcdef"

var (
	hexSpanID  = regexp.MustCompile(`^[0-9a-f]{16}$`)
	hexTraceID = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// signHS256 signs claims with secret. exp and iat default to a valid hour;
// claims may override them.
func signHS256(t *testing.T, secret string, claims jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	require.NoError(t, err)
	return s
}

// contractsFixture is a running Herald with contractsSchema and seeded rows:
//
//	c1 u1 draft  acme(pro)   10
//	c2 u1 active bolt(free)  20
//	c3 u1 ended  acme        30
//	c4 u2 active acme        40
//	c5 u2 ended  bolt        50
//
// and ticket t1 about c1.
type contractsFixture struct {
	env *apptest.Env
	id  map[string]string // seeded name -> id
}

func startContracts(t *testing.T, kind database.Kind, modify ...func(*app.Config)) *contractsFixture {
	t.Helper()
	withSecret := func(c *app.Config) { c.JWTSecret = jwtSecret }
	env := apptest.Start(t, kind, contractsSchema, append([]func(*app.Config){withSecret}, modify...)...)
	f := &contractsFixture{env: env, id: map[string]string{}}
	for _, c := range []struct{ name, tier string }{{"acme", "pro"}, {"bolt", "free"}} {
		f.id[c.name] = f.create(t, "customers", map[string]any{"name": c.name, "tier": c.tier})
	}
	for _, c := range []struct {
		name, owner, status, customer string
		amount                        int
	}{
		{"c1", userU1, "draft", "acme", 10},
		{"c2", userU1, "active", "bolt", 20},
		{"c3", userU1, "ended", "acme", 30},
		{"c4", userU2, "active", "acme", 40},
		{"c5", userU2, "ended", "bolt", 50},
	} {
		f.id[c.name] = f.create(t, "contracts", map[string]any{"title": "contract " + c.name, "status": c.status,
			"amount": c.amount, "customer_id": f.id[c.customer], "owner_id": c.owner})
	}
	f.id["t1"] = f.create(t, "tickets", map[string]any{"subject": "help", "contract_id": f.id["c1"]})
	return f
}

// create makes a record as admin and returns its id.
func (f *contractsFixture) create(t *testing.T, resource string, body map[string]any) string {
	t.Helper()
	r := f.env.Admin(http.MethodPost, "/v1/"+resource, body)
	require.Equal(t, http.StatusCreated, r.Status, "seed %s: %s", resource, r.Body)
	return r.JSON()["id"].(string)
}

// ids maps seeded names to their ids.
func (f *contractsFixture) ids(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = f.id[n]
	}
	return out
}

// adminGet reads a record as admin (every field).
func (f *contractsFixture) adminGet(t *testing.T, resource, id string) map[string]any {
	t.Helper()
	r := f.env.Admin(http.MethodGet, "/v1/"+resource+"/"+id, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	return r.JSON()
}

// counts returns how many contracts exist and how many contracts events
// were recorded, as the admin sees them.
func (f *contractsFixture) counts(t *testing.T) (rows, evts int) {
	t.Helper()
	r := f.env.Admin(http.MethodGet, "/v1/contracts?_limit=1", nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	rows = int(r.JSON()["meta"].(map[string]any)["total"].(float64))
	e := f.env.Admin(http.MethodGet, "/v1/_events?resource=contracts&limit=1000", nil)
	require.Equal(t, http.StatusOK, e.Status, "%s", e.Body)
	return rows, len(e.JSON()["data"].([]any))
}

// permEvents returns the audit log entries matching query (admin).
func permEvents(t *testing.T, env *apptest.Env, query string) []map[string]any {
	t.Helper()
	r := env.Admin(http.MethodGet, "/v1/_events?"+query, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var page struct {
		Data []map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &page))
	return page.Data
}

// permOnlyEvent returns the single event matching query.
func permOnlyEvent(t *testing.T, env *apptest.Env, query string) map[string]any {
	t.Helper()
	evs := permEvents(t, env, query)
	require.Len(t, evs, 1, "events for %s", query)
	return evs[0]
}

func permListData(t *testing.T, r *apptest.Response) []map[string]any {
	t.Helper()
	var page struct {
		Data []map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &page), "%s", r.Body)
	return page.Data
}

func permRowIDs(rows []map[string]any) []string {
	out := make([]string, len(rows))
	for i, row := range rows {
		out[i], _ = row["id"].(string)
	}
	return out
}

func permSortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// permProblemFields are the fields a problem document's errors name.
func permProblemFields(t *testing.T, r *apptest.Response) []string {
	t.Helper()
	var p struct {
		Errors []struct {
			Field string `json:"field"`
		} `json:"errors"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &p), "%s", r.Body)
	var out []string
	for _, e := range p.Errors {
		out = append(out, e.Field)
	}
	return out
}

// permCase is one request of the permission table and everything it must
// (and must not) do.
type permCase struct {
	name         string
	token        string // "" sends no Authorization
	method, path string
	body         any
	status       int
	// ids, when not nil, are the exact records a list answers (any order);
	// meta.total must count exactly them.
	ids []string
	// keys, when not nil, are the exact keys of every returned record
	// (the list's rows, or the single record).
	keys []string
	// forbidden are the fields a 403 must name.
	forbidden []string
	// rows and events are the changes in the number of contracts and of
	// contracts events; zero unless the request is meant to write.
	rows, events int
	check        func(t *testing.T, r *apptest.Response)
	// skip, when set, is a known bug ("BUG: ...") that keeps the case
	// from running until it is fixed.
	skip string
}

var (
	permUserReadKeys = []string{"amount", "created_at", "id", "status", "title", "updated_at"}
	permAllKeys      = []string{"amount", "created_at", "customer_id", "id", "owner_id", "status", "title", "updated_at"}
)

func permissionCases(t *testing.T, f *contractsFixture) []permCase {
	tok := func(claims jwt.MapClaims) string { return signHS256(t, jwtSecret, claims) }
	u1 := tok(jwt.MapClaims{"sub": userU1, "role": "user"})
	u2 := tok(jwt.MapClaims{"sub": userU2, "role": "user"})
	auditor := tok(jwt.MapClaims{"sub": "auditor-1", "role": "auditor"})
	sales := tok(jwt.MapClaims{"sub": "sales-1", "role": "sales"})
	expired := tok(jwt.MapClaims{"sub": userU1, "role": "user",
		"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()})
	wrongSecret := signHS256(t, "another-secret-that-is-long-enough-0123456789", jwt.MapClaims{"sub": userU1, "role": "user"})
	claimsAdmin := tok(jwt.MapClaims{"sub": userU1, "role": "admin"})
	unsigned, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": userU1, "role": "user",
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)

	id := f.id
	unchanged := func(name, field string, want any) func(t *testing.T, r *apptest.Response) {
		return func(t *testing.T, _ *apptest.Response) {
			require.Equal(t, want, f.adminGet(t, "contracts", id[name])[field], "%s.%s must be unchanged", name, field)
		}
	}
	unauthorized := func(t *testing.T, r *apptest.Response) {
		require.Equal(t, `Bearer realm="herald"`, r.Header.Get("WWW-Authenticate"))
	}
	first := func(r *apptest.Response) map[string]any { return permListData(t, r)[0] }

	return []permCase{
		// user u1: own rows only, projected.
		{name: "user lists only own rows", token: u1, method: "GET", path: "/v1/contracts", status: 200,
			ids: f.ids("c1", "c2", "c3"), keys: permUserReadKeys},
		{name: "user filter on readable field keeps the row filter", token: u1, method: "GET", path: "/v1/contracts?status=active",
			status: 200, ids: f.ids("c2"), keys: permUserReadKeys},
		{name: "user amount filter cannot reach others' rows", token: u1, method: "GET", path: "/v1/contracts?amount__gte=40",
			status: 200, ids: []string{}},
		{name: "user fields param projects within readable", token: u1, method: "GET", path: "/v1/contracts?fields=id,title,amount",
			status: 200, ids: f.ids("c1", "c2", "c3"), keys: []string{"amount", "id", "title"}},
		{name: "user fields=owner_id", token: u1, method: "GET", path: "/v1/contracts?fields=owner_id",
			status: 403, forbidden: []string{"owner_id"}},
		{name: "user filter on hidden owner_id", token: u1, method: "GET", path: "/v1/contracts?owner_id=" + userU2,
			status: 403, forbidden: []string{"owner_id"}},
		{name: "user filter on hidden relation", token: u1, method: "GET", path: "/v1/contracts?customer_id=" + id["acme"],
			status: 403, forbidden: []string{"customer_id"}},
		{name: "user sort on hidden sortable owner_id", token: u1, method: "GET", path: "/v1/contracts?_sort=-owner_id",
			status: 403, forbidden: []string{"owner_id"}},
		{name: "user sort on readable amount", token: u1, method: "GET", path: "/v1/contracts?_sort=-amount", status: 200,
			ids: f.ids("c1", "c2", "c3"), check: func(t *testing.T, r *apptest.Response) {
				require.Equal(t, f.ids("c3", "c2", "c1"), permRowIDs(permListData(t, r)))
			}},
		{name: "user include of hidden relation", token: u1, method: "GET", path: "/v1/contracts?include=customer_id",
			status: 403, forbidden: []string{"customer_id"}},
		{name: "user gets own row projected", token: u1, method: "GET", path: "/v1/contracts/" + id["c1"], status: 200,
			keys: permUserReadKeys, check: func(t *testing.T, r *apptest.Response) {
				require.Equal(t, map[string]any{"id": id["c1"], "title": "contract c1", "status": "draft", "amount": 10.0,
					"created_at": r.JSON()["created_at"], "updated_at": r.JSON()["updated_at"]}, r.JSON())
			}},
		{name: "user get fields=owner_id", token: u1, method: "GET", path: "/v1/contracts/" + id["c1"] + "?fields=owner_id",
			status: 403, forbidden: []string{"owner_id"}},
		{name: "user gets other's row", token: u1, method: "GET", path: "/v1/contracts/" + id["c4"], status: 404},
		{name: "user history of other's row", token: u1, method: "GET", path: "/v1/contracts/" + id["c4"] + "/history", status: 404},
		{name: "user history of own row is projected", token: u1, method: "GET", path: "/v1/contracts/" + id["c1"] + "/history",
			status: 200, check: func(t *testing.T, r *apptest.Response) {
				evs := permListData(t, r)
				require.Len(t, evs, 1)
				data := evs[0]["data"].(map[string]any)
				require.Equal(t, permUserReadKeys, permSortedKeys(data["new"].(map[string]any)))
				require.NotContains(t, string(r.Body), userU1, "owner_id leaked through history")
			}},
		{name: "u2 lists only own rows", token: u2, method: "GET", path: "/v1/contracts", status: 200,
			ids: f.ids("c4", "c5"), keys: permUserReadKeys},

		// auditor: row filter with "in" and a literal value, no field limit.
		{name: "auditor sees draft and active rows", token: auditor, method: "GET", path: "/v1/contracts", status: 200,
			ids: f.ids("c1", "c2", "c4"), keys: permAllKeys},
		{name: "auditor filter cannot widen", token: auditor, method: "GET", path: "/v1/contracts?status=ended", status: 200,
			ids: []string{}},
		{name: "auditor may filter on owner_id", token: auditor, method: "GET", path: "/v1/contracts?owner_id=" + userU2,
			status: 200, ids: f.ids("c4")},
		{name: "auditor gets ended row", token: auditor, method: "GET", path: "/v1/contracts/" + id["c3"], status: 404},
		{name: "auditor include without customers permission", token: auditor, method: "GET",
			path: "/v1/contracts?include=customer_id", status: 200, ids: f.ids("c1", "c2", "c4"),
			check: func(t *testing.T, r *apptest.Response) {
				for _, row := range permListData(t, r) {
					require.NotEmpty(t, row["customer_id"])
					require.Equal(t, map[string]any{"customer_id": nil}, row["expand"], "customer leaked to auditor")
				}
				require.NotContains(t, string(r.Body), `"acme"`)
			}},
		{name: "auditor lists customers", token: auditor, method: "GET", path: "/v1/customers", status: 403},
		{name: "auditor creates", token: auditor, method: "POST", path: "/v1/contracts", status: 403,
			body: map[string]any{"title": "nope", "customer_id": id["acme"]}},

		// sales: include is projected and row-filtered on the target.
		{name: "sales include is projected and filtered", token: sales, method: "GET",
			path: "/v1/contracts?include=customer_id&status=active", status: 200, ids: f.ids("c2", "c4"),
			check: func(t *testing.T, r *apptest.Response) {
				for _, row := range permListData(t, r) {
					ex := row["expand"].(map[string]any)["customer_id"]
					if row["id"] == id["c2"] { // bolt is free: hidden from sales
						require.Nil(t, ex, "hidden customer leaked through include")
						continue
					}
					require.Equal(t, []string{"created_at", "id", "name", "updated_at"}, permSortedKeys(ex.(map[string]any)))
					require.Equal(t, "acme", ex.(map[string]any)["name"])
				}
			}},

		// public: customers per its literal filter, contracts need credentials.
		{name: "public lists pro customers", method: "GET", path: "/v1/customers", status: 200, ids: f.ids("acme")},
		{name: "public gets free customer", method: "GET", path: "/v1/customers/" + id["bolt"], status: 404},
		{name: "public include of a resource it may not read", method: "GET", path: "/v1/tickets?include=contract_id",
			status: 200, ids: f.ids("t1"), check: func(t *testing.T, r *apptest.Response) {
				require.Equal(t, map[string]any{"contract_id": nil}, permListData(t, r)[0]["expand"], "contract leaked to public")
			}},
		{name: "public lists contracts", method: "GET", path: "/v1/contracts", status: 401, check: unauthorized},
		{name: "public gets contract", method: "GET", path: "/v1/contracts/" + id["c1"], status: 401, check: unauthorized},
		{name: "public creates contract", method: "POST", path: "/v1/contracts", status: 401,
			body: map[string]any{"title": "anon", "customer_id": id["acme"]}},

		// the admin API.
		{name: "user reads the audit log", token: u1, method: "GET", path: "/v1/_events", status: 403},
		{name: "public reads the audit log", method: "GET", path: "/v1/_events", status: 401, check: unauthorized},
		{name: "user exports the registry", token: u1, method: "GET", path: "/v1/_registry", status: 403},

		// bad credentials.
		{name: "expired token", token: expired, method: "GET", path: "/v1/contracts", status: 401, check: unauthorized},
		{name: "wrong secret", token: wrongSecret, method: "GET", path: "/v1/contracts", status: 401, check: unauthorized},
		{name: "malformed token", token: "not.a.jwt", method: "GET", path: "/v1/contracts", status: 401},
		{name: "alg none", token: unsigned, method: "GET", path: "/v1/contracts", status: 401},
		{name: "token claiming admin", token: claimsAdmin, method: "GET", path: "/v1/_events", status: 401},
		{name: "bad credentials on a public resource", token: "garbage", method: "GET", path: "/v1/customers", status: 401},

		// writes.
		{name: "user patches other's row", token: u1, method: "PATCH", path: "/v1/contracts/" + id["c4"],
			body: map[string]any{"title": "hijacked"}, status: 404, check: unchanged("c4", "title", "contract c4")},
		{name: "user puts other's row", token: u1, method: "PUT", path: "/v1/contracts/" + id["c4"],
			body: map[string]any{"title": "hijacked", "status": "ended"}, status: 404, check: unchanged("c4", "status", "active")},
		{name: "user patches own row", token: u1, method: "PATCH", path: "/v1/contracts/" + id["c1"],
			body: map[string]any{"title": "renamed c1", "status": "active"}, status: 200, events: 1, keys: permUserReadKeys,
			check: func(t *testing.T, r *apptest.Response) {
				require.Equal(t, "renamed c1", r.JSON()["title"])
				require.Equal(t, "active", f.adminGet(t, "contracts", id["c1"])["status"])
			}},
		{name: "user patches amount (not an update field)", token: u1, method: "PATCH", path: "/v1/contracts/" + id["c1"],
			body: map[string]any{"amount": 99}, status: 403, forbidden: []string{"amount"}, check: unchanged("c1", "amount", 10.0)},
		{name: "user patches owner_id", token: u1, method: "PATCH", path: "/v1/contracts/" + id["c1"],
			body: map[string]any{"owner_id": userU2}, status: 403, forbidden: []string{"owner_id"}, check: unchanged("c1", "owner_id", userU1)},
		{name: "user creates without owner_id", token: u1, method: "POST", path: "/v1/contracts",
			body: map[string]any{"title": "new by u1", "amount": 5, "customer_id": id["acme"]}, status: 201, rows: 1, events: 1,
			keys: permUserReadKeys, check: func(t *testing.T, r *apptest.Response) {
				newID := r.JSON()["id"].(string)
				require.Equal(t, "/v1/contracts/"+newID, r.Header.Get("Location"))
				require.Equal(t, userU1, f.adminGet(t, "contracts", newID)["owner_id"], "owner_id not filled from sub")
			}},
		{name: "user creates with own owner_id", token: u1, method: "POST", path: "/v1/contracts",
			body: map[string]any{"title": "explicit u1", "customer_id": id["bolt"], "owner_id": userU1}, status: 201, rows: 1, events: 1},
		{name: "user creates for another owner", token: u1, method: "POST", path: "/v1/contracts",
			body:   map[string]any{"title": "for u2", "amount": 5, "customer_id": id["acme"], "owner_id": userU2},
			status: 403, forbidden: []string{"owner_id"}},
		{name: "user bulk create with one foreign owner", token: u1, method: "POST", path: "/v1/contracts",
			body: []any{map[string]any{"title": "mine", "customer_id": id["acme"]},
				map[string]any{"title": "theirs", "customer_id": id["acme"], "owner_id": userU2}},
			status: 403, forbidden: []string{"owner_id"}},
		{name: "user creates with status (not a create field)", token: u1, method: "POST", path: "/v1/contracts",
			body: map[string]any{"title": "active one", "status": "active", "customer_id": id["acme"]}, status: 403, forbidden: []string{"status"}},
		{name: "user deletes own row", token: u1, method: "DELETE", path: "/v1/contracts/" + id["c2"], status: 403,
			check: unchanged("c2", "title", "contract c2")},
		{name: "user deletes other's row", token: u1, method: "DELETE", path: "/v1/contracts/" + id["c4"], status: 403,
			check: unchanged("c4", "title", "contract c4")},
		{name: "user filter on a non-filterable field", token: u1, method: "GET", path: "/v1/contracts?title__eq=x", status: 400},
		{name: "u1 total counts the rows it created", token: u1, method: "GET", path: "/v1/contracts?_limit=2", status: 200,
			check: func(t *testing.T, r *apptest.Response) {
				require.Equal(t, 5.0, r.JSON()["meta"].(map[string]any)["total"])
				require.Len(t, permListData(t, r), 2)
				require.NotNil(t, r.JSON()["meta"].(map[string]any)["next"])
			}},
		{name: "u2 still sees only its rows", token: u2, method: "GET", path: "/v1/contracts?fields=id,title", status: 200,
			ids: f.ids("c4", "c5"), keys: []string{"id", "title"}, check: func(t *testing.T, r *apptest.Response) {
				require.Equal(t, "contract c4", first(r)["title"])
			}},
	}
}

func TestPermissions(t *testing.T) {
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			f := startContracts(t, kind)
			for _, tc := range permissionCases(t, f) {
				t.Run(tc.name, func(t *testing.T) {
					if tc.skip != "" {
						t.Skip(tc.skip)
					}
					rows0, events0 := f.counts(t)
					r := f.env.Do(tc.method, tc.path, tc.body, tc.token)
					require.Equal(t, tc.status, r.Status, "%s %s: %s", tc.method, tc.path, r.Body)
					if r.Status >= 400 {
						require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"))
					}
					if tc.forbidden != nil {
						require.Subset(t, permProblemFields(t, r), tc.forbidden, "the 403 must name the field: %s", r.Body)
					}
					if tc.ids != nil {
						data := permListData(t, r)
						require.ElementsMatch(t, tc.ids, permRowIDs(data), "%s", r.Body)
						require.Equal(t, float64(len(tc.ids)), r.JSON()["meta"].(map[string]any)["total"], "total must count only visible rows")
						for _, row := range data {
							if tc.keys != nil {
								require.Equal(t, tc.keys, permSortedKeys(permWithoutExpand(row)))
							}
						}
					} else if tc.keys != nil {
						require.Equal(t, tc.keys, permSortedKeys(r.JSON()))
					}
					if tc.check != nil {
						tc.check(t, r)
					}
					rows1, events1 := f.counts(t)
					require.Equal(t, tc.rows, rows1-rows0, "contracts created or deleted")
					require.Equal(t, tc.events, events1-events0, "contracts events recorded")
				})
			}

			t.Run("cursor paging walks only own rows", func(t *testing.T) {
				u1 := signHS256(t, jwtSecret, jwt.MapClaims{"sub": userU1, "role": "user"})
				u2 := signHS256(t, jwtSecret, jwt.MapClaims{"sub": userU2, "role": "user"})
				own := permListData(t, f.env.Admin("GET", "/v1/contracts?_limit=1000&owner_id="+userU1, nil))
				require.Len(t, own, 5)
				for _, sort := range []string{"", "-amount", "amount"} {
					var seen []string
					var firstCursor string
					path := "/v1/contracts?_limit=1&_sort=" + sort
					for i := 0; ; i++ {
						require.Less(t, i, 10, "paging does not end")
						r := f.env.Do("GET", path, nil, u1)
						require.Equal(t, 200, r.Status, "%s", r.Body)
						data := permListData(t, r)
						require.Len(t, data, 1)
						seen = append(seen, data[0]["id"].(string))
						meta := r.JSON()["meta"].(map[string]any)
						require.Equal(t, 5.0, meta["total"])
						next, _ := meta["next"].(string)
						if next == "" {
							break
						}
						if firstCursor == "" {
							firstCursor = next
						}
						path = "/v1/contracts?_limit=1&_sort=" + sort + "&_after=" + url.QueryEscape(next)
					}
					require.ElementsMatch(t, permRowIDs(own), seen, "sort %q", sort)
					// A cursor handed to another user still only walks that
					// user's rows.
					r := f.env.Do("GET", "/v1/contracts?_limit=100&_sort="+sort+"&_after="+url.QueryEscape(firstCursor), nil, u2)
					require.Equal(t, 200, r.Status, "%s", r.Body)
					for _, row := range permListData(t, r) {
						require.Contains(t, f.ids("c4", "c5"), row["id"])
					}
					require.Equal(t, 2.0, r.JSON()["meta"].(map[string]any)["total"])
				}
			})
		})
	}
}

func permWithoutExpand(row map[string]any) map[string]any {
	out := make(map[string]any, len(row))
	for k, v := range row {
		if k != "expand" {
			out[k] = v
		}
	}
	return out
}

// TestPermissionsRoleClaimPath runs with HERALD_JWT_ROLE_CLAIM at a dotted
// path: the role comes from app_metadata.role, a top-level role is ignored,
// and a nested admin role is refused.
func TestPermissionsRoleClaimPath(t *testing.T) {
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			f := startContracts(t, kind, func(c *app.Config) { c.JWTRoleClaim = "app_metadata.role" })
			tok := func(claims jwt.MapClaims) string { return signHS256(t, jwtSecret, claims) }
			cases := []struct {
				name   string
				token  string
				status int
				ids    []string
			}{
				{"nested auditor role", tok(jwt.MapClaims{"sub": "a-1", "app_metadata": map[string]any{"role": "auditor"}}),
					200, f.ids("c1", "c2", "c4")},
				{"nested user role", tok(jwt.MapClaims{"sub": userU2, "app_metadata": map[string]any{"role": "user"}}),
					200, f.ids("c4", "c5")},
				{"top-level role is not the role claim", tok(jwt.MapClaims{"sub": userU1, "role": "auditor"}),
					200, f.ids("c1", "c2", "c3")}, // the default role, user
				{"nested admin refused", tok(jwt.MapClaims{"sub": userU1, "app_metadata": map[string]any{"role": "admin"}}), 401, nil},
				{"nested role of unknown permissions", tok(jwt.MapClaims{"sub": userU1, "app_metadata": map[string]any{"role": "guest"}}), 403, nil},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					r := f.env.Do("GET", "/v1/contracts", nil, tc.token)
					require.Equal(t, tc.status, r.Status, "%s", r.Body)
					if tc.ids != nil {
						require.ElementsMatch(t, tc.ids, permRowIDs(permListData(t, r)))
					}
				})
			}
		})
	}
}

const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestSessionVariablesAndTraceContext checks what an event records about
// the request that caused it.
func TestSessionVariablesAndTraceContext(t *testing.T) {
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			f := startContracts(t, kind, func(c *app.Config) { c.SessionClaims = []string{"org"} })
			withOrg := signHS256(t, jwtSecret, jwt.MapClaims{"sub": userU1, "role": "user", "org": "acme"})
			noOrg := signHS256(t, jwtSecret, jwt.MapClaims{"sub": userU1, "role": "user"})
			create := func(t *testing.T, token string, headers ...string) (*apptest.Response, map[string]any) {
				t.Helper()
				r := f.env.Do("POST", "/v1/contracts", map[string]any{"title": "traced", "customer_id": f.id["acme"]}, token, headers...)
				require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
				ev := permOnlyEvent(t, f.env, "type=contracts.created&resourceId="+r.JSON()["id"].(string))
				return r, ev
			}

			t.Run("headers and claims are recorded", func(t *testing.T) {
				r, ev := create(t, withOrg, "X-Request-ID", "r-1", "X-Correlation-ID", "c-1",
					"traceparent", traceParent, "User-Agent", "test-agent")
				require.Equal(t, "r-1", r.Header.Get("X-Request-ID"))
				require.Equal(t, "c-1", r.Header.Get("X-Correlation-ID"))
				require.Equal(t, map[string]any{"userId": userU1, "role": "user", "ip": "127.0.0.1",
					"userAgent": "test-agent", "org": "acme"}, ev["sessionVariables"])
				tc := ev["traceContext"].(map[string]any)
				require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", tc["traceId"])
				require.Equal(t, "00f067aa0ba902b7", tc["parentSpanId"])
				require.Regexp(t, hexSpanID, tc["spanId"])
				require.NotEqual(t, "0000000000000000", tc["spanId"])
				require.NotEqual(t, tc["parentSpanId"], tc["spanId"], "the request's own span, not the caller's")
				require.Equal(t, "r-1", tc["requestId"])
				require.Equal(t, "c-1", tc["correlationId"])
			})

			t.Run("defaults without headers", func(t *testing.T) {
				r, ev := create(t, noOrg)
				reqID := r.Header.Get("X-Request-ID")
				require.NotEmpty(t, reqID, "a request id is generated and echoed")
				require.Equal(t, reqID, r.Header.Get("X-Correlation-ID"))
				sv := ev["sessionVariables"].(map[string]any)
				require.NotContains(t, sv, "org", "a claim the token lacks is not a session variable")
				require.Equal(t, userU1, sv["userId"])
				tc := ev["traceContext"].(map[string]any)
				require.Equal(t, reqID, tc["requestId"])
				require.Equal(t, reqID, tc["correlationId"], "correlation id defaults to the request id")
				require.Regexp(t, hexTraceID, tc["traceId"])
				require.NotEqual(t, strings.Repeat("0", 32), tc["traceId"])
				require.NotEqual(t, "4bf92f3577b34da6a3ce929d0e0e4736", tc["traceId"], "a fresh trace")
				require.Regexp(t, hexSpanID, tc["spanId"])
				require.Empty(t, tc["parentSpanId"])

				// Each request gets its own ids.
				r2, ev2 := create(t, noOrg)
				require.NotEqual(t, reqID, r2.Header.Get("X-Request-ID"))
				tc2 := ev2["traceContext"].(map[string]any)
				require.NotEqual(t, tc["traceId"], tc2["traceId"])
			})

			t.Run("unsafe request id is replaced", func(t *testing.T) {
				long := strings.Repeat("x", 500)
				r, ev := create(t, noOrg, "X-Request-ID", long)
				reqID := r.Header.Get("X-Request-ID")
				require.NotEqual(t, long, reqID)
				require.NotEmpty(t, reqID)
				require.Equal(t, reqID, ev["traceContext"].(map[string]any)["requestId"])
			})
		})
	}
}

// TestTrustedProxies checks that the recorded ip is the peer unless the peer
// is a trusted proxy.
func TestTrustedProxies(t *testing.T) {
	const schema = `
resources:
  - name: notes
    fields:
      - {name: body, type: string}
`
	cases := []struct {
		name    string
		trusted bool
		headers []string
		wantIP  string
	}{
		{"no proxy headers", false, nil, "127.0.0.1"},
		{"X-Forwarded-For from an untrusted peer", false, []string{"X-Forwarded-For", "203.0.113.9"}, "127.0.0.1"},
		{"X-Real-IP from an untrusted peer", false, []string{"X-Real-IP", "203.0.113.9"}, "127.0.0.1"},
		{"trusted peer without headers", true, nil, "127.0.0.1"},
		{"X-Forwarded-For from a trusted peer", true, []string{"X-Forwarded-For", "203.0.113.9"}, "203.0.113.9"},
		{"X-Real-IP from a trusted peer", true, []string{"X-Real-IP", "203.0.113.9"}, "203.0.113.9"},
		{"spoofed left-most X-Forwarded-For entry", true, []string{"X-Forwarded-For", "198.51.100.7, 203.0.113.9"}, "203.0.113.9"},
	}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			envs := map[bool]*apptest.Env{
				false: apptest.Start(t, kind, schema),
				true: apptest.Start(t, kind, schema, func(c *app.Config) {
					c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
				}),
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					env := envs[tc.trusted]
					r := env.Do("POST", "/v1/notes", map[string]any{"body": tc.name}, apptest.AdminKey, tc.headers...)
					require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
					ev := permOnlyEvent(t, env, "resourceId="+r.JSON()["id"].(string))
					require.Equal(t, tc.wantIP, ev["sessionVariables"].(map[string]any)["ip"])
				})
			}
		})
	}
}

// jwksServer publishes the public half of the current signing key.
type jwksServer struct {
	*httptest.Server
	body    atomic.Pointer[[]byte]
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

// publish makes keys (kid -> key) the served set.
func (s *jwksServer) publish(t *testing.T, keys map[string]*rsa.PrivateKey) {
	b64 := base64.RawURLEncoding.EncodeToString
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for kid, k := range keys {
		set.Keys = append(set.Keys, map[string]string{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
			"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
	}
	raw, err := json.Marshal(set)
	require.NoError(t, err)
	s.body.Store(&raw)
}

func signRS256(t *testing.T, key *rsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

// TestJWKS runs Herald against a JWKS endpoint and rotates its key.
func TestJWKS(t *testing.T) {
	newKey := func(t *testing.T) *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		return k
	}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			k1, k2, stranger := newKey(t), newKey(t), newKey(t)
			jwks := newJWKSServer(t)
			jwks.publish(t, map[string]*rsa.PrivateKey{"k1": k1})
			f := startContracts(t, kind, func(c *app.Config) { c.JWTSecret = ""; c.JWKSURL = jwks.URL })
			list := func(token string) *apptest.Response { return f.env.Do("GET", "/v1/contracts", nil, token) }

			// Herald fetches the set in the background at start; wait for
			// that so the first token does not spend the forced refresh.
			require.Eventually(t, func() bool { return jwks.fetches.Load() > 0 }, 10*time.Second, 10*time.Millisecond)

			t.Run("k1 token with role from claim", func(t *testing.T) {
				r := list(signRS256(t, k1, "k1", jwt.MapClaims{"sub": "a-1", "role": "auditor"}))
				require.Equal(t, 200, r.Status, "%s", r.Body)
				require.ElementsMatch(t, f.ids("c1", "c2", "c4"), permRowIDs(permListData(t, r)))
				r = list(signRS256(t, k1, "k1", jwt.MapClaims{"sub": userU2, "role": "user"}))
				require.Equal(t, 200, r.Status, "%s", r.Body)
				require.ElementsMatch(t, f.ids("c4", "c5"), permRowIDs(permListData(t, r)))
			})
			t.Run("HS256 is not accepted without a secret", func(t *testing.T) {
				r := list(signHS256(t, jwtSecret, jwt.MapClaims{"sub": userU1, "role": "user"}))
				require.Equal(t, 401, r.Status, "%s", r.Body)
			})
			t.Run("k1 kid signed by another key", func(t *testing.T) {
				r := list(signRS256(t, stranger, "k1", jwt.MapClaims{"sub": userU1, "role": "user"}))
				require.Equal(t, 401, r.Status, "%s", r.Body)
			})
			t.Run("rotation to k2 without restart", func(t *testing.T) {
				jwks.publish(t, map[string]*rsa.PrivateKey{"k2": k2})
				k2Token := signRS256(t, k2, "k2", jwt.MapClaims{"sub": userU1, "role": "user"})
				// Unknown kids refresh the set at most every 10s; should a
				// refresh have just happened, the next one is due soon.
				var r *apptest.Response
				require.Eventually(t, func() bool {
					r = list(k2Token)
					return r.Status == 200
				}, 20*time.Second, 250*time.Millisecond, "k2 token never accepted")
				require.ElementsMatch(t, f.ids("c1", "c2", "c3"), permRowIDs(permListData(t, r)))
			})
			t.Run("unknown key", func(t *testing.T) {
				r := list(signRS256(t, stranger, "k9", jwt.MapClaims{"sub": userU1, "role": "user"}))
				require.Equal(t, 401, r.Status, "%s", r.Body)
			})
			t.Run("JWKS outage is not an invalid token", func(t *testing.T) {
				down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					http.Error(w, "down", http.StatusInternalServerError)
				}))
				t.Cleanup(down.Close)
				env := apptest.Start(t, kind, contractsSchema, func(c *app.Config) { c.JWKSURL = down.URL })
				r := env.Do("GET", "/v1/contracts", nil, signRS256(t, k1, "k1", jwt.MapClaims{"sub": userU1, "role": "user"}))
				require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
			})
			t.Run("expired k2 token", func(t *testing.T) {
				r := list(signRS256(t, k2, "k2", jwt.MapClaims{"sub": userU1, "role": "user",
					"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()}))
				require.Equal(t, 401, r.Status, "%s", r.Body)
			})
		})
	}
}

// TestCORS checks preflights and simple requests against
// HERALD_CORS_ORIGINS.
func TestCORS(t *testing.T) {
	const (
		allowed = "https://app.example"
		record  = "/v1/customers/0190a000-0000-7000-8000-000000000000"
	)
	cases := []struct {
		name, method, path, origin string
		headers                    []string
		status                     int
		allowOrigin                string // "" means the header must be absent
		allowMethod                string // for preflights: a method Access-Control-Allow-Methods must list
	}{
		{"preflight from the allowed origin", "OPTIONS", record, allowed,
			[]string{"Access-Control-Request-Method", "PATCH", "Access-Control-Request-Headers", "authorization,content-type"}, 204, allowed, "PATCH"},
		{"preflight of a collection", "OPTIONS", "/v1/customers", allowed,
			[]string{"Access-Control-Request-Method", "POST"}, 204, allowed, "POST"},
		{"preflight from another origin", "OPTIONS", record, "https://evil.example",
			[]string{"Access-Control-Request-Method", "PATCH"}, 204, "", ""},
		{"simple request from the allowed origin", "GET", "/v1/customers", allowed, nil, 200, allowed, ""},
		{"simple request from another origin", "GET", "/v1/customers", "https://evil.example", nil, 200, "", ""},
	}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			f := startContracts(t, kind, func(c *app.Config) { c.CORSOrigins = []string{allowed} })
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					// No credentials: a preflight never carries them (and
					// must not be answered 401), and public may list
					// customers.
					r := f.env.Do(tc.method, tc.path, nil, "", append([]string{"Origin", tc.origin}, tc.headers...)...)
					require.Equal(t, tc.status, r.Status, "%s", r.Body)
					if tc.allowOrigin == "" {
						require.Empty(t, r.Header.Get("Access-Control-Allow-Origin"))
						return
					}
					require.Equal(t, tc.allowOrigin, r.Header.Get("Access-Control-Allow-Origin"))
					if tc.method == "OPTIONS" {
						require.Contains(t, r.Header.Get("Access-Control-Allow-Methods"), tc.allowMethod)
						require.Contains(t, strings.ToLower(r.Header.Get("Access-Control-Allow-Headers")), "authorization")
					} else {
						require.Contains(t, strings.ToLower(r.Header.Get("Access-Control-Expose-Headers")), "x-request-id")
					}
				})
			}
		})
	}
}

// TestPermissionsReplace checks full replaces (PUT) by roles with limited
// write fields and with update checks.
func TestPermissionsReplace(t *testing.T) {
	const schema = `
resources:
  - name: notes
    fields:
      - {name: body, type: string}
      - {name: amount, type: number}
      - {name: owner_id, type: uuid}
permissions:
  - {resource: notes, role: user, action: read, filters: [{field: owner_id, operator: eq, claim: sub}]}
  - {resource: notes, role: user, action: update, fields: [body], filters: [{field: owner_id, operator: eq, claim: sub}]}
  - {resource: notes, role: editor, action: read, filters: [{field: owner_id, operator: eq, claim: sub}]}
  - {resource: notes, role: editor, action: update, fields: [body, amount, owner_id],
     filters: [{field: owner_id, operator: eq, claim: sub}], checks: [{field: owner_id, operator: eq, claim: sub}]}
`
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, schema, func(c *app.Config) { c.JWTSecret = jwtSecret })
			note := func(t *testing.T) string {
				r := env.Admin("POST", "/v1/notes", map[string]any{"body": "old", "amount": 7, "owner_id": userU1})
				require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
				return r.JSON()["id"].(string)
			}

			t.Run("PUT keeps the fields the role may not write", func(t *testing.T) {
				id := note(t)
				u1 := signHS256(t, jwtSecret, jwt.MapClaims{"sub": userU1, "role": "user"})
				r := env.Do("PUT", "/v1/notes/"+id, map[string]any{"body": "new"}, u1)
				// Either refusing (403, the replace would reset amount and
				// owner_id) or keeping them is acceptable; resetting is not.
				require.Contains(t, []int{http.StatusOK, http.StatusForbidden}, r.Status, "%s", r.Body)
				got := env.Admin("GET", "/v1/notes/"+id, nil).JSON()
				require.Equal(t, 7.0, got["amount"], "PUT reset a field the role may not write")
				require.Equal(t, userU1, got["owner_id"], "PUT moved the row out of its owner's reach")
			})

			t.Run("PUT fills a checked field when absent", func(t *testing.T) {
				id := note(t)
				editor := signHS256(t, jwtSecret, jwt.MapClaims{"sub": userU1, "role": "editor"})
				r := env.Do("PUT", "/v1/notes/"+id, map[string]any{"body": "new", "amount": 8}, editor)
				require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
				require.Equal(t, userU1, env.Admin("GET", "/v1/notes/"+id, nil).JSON()["owner_id"])
			})

			t.Run("PATCH with a checked field", func(t *testing.T) {
				id := note(t)
				editor := signHS256(t, jwtSecret, jwt.MapClaims{"sub": userU1, "role": "editor"})
				r := env.Do("PATCH", "/v1/notes/"+id, map[string]any{"owner_id": userU2}, editor)
				require.Equal(t, http.StatusForbidden, r.Status, "%s", r.Body)
				require.Contains(t, permProblemFields(t, r), "owner_id")
				r = env.Do("PATCH", "/v1/notes/"+id, map[string]any{"amount": 9}, editor)
				require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
				got := env.Admin("GET", "/v1/notes/"+id, nil).JSON()
				require.Equal(t, userU1, got["owner_id"])
				require.Equal(t, 9.0, got["amount"])
			})
		})
	}
}

// TestRelationToAHiddenRow: a relation must point to a row the caller may
// read; a row hidden from it gets exactly the answer a missing one gets,
// on create and on update, so the answer tells nothing of hidden ids.
func TestRelationToAHiddenRow(t *testing.T) {
	const schema = `
resources:
  - name: customers
    fields:
      - {name: name, type: string, required: true}
      - {name: owner_id, type: string, filterable: true}
  - name: orders
    fields:
      - {name: customer_id, type: relation, required: true, relation: {resource: customers}}
      - {name: note, type: string}
permissions:
  - {resource: customers, role: user, action: read, filters: [{field: owner_id, operator: eq, claim: sub}]}
  - {resource: orders, role: user, action: read}
  - {resource: orders, role: user, action: create}
  - {resource: orders, role: user, action: update}
`
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := apptest.Start(t, kind, schema, func(c *app.Config) { c.JWTSecret = jwtSecret })
			mine := env.Admin("POST", "/v1/customers", map[string]any{"name": "mine", "owner_id": "u1"}).JSON()["id"].(string)
			theirs := env.Admin("POST", "/v1/customers", map[string]any{"name": "theirs", "owner_id": "u2"}).JSON()["id"].(string)
			missing := "01a23456-0000-7000-8000-00000000dead"
			u1 := signHS256(t, jwtSecret, jwt.MapClaims{"sub": "u1", "role": "user"})
			answer := func(method, path string, body map[string]any) (int, string) {
				r := env.Do(method, path, body, u1)
				m := r.JSON()
				delete(m, "requestId")
				delete(m, "instance")
				b, _ := json.Marshal(m)
				return r.Status, string(b)
			}
			st, _ := answer("POST", "/v1/orders", map[string]any{"customer_id": mine})
			require.Equal(t, 201, st)
			stHidden, hidden := answer("POST", "/v1/orders", map[string]any{"customer_id": theirs})
			stMissing, gone := answer("POST", "/v1/orders", map[string]any{"customer_id": missing})
			require.Equal(t, 422, stHidden, hidden)
			require.Equal(t, stMissing, stHidden)
			require.Equal(t, gone, hidden, "a hidden row answers as a missing one")

			order := env.Admin("POST", "/v1/orders", map[string]any{"customer_id": mine}).JSON()["id"].(string)
			stHidden, hidden = answer("PATCH", "/v1/orders/"+order, map[string]any{"customer_id": theirs})
			stMissing, gone = answer("PATCH", "/v1/orders/"+order, map[string]any{"customer_id": missing})
			require.Equal(t, 422, stHidden, hidden)
			require.Equal(t, stMissing, stHidden)
			require.Equal(t, gone, hidden)
			// The admin is not limited.
			require.Equal(t, 201, env.Admin("POST", "/v1/orders", map[string]any{"customer_id": theirs}).Status)
		})
	}
}
