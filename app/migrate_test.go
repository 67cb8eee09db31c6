package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
	"github.com/herald-dev/herald/resources"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// schemaV1 is the starting schema of the migration scenarios: two resources
// and a restrict relation between them, plus a standalone resource the
// destructive scenario drops.
const schemaV1 = `
resources:
  - name: authors
    fields:
      - {name: name, type: string, required: true}
      - {name: email, type: string, validations: [{rule: email}]}
      - {name: status, type: enum, enumValues: [active, retired], default: active}
      - {name: bio, type: text}
  - name: books
    fields:
      - {name: title, type: string, required: true}
      - {name: author_id, type: relation, required: true, relation: {resource: authors, onDelete: restrict}}
      - {name: pages, type: integer}
  - name: tags
    fields:
      - {name: label, type: string, required: true}
`

// schemaV2 only adds to schemaV1: a resource, an optional field, a required
// field with a default, an enum value, a unique and a sortable field, and
// the relation now cascades.
const schemaV2 = `
resources:
  - name: authors
    fields:
      - {name: name, type: string, required: true, sortable: true}
      - {name: email, type: string, unique: true, validations: [{rule: email}]}
      - {name: status, type: enum, enumValues: [active, retired, deceased], default: active}
      - {name: bio, type: text}
      - {name: country, type: string, required: true, default: NL}
      - {name: nickname, type: string}
  - name: books
    fields:
      - {name: title, type: string, required: true}
      - {name: author_id, type: relation, required: true, relation: {resource: authors, onDelete: cascade}}
      - {name: pages, type: integer}
      - {name: rating, type: number, required: true, default: 2.5}
  - name: tags
    fields:
      - {name: label, type: string, required: true}
  - name: publishers
    fields:
      - {name: name, type: string, required: true, unique: true}
`

// schemaDestructive drops authors.bio and the tags resource and retypes
// books.pages from integer to string.
const schemaDestructive = `
resources:
  - name: authors
    fields:
      - {name: name, type: string, required: true}
      - {name: email, type: string, validations: [{rule: email}]}
      - {name: status, type: enum, enumValues: [active, retired], default: active}
  - name: books
    fields:
      - {name: title, type: string, required: true}
      - {name: author_id, type: relation, required: true, relation: {resource: authors, onDelete: restrict}}
      - {name: pages, type: string}
`

// migration is what a scenario gets: a running Herald on schemaV1 with two
// authors and a book.
type migration struct {
	env            *apptest.Env
	ada, bob, book string
	exportBefore   string // GET /v1/_registry before the scenario
	versionBefore  int    // stored registry version before the scenario
}

// seed starts Herald on schemaV1 and creates rows through the API.
func seed(t *testing.T, kind database.Kind) *migration {
	t.Helper()
	env := apptest.Start(t, kind, schemaV1)
	m := &migration{env: env}
	m.ada = create(t, env, "authors", `{"name":"Ada","email":"ada@example.com","bio":"first programmer"}`)
	m.bob = create(t, env, "authors", `{"name":"Bob","email":"bob@example.com","status":"retired"}`)
	m.book = create(t, env, "books", fmt.Sprintf(`{"title":"Notes","author_id":%q,"pages":120}`, m.ada))
	create(t, env, "tags", `{"label":"classic"}`)
	m.exportBefore = registryYAML(t, env)
	m.versionBefore = registryVersion(t, env)
	return m
}

func create(t *testing.T, env *apptest.Env, resource, body string) string {
	t.Helper()
	resp := env.Admin("POST", "/v1/"+resource, body)
	require.Equal(t, 201, resp.Status, "create %s: %s", resource, resp.Body)
	id, _ := resp.JSON()["id"].(string)
	require.NotEmpty(t, id)
	return id
}

func get(t *testing.T, env *apptest.Env, path string) map[string]any {
	t.Helper()
	resp := env.Admin("GET", path, nil)
	require.Equal(t, 200, resp.Status, "GET %s: %s", path, resp.Body)
	return resp.JSON()
}

func registryYAML(t *testing.T, env *apptest.Env) string {
	t.Helper()
	resp := env.Admin("GET", "/v1/_registry", nil)
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	return string(resp.Body)
}

// registryVersion reads the stored registry row's version.
func registryVersion(t *testing.T, env *apptest.Env) int {
	t.Helper()
	var v int
	require.NoError(t, env.App.DB().Read.Raw("SELECT version FROM herald_registry WHERE id = 1").Scan(&v).Error)
	return v
}

// importSchema posts a schema document to the import endpoint.
func importSchema(t *testing.T, env *apptest.Env, query, doc string) *apptest.Response {
	t.Helper()
	return env.Admin("POST", "/v1/_registry/import"+query, doc)
}

// changeKeys lists an import answer's changes as "op resource.field".
func changeKeys(t *testing.T, body map[string]any) []string {
	t.Helper()
	raw, ok := body["changes"].([]any)
	require.True(t, ok, "no changes list in %v", body)
	out := []string{}
	for _, c := range raw {
		m := c.(map[string]any)
		field, _ := m["field"].(string)
		out = append(out, fmt.Sprintf("%s %s.%s", m["op"], m["resource"], field))
	}
	sort.Strings(out)
	return out
}

// columns lists a table's columns as the database has them.
func columns(t *testing.T, env *apptest.Env, table string) []string {
	t.Helper()
	var cols []string
	db := env.App.DB().Read
	if env.Kind == database.SQLite {
		require.NoError(t, db.Raw("SELECT name FROM pragma_table_info(?)", table).Scan(&cols).Error)
	} else {
		require.NoError(t, db.Raw("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?", table).Scan(&cols).Error)
	}
	sort.Strings(cols)
	return cols
}

func tableExists(t *testing.T, env *apptest.Env, table string) bool {
	t.Helper()
	var n int64
	db := env.App.DB().Read
	if env.Kind == database.SQLite {
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", table).Scan(&n).Error)
	} else {
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?", table).Scan(&n).Error)
	}
	return n > 0
}

func indexExists(t *testing.T, env *apptest.Env, name string) bool {
	t.Helper()
	var n int64
	db := env.App.DB().Read
	if env.Kind == database.SQLite {
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?", name).Scan(&n).Error)
	} else {
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = ?", name).Scan(&n).Error)
	}
	return n > 0
}

// assertUntouched checks that the schema, the tables and the rows seeded
// by seed are as they were.
func (m *migration) assertUntouched(t *testing.T) {
	t.Helper()
	env := m.env
	require.Equal(t, m.exportBefore, registryYAML(t, env), "the served schema changed")
	require.Equal(t, m.versionBefore, registryVersion(t, env), "the stored schema changed")
	ada := get(t, env, "/v1/authors/"+m.ada)
	require.Equal(t, "first programmer", ada["bio"])
	require.Equal(t, "ada@example.com", ada["email"])
	book := get(t, env, "/v1/books/"+m.book)
	require.Equal(t, float64(120), book["pages"])
	tags := get(t, env, "/v1/tags")
	require.Len(t, tags["data"], 1)
	require.Equal(t, []string{"bio", "created_at", "email", "id", "name", "status", "updated_at"}, columns(t, env, "authors"))
	require.True(t, tableExists(t, env, "tags"))
}

func TestSchemaMigration(t *testing.T) {
	scenarios := []struct {
		name         string
		postgresOnly bool
		run          func(t *testing.T, kind database.Kind)
	}{
		{name: "additive import", run: testAdditiveImport},
		{name: "destructive import", run: testDestructiveImport},
		{name: "dry run", run: testDryRun},
		{name: "invalid schema", run: testInvalidSchemaImport},
		{name: "export format", run: testExportFormat},
		{name: "restart keeps schema", run: testRestartKeepsSchema},
		{name: "restart with same file", run: testRestartSameFile},
		{name: "restart with same file keeps version", run: testRestartKeepsVersion},
		{name: "restart with same file keeps imports", run: testRestartKeepsImports},
		{name: "numeric options round trip", run: testNumericOptionsRoundTrip},
		{name: "reads after a schema change", run: testReadsAfterSchemaChange},
		{name: "required field without default", run: testRequiredWithoutDefault},
		{name: "required field without default is a client error", run: testRequiredWithoutDefaultStatus},
		{name: "concurrent start", postgresOnly: true, run: testConcurrentStart},
		{name: "other instances follow an import", postgresOnly: true, run: testOtherInstanceFollows},
	}
	for _, kind := range dbtest.Kinds {
		for _, sc := range scenarios {
			if sc.postgresOnly && kind != database.Postgres {
				continue
			}
			t.Run(string(kind)+"/"+sc.name, func(t *testing.T) {
				t.Parallel()
				sc.run(t, kind)
			})
		}
	}
}

func testAdditiveImport(t *testing.T, kind database.Kind) {
	m := seed(t, kind)
	env := m.env

	// What v1 does not allow yet, so that the checks below mean something.
	require.Equal(t, 400, env.Admin("GET", "/v1/authors?_sort=name", nil).Status, "name is not sortable in v1")
	require.Equal(t, 422, env.Admin("POST", "/v1/authors", `{"name":"Cy","status":"deceased"}`).Status)
	require.Equal(t, 404, env.Admin("GET", "/v1/publishers", nil).Status)
	resp := env.Admin("DELETE", "/v1/authors/"+m.ada, nil)
	require.Equal(t, 409, resp.Status, "restrict: %s", resp.Body)
	require.False(t, indexExists(t, env, "authors_name_idx"))

	resp = importSchema(t, env, "", schemaV2)
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	body := resp.JSON()
	require.Equal(t, true, body["applied"])
	require.Equal(t, float64(m.versionBefore+1), body["version"])
	require.Equal(t, []string{
		"addField authors.country",
		"addField authors.nickname",
		"addField books.rating",
		"alterField authors.email",
		"alterField authors.name",
		"alterField authors.status",
		"alterField books.author_id",
		"createResource publishers.",
	}, changeKeys(t, body))
	for _, c := range body["changes"].([]any) {
		require.Equal(t, false, c.(map[string]any)["destructive"], "%v", c)
	}
	require.Equal(t, m.versionBefore+1, registryVersion(t, env))
	require.Contains(t, registryYAML(t, env), "publishers")

	// Existing rows are kept, with the new fields' defaults or null.
	ada := get(t, env, "/v1/authors/"+m.ada)
	require.Equal(t, "Ada", ada["name"])
	require.Equal(t, "first programmer", ada["bio"])
	require.Equal(t, "NL", ada["country"])
	require.Contains(t, ada, "nickname")
	require.Nil(t, ada["nickname"])
	bob := get(t, env, "/v1/authors/"+m.bob)
	require.Equal(t, "retired", bob["status"])
	require.Equal(t, "NL", bob["country"])
	book := get(t, env, "/v1/books/"+m.book)
	require.Equal(t, float64(120), book["pages"])
	require.Equal(t, 2.5, book["rating"])
	require.Equal(t, m.ada, book["author_id"])

	// The new behaviour works.
	create(t, env, "publishers", `{"name":"Penguin"}`)
	require.Equal(t, 409, env.Admin("POST", "/v1/publishers", `{"name":"Penguin"}`).Status)
	cyResp := env.Admin("POST", "/v1/authors", `{"name":"Cy","status":"deceased","country":"BE"}`)
	require.Equal(t, 201, cyResp.Status, "%s", cyResp.Body)
	cy := cyResp.JSON()["id"].(string)
	require.Equal(t, "BE", get(t, env, "/v1/authors/"+cy)["country"], "created: %s; read: %v", cyResp.Body, get(t, env, "/v1/authors/"+cy))
	resp = env.Admin("POST", "/v1/authors", `{"name":"Ada Two","email":"ada@example.com"}`)
	require.Equal(t, 409, resp.Status, "email is unique now: %s", resp.Body)
	require.Contains(t, string(resp.Body), `"field":"email"`)
	resp = env.Admin("GET", "/v1/authors?_sort=-name", nil)
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	data := resp.JSON()["data"].([]any)
	require.Len(t, data, 3)
	require.Equal(t, "Cy", data[0].(map[string]any)["name"])
	for _, ix := range []string{"authors_name_idx", "authors_email_key", "authors_created_at_idx", "books_author_id_idx", "publishers_name_key"} {
		require.True(t, indexExists(t, env, ix), "index %s", ix)
	}
	require.False(t, indexExists(t, env, "authors_email_idx"))

	// The relation cascades now.
	resp = env.Admin("DELETE", "/v1/authors/"+m.ada, nil)
	require.Equal(t, 204, resp.Status, "%s", resp.Body)
	require.Equal(t, 404, env.Admin("GET", "/v1/books/"+m.book, nil).Status)
	// ... in the database too, not only in Herald's own delete path.
	var n int64
	require.NoError(t, env.App.DB().Read.Raw("SELECT COUNT(*) FROM books").Scan(&n).Error)
	require.Zero(t, n)
	book2 := create(t, env, "books", fmt.Sprintf(`{"title":"More","author_id":%q}`, m.bob))
	require.NoError(t, env.App.DB().Write.Exec("DELETE FROM authors WHERE id = ?", m.bob).Error)
	require.Equal(t, 404, env.Admin("GET", "/v1/books/"+book2, nil).Status, "the foreign key cascades")

	// Importing the same document again changes nothing.
	resp = importSchema(t, env, "", schemaV2)
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	require.Empty(t, changeKeys(t, resp.JSON()))
}

func testDestructiveImport(t *testing.T, kind database.Kind) {
	m := seed(t, kind)
	env := m.env

	resp := importSchema(t, env, "", schemaDestructive)
	require.Equal(t, 409, resp.Status, "%s", resp.Body)
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	body := string(resp.Body)
	require.Contains(t, body, "destructive-change")
	require.Contains(t, body, "allowDestructive")
	for _, want := range []string{
		`"field":"authors.bio","rule":"dropField"`,
		`"field":"books.pages","rule":"alterField"`,
		`"rule":"dropResource"`,
		`tags`,
	} {
		require.Contains(t, body, want)
	}
	m.assertUntouched(t)

	// allowDestructive=false is the same as leaving it out.
	require.Equal(t, 409, importSchema(t, env, "?allowDestructive=false", schemaDestructive).Status)
	m.assertUntouched(t)

	resp = importSchema(t, env, "?allowDestructive=true", schemaDestructive)
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	res := resp.JSON()
	require.Equal(t, true, res["applied"])
	require.Equal(t, []string{"alterField books.pages", "dropField authors.bio", "dropResource tags."}, changeKeys(t, res))

	ada := get(t, env, "/v1/authors/"+m.ada)
	require.NotContains(t, ada, "bio")
	require.Equal(t, "ada@example.com", ada["email"])
	require.Equal(t, []string{"created_at", "email", "id", "name", "status", "updated_at"}, columns(t, env, "authors"),
		"the dropped column is gone from the table")
	book := get(t, env, "/v1/books/"+m.book)
	require.Contains(t, book, "pages")
	require.Nil(t, book["pages"], "a retyped column starts empty")
	require.Equal(t, "Notes", book["title"])
	require.Equal(t, 404, env.Admin("GET", "/v1/tags", nil).Status)
	require.False(t, tableExists(t, env, "tags"))
	require.NotContains(t, registryYAML(t, env), "tags")

	// The retyped column takes the new type, and the relation still holds.
	resp = env.Admin("PATCH", "/v1/books/"+m.book, `{"pages":"about three hundred"}`)
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	require.Equal(t, "about three hundred", get(t, env, "/v1/books/"+m.book)["pages"])
	require.Equal(t, 409, env.Admin("DELETE", "/v1/authors/"+m.ada, nil).Status)
	resp = env.Admin("POST", "/v1/books", `{"title":"X","author_id":"01900000-0000-7000-8000-000000000000"}`)
	require.Equal(t, 422, resp.Status, "%s", resp.Body)
}

func testDryRun(t *testing.T, kind database.Kind) {
	m := seed(t, kind)
	env := m.env

	resp := importSchema(t, env, "?dryRun=true&allowDestructive=true", schemaDestructive)
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	res := resp.JSON()
	require.Equal(t, false, res["applied"])
	require.Equal(t, []string{"alterField books.pages", "dropField authors.bio", "dropResource tags."}, changeKeys(t, res))
	for _, c := range res["changes"].([]any) {
		require.Equal(t, true, c.(map[string]any)["destructive"], "%v", c)
	}
	m.assertUntouched(t)

	resp = importSchema(t, env, "?dryRun=true", schemaV2)
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	res = resp.JSON()
	require.Equal(t, false, res["applied"])
	require.Contains(t, changeKeys(t, res), "createResource publishers.")
	m.assertUntouched(t)
	require.Equal(t, 404, env.Admin("GET", "/v1/publishers", nil).Status)
	require.False(t, tableExists(t, env, "publishers"))
}

func testInvalidSchemaImport(t *testing.T, kind database.Kind) {
	m := seed(t, kind)
	env := m.env
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the problem
	}{
		{name: "bad names and type", doc: `
resources:
  - name: Authors
    fields:
      - {name: title, type: strng}
`, want: []string{`"field":"resources[0].name"`, `"field":"resources[0].fields[0].type"`}},
		{name: "relation to an unknown resource", doc: `
resources:
  - name: books
    fields:
      - {name: title, type: string}
      - {name: author_id, type: relation, relation: {resource: writers}}
`, want: []string{`"field":"resources[0].fields[1].relation.resource"`, "writers"}},
		{name: "misspelt key", doc: `
resources:
  - name: books
    fields:
      - {name: title, type: string, requird: true}
`, want: []string{`"rule":"syntax"`, "requird"}},
		{name: "json document", doc: `{"resources":[{"name":"books","fields":[{"name":"n","type":"enum"}]}]}`,
			want: []string{`"field":"resources[0].fields[0].enumValues"`}},
	}
	for _, tt := range tests {
		resp := importSchema(t, env, "?allowDestructive=true", tt.doc)
		require.Equal(t, 422, resp.Status, "%s: %s", tt.name, resp.Body)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), tt.name)
		require.Contains(t, string(resp.Body), "invalid-schema", tt.name)
		for _, w := range tt.want {
			require.Contains(t, string(resp.Body), w, tt.name)
		}
	}
	m.assertUntouched(t)
}

func testExportFormat(t *testing.T, kind database.Kind) {
	env := apptest.Start(t, kind, schemaV2)

	resp := env.Do("GET", "/v1/_registry", nil, apptest.AdminKey, "Accept", "application/json")
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	require.Contains(t, resp.Header.Get("Content-Type"), "application/json")
	var js struct {
		Resources []struct {
			Name   string           `json:"name"`
			Fields []map[string]any `json:"fields"`
		} `json:"resources"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &js), "%s", resp.Body)
	var names []string
	for _, r := range js.Resources {
		names = append(names, r.Name)
	}
	require.Equal(t, []string{"authors", "books", "tags", "publishers"}, names)
	jsonDoc := resp.Body

	resp = env.Admin("GET", "/v1/_registry", nil)
	require.Equal(t, 200, resp.Status)
	require.Contains(t, resp.Header.Get("Content-Type"), "yaml")
	yamlDoc := resp.Body
	require.Contains(t, string(yamlDoc), "resources:")
	require.NotEqual(t, byte('{'), strings.TrimSpace(string(yamlDoc))[0], "YAML, not JSON")
	var y map[string]any
	require.NoError(t, yaml.Unmarshal(yamlDoc, &y))
	require.Len(t, y["resources"], 4)

	// Both exports import back as the same schema: an empty plan.
	for format, doc := range map[string][]byte{"yaml": yamlDoc, "json": jsonDoc} {
		resp = importSchema(t, env, "?dryRun=true", string(doc))
		require.Equal(t, 200, resp.Status, "%s: %s", format, resp.Body)
		require.Empty(t, changeKeys(t, resp.JSON()), format)
	}
}

// newConfig is a configuration for a Herald on url with the given schema
// file.
func newConfig(t *testing.T, url, schema string) app.Config {
	t.Helper()
	cfg, err := app.LoadConfig(nil, func(string) string { return "" })
	require.NoError(t, err)
	cfg.DatabaseURL = url
	cfg.AdminKey = apptest.AdminKey
	cfg.Schema = schema
	return cfg
}

func writeSchema(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
	return path
}

func testRestartKeepsSchema(t *testing.T, kind database.Kind) {
	url := dbtest.URL(t, kind)
	env := apptest.StartConfig(t, kind, newConfig(t, url, writeSchema(t, schemaV1)))
	ada := create(t, env, "authors", `{"name":"Ada"}`)
	exported := registryYAML(t, env)
	env.Stop()

	cfg := newConfig(t, url, filepath.Join(t.TempDir(), "missing.yaml"))
	require.False(t, cfg.SchemaExplicit)
	env = apptest.StartConfig(t, kind, cfg)
	require.Equal(t, "Ada", get(t, env, "/v1/authors/"+ada)["name"])
	require.Equal(t, "active", get(t, env, "/v1/authors/"+ada)["status"])
	require.Equal(t, exported, registryYAML(t, env))
	// The stored schema's validations and relations are in force.
	require.Equal(t, 422, env.Admin("POST", "/v1/authors", `{"name":"Al","email":"not-an-email"}`).Status)
	create(t, env, "books", fmt.Sprintf(`{"title":"Notes","author_id":%q}`, ada))
	require.Equal(t, 409, env.Admin("DELETE", "/v1/authors/"+ada, nil).Status)
	env.Stop()

	// An explicit schema path that does not exist stops start-up.
	cfg.SchemaExplicit = true
	_, err := app.New(context.Background(), cfg, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: io.Discard})
	require.Error(t, err)
	require.Contains(t, err.Error(), "HERALD_SCHEMA")
}

func testRestartSameFile(t *testing.T, kind database.Kind) {
	url := dbtest.URL(t, kind)
	file := writeSchema(t, schemaV2)
	env := apptest.StartConfig(t, kind, newConfig(t, url, file))
	ada := create(t, env, "authors", `{"name":"Ada","email":"ada@example.com"}`)
	exported := registryYAML(t, env)
	env.Stop()

	env = apptest.StartConfig(t, kind, newConfig(t, url, file))
	require.Equal(t, "Ada", get(t, env, "/v1/authors/"+ada)["name"])
	require.Equal(t, exported, registryYAML(t, env))
	res, err := env.App.Store().Apply(context.Background(), parseFile(t, file), false, true)
	require.NoError(t, err)
	require.Empty(t, res.Changes, "the same file must plan no changes")
	require.Equal(t, 409, env.Admin("POST", "/v1/authors", `{"name":"Ada Two","email":"ada@example.com"}`).Status)
}

// testRestartKeepsImports: what the import API added survives a restart
// with the unchanged schema file (re-applying the file would plan dropping
// it, a destructive change that would stop start-up); a changed file is
// applied again.
func testRestartKeepsImports(t *testing.T, kind database.Kind) {
	url := dbtest.URL(t, kind)
	file := writeSchema(t, schemaV1)
	env := apptest.StartConfig(t, kind, newConfig(t, url, file))
	require.Equal(t, 200, importSchema(t, env, "", schemaV2).Status)
	ada := create(t, env, "authors", `{"name":"Ada","email":"ada@example.com"}`)
	exported := registryYAML(t, env)
	env.Stop()

	env = apptest.StartConfig(t, kind, newConfig(t, url, file))
	require.Equal(t, exported, registryYAML(t, env), "the imported schema is kept")
	require.Equal(t, "ada@example.com", get(t, env, "/v1/authors/"+ada)["email"])
	env.Stop()

	// Editing the file makes start-up apply it again: here it would drop
	// what the import added, which is destructive and refused.
	require.NoError(t, os.WriteFile(file, []byte(schemaV1+"\n# edited\n"), 0o600))
	_, err := app.New(context.Background(), newConfig(t, url, file), app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: io.Discard})
	require.Error(t, err)
	require.Contains(t, err.Error(), "destructive")
}

// testOtherInstanceFollows: an import through one instance reaches the
// others sharing the database, with their prepared statements renewed.
func testOtherInstanceFollows(t *testing.T, kind database.Kind) {
	url := dbtest.URL(t, kind)
	a := apptest.StartConfig(t, kind, newConfig(t, url, writeSchema(t, schemaV1)))
	b := apptest.StartConfig(t, kind, newConfig(t, url, writeSchema(t, schemaV1)))
	ada := create(t, b, "authors", `{"name":"Ada"}`) // b prepares its statements on v1
	require.Equal(t, 200, importSchema(t, a, "", schemaV2).Status)
	require.Eventually(t, func() bool {
		return b.Admin("GET", "/v1/publishers", nil).Status == 200
	}, 15*time.Second, 100*time.Millisecond, "instance b never saw the imported resource")
	got := get(t, b, "/v1/authors/"+ada)
	require.Equal(t, "NL", got["country"], "instance b reads the new column")
	create(t, b, "authors", `{"name":"Bo","nickname":"bo"}`)
}

func parseFile(t *testing.T, file string) *resources.Schema {
	t.Helper()
	doc, err := os.ReadFile(file)
	require.NoError(t, err)
	sc, err := resources.ParseSchema(doc)
	require.NoError(t, err)
	return sc
}

// testRestartKeepsVersion: a start whose schema file plans no changes must
// not store a new registry version (nor say "applied").
func testRestartKeepsVersion(t *testing.T, kind database.Kind) {
	url := dbtest.URL(t, kind)
	file := writeSchema(t, schemaV2)
	env := apptest.StartConfig(t, kind, newConfig(t, url, file))
	version := registryVersion(t, env)
	env.Stop()

	env = apptest.StartConfig(t, kind, newConfig(t, url, file))
	require.Equal(t, version, registryVersion(t, env), "a restart with the same file stores nothing new")
	resp := importSchema(t, env, "", schemaV2)
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	require.Equal(t, false, resp.JSON()["applied"], "%s", resp.Body)
	require.Equal(t, version, registryVersion(t, env))
}

// schemaNumeric has options with numeric values, which YAML decodes as
// integers and the stored (JSON) registry as floats.
const schemaNumeric = `
resources:
  - name: items
    fields:
      - {name: title, type: string, required: true, validations: [{rule: minLength, value: 2}, {rule: maxLength, value: 50}]}
      - {name: qty, type: integer, default: 1, validations: [{rule: min, value: 0}, {rule: max, value: 10}]}
`

func testNumericOptionsRoundTrip(t *testing.T, kind database.Kind) {
	url := dbtest.URL(t, kind)
	file := writeSchema(t, schemaNumeric)
	env := apptest.StartConfig(t, kind, newConfig(t, url, file))
	item := create(t, env, "items", `{"title":"Mug"}`)
	exported := registryYAML(t, env)
	resp := importSchema(t, env, "?dryRun=true", schemaNumeric)
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	require.Empty(t, changeKeys(t, resp.JSON()), "re-importing the applied file")
	env.Stop()

	env = apptest.StartConfig(t, kind, newConfig(t, url, file))
	require.Equal(t, exported, registryYAML(t, env), "the export is the same after a restart")
	res, err := env.App.Store().Apply(context.Background(), parseFile(t, file), false, true)
	require.NoError(t, err)
	require.Empty(t, res.Changes, "the same file must plan no changes")
	require.Equal(t, 422, env.Admin("POST", "/v1/items", `{"title":"x"}`).Status)
	require.Equal(t, 422, env.Admin("POST", "/v1/items", `{"title":"Cup","qty":11}`).Status)
	require.Equal(t, float64(1), get(t, env, "/v1/items/"+item)["qty"])
}

// testReadsAfterSchemaChange reads the same records through the same pooled
// connections before and after a change that alters the tables' columns.
func testReadsAfterSchemaChange(t *testing.T, kind database.Kind) {
	m := seed(t, kind)
	env := m.env
	warm := func() []int {
		var got []int
		for i := 0; i < 5; i++ {
			got = append(got,
				env.Admin("GET", "/v1/authors/"+m.ada, nil).Status,
				env.Admin("GET", "/v1/books/"+m.book, nil).Status,
				env.Admin("GET", "/v1/authors", nil).Status,
				env.Admin("PATCH", "/v1/authors/"+m.bob, fmt.Sprintf(`{"bio":"v%d"}`, i)).Status,
				env.Admin("DELETE", "/v1/authors/"+m.ada, nil).Status)
		}
		return got
	}
	for _, st := range warm() {
		require.Contains(t, []int{200, 409}, st)
	}
	resp := env.Admin("POST", "/v1/_registry/import", schemaV2)
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	for i, st := range warm() {
		if i%5 == 4 {
			require.Contains(t, []int{204, 404}, st, "request %d: delete (cascades now)", i)
		} else if i%5 == 0 || i%5 == 1 {
			require.Contains(t, []int{200, 404}, st, "request %d", i)
		} else {
			require.Equal(t, 200, st, "request %d", i)
		}
	}
}

func requiredWithoutDefault(t *testing.T, m *migration) *apptest.Response {
	t.Helper()
	doc := strings.Replace(schemaV1, "      - {name: bio, type: text}\n",
		"      - {name: bio, type: text}\n      - {name: country, type: string, required: true}\n", 1)
	require.NotEqual(t, schemaV1, doc)
	return importSchema(t, m.env, "?allowDestructive=true", doc)
}

func testRequiredWithoutDefault(t *testing.T, kind database.Kind) {
	m := seed(t, kind)
	env := m.env
	resp := requiredWithoutDefault(t, m)
	require.GreaterOrEqual(t, resp.Status, 400, "%s", resp.Body)
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	m.assertUntouched(t)
	// The old schema is still served: country is neither required nor known.
	create(t, env, "authors", `{"name":"Cy"}`)
	require.Equal(t, 422, env.Admin("POST", "/v1/authors", `{"name":"Dee","country":"NL"}`).Status)
	require.Equal(t, 200, env.Admin("GET", "/readyz", nil).Status)
	// A table without rows takes the same field.
	doc := strings.Replace(schemaV1, "      - {name: label, type: string, required: true}\n",
		"      - {name: label, type: string, required: true}\n      - {name: weight, type: integer, required: true}\n", 1)
	require.NoError(t, env.App.DB().Write.Exec("DELETE FROM tags").Error)
	resp = importSchema(t, env, "", doc)
	require.Equal(t, 200, resp.Status, "%s", resp.Body)
	require.Equal(t, 422, env.Admin("POST", "/v1/tags", `{"label":"x"}`).Status)
	create(t, env, "tags", `{"label":"x","weight":3}`)
}

func testRequiredWithoutDefaultStatus(t *testing.T, kind database.Kind) {
	m := seed(t, kind)
	resp := requiredWithoutDefault(t, m)
	require.Contains(t, []int{409, 422}, resp.Status, "%s", resp.Body)
	require.Contains(t, string(resp.Body), "country")
}

func testConcurrentStart(t *testing.T, kind database.Kind) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := 0; i < 4; i++ {
		cfg := newConfig(t, dbtest.URL(t, kind), writeSchema(t, schemaV2))
		apps := make([]*app.App, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j := range apps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				apps[j], errs[j] = app.New(context.Background(), cfg, app.Options{Logger: log, Out: io.Discard})
			}()
		}
		close(start)
		wg.Wait()
		for j, a := range apps {
			if a != nil {
				t.Cleanup(func() { _ = a.Close() })
			}
			require.NoError(t, errs[j], "round %d, instance %d", i, j)
		}
		db := apps[0].DB().Read
		for _, table := range []string{"authors", "books", "tags", "publishers"} {
			var n int64
			require.NoError(t, db.Raw("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?", table).Scan(&n).Error)
			require.Equal(t, int64(1), n, table)
		}
		var fks int64
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM pg_constraint WHERE conrelid = 'books'::regclass AND contype = 'f'").Scan(&fks).Error)
		require.Equal(t, int64(1), fks, "one foreign key")
		for _, a := range apps {
			require.NotNil(t, a.Store().Schema().Resource("publishers"))
		}
		for _, a := range apps {
			require.NoError(t, a.Close())
		}
	}
}
