package resources

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/database"
)

const querySchema = `
resources:
  - name: owners
    fields:
      - {name: name, type: string}
  - name: items
    fields:
      - {name: title, type: string, sortable: true, filterable: true}
      - {name: price, type: number, sortable: true, filterable: true}
      - {name: stock, type: integer, filterable: true}
      - {name: active, type: boolean, filterable: true}
      - {name: status, type: enum, enumValues: [draft, live], filterable: true}
      - {name: owner_id, type: relation, relation: {resource: owners}}
      - {name: meta, type: json}
      - {name: notes, type: text}
`

// queryResource is the "items" resource the list-query tests run against.
func queryResource(t testing.TB) *Resource {
	t.Helper()
	r := mustParseSchema(t, querySchema).Resource("items")
	require.NotNil(t, r)
	return r
}

func mustParseQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	v, err := url.ParseQuery(raw)
	require.NoError(t, err)
	return v
}

// requireQueryError asserts err is a *QueryError for param.
func requireQueryError(t *testing.T, err error, param string) {
	t.Helper()
	var qe *QueryError
	require.True(t, errors.As(err, &qe), "want *QueryError, got %T: %v", err, err)
	require.Equal(t, param, qe.Param)
	require.NotEmpty(t, qe.Message)
	require.True(t, strings.HasPrefix(err.Error(), param+": "))
}

// flt is a Filter named by its field, for comparison.
type flt struct {
	Field string
	Op    string
	Value any
	List  []any
}

func TestParseListQueryFilters(t *testing.T) {
	t.Parallel()
	r := queryResource(t)
	const id = "0190a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
	tests := []struct {
		name  string
		query string
		want  []flt
	}{
		{"none", "", nil},
		{"bare field is eq", "title=abc", []flt{{"title", "eq", "abc", nil}}},
		{"eq", "title__eq=abc", []flt{{"title", "eq", "abc", nil}}},
		{"neq", "title__neq=abc", []flt{{"title", "neq", "abc", nil}}},
		{"gt number", "price__gt=1.5", []flt{{"price", "gt", 1.5, nil}}},
		{"gte number integral", "price__gte=2", []flt{{"price", "gte", float64(2), nil}}},
		{"lt number exponent", "price__lt=1e3", []flt{{"price", "lt", float64(1000), nil}}},
		{"lte number negative", "price__lte=-0.25", []flt{{"price", "lte", -0.25, nil}}},
		{"integer eq", "stock=3", []flt{{"stock", "eq", int64(3), nil}}},
		{"integer gt", "stock__gt=-4", []flt{{"stock", "gt", int64(-4), nil}}},
		{"integer in", "stock__in=1,2,3", []flt{{"stock", "in", nil, []any{int64(1), int64(2), int64(3)}}}},
		{"boolean eq", "active=true", []flt{{"active", "eq", true, nil}}},
		{"boolean neq 0", "active__neq=0", []flt{{"active", "neq", false, nil}}},
		{"enum eq", "status=live", []flt{{"status", "eq", "live", nil}}},
		{"enum in", "status__in=draft,live", []flt{{"status", "in", nil, []any{"draft", "live"}}}},
		{"enum like", "status__like=dr%25", []flt{{"status", "like", "dr%", nil}}},
		{"like", "title__like=a%25", []flt{{"title", "like", "a%", nil}}},
		{"ilike", "title__ilike=%25A%25", []flt{{"title", "ilike", "%A%", nil}}},
		{"isnull true", "price__isnull=true", []flt{{"price", "isnull", true, nil}}},
		{"isnull false", "title__isnull=false", []flt{{"title", "isnull", false, nil}}},
		{"relation is filterable", "owner_id=" + strings.ToUpper(id), []flt{{"owner_id", "eq", id, nil}}},
		{"relation in", "owner_id__in=" + id, []flt{{"owner_id", "in", nil, []any{id}}}},
		{"id", "id=" + id, []flt{{"id", "eq", id, nil}}},
		{"created_at to UTC", "created_at__gte=2026-01-02T03:04:05%2B02:00",
			[]flt{{"created_at", "gte", time.Date(2026, 1, 2, 1, 4, 5, 0, time.UTC), nil}}},
		{"repeated param", "title=a&title=b", []flt{{"title", "eq", "a", nil}, {"title", "eq", "b", nil}}},
		{"sorted by param", "title=a&price__gt=1&active=false",
			[]flt{{"active", "eq", false, nil}, {"price", "gt", float64(1), nil}, {"title", "eq", "a", nil}}},
		{"reserved params skipped", "access_token=x&hard=true&title=a", []flt{{"title", "eq", "a", nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lq, err := ParseListQuery(r, mustParseQuery(t, tt.query))
			require.NoError(t, err)
			var got []flt
			for _, f := range lq.Filters {
				require.Same(t, r.Column(f.Field.Name), f.Field)
				got = append(got, flt{f.Field.Name, f.Op, f.Value, f.List})
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseListQueryErrors(t *testing.T) {
	t.Parallel()
	r := queryResource(t)
	tests := []struct {
		name  string
		query string
		param string
	}{
		{"unknown field", "nope=1", "nope"},
		{"unknown field with op", "nope__eq=1", "nope__eq"},
		{"empty field", "__eq=1", "__eq"},
		{"deleted_at without soft delete", "deleted_at__isnull=true", "deleted_at__isnull"},
		{"unknown op", "title__contains=a", "title__contains"},
		{"op is case sensitive", "title__EQ=a", "title__EQ"},
		{"not filterable text", "notes=x", "notes"},
		{"not filterable json", "meta__isnull=true", "meta__isnull"},
		{"json eq", "meta__eq=%7B%7D", "meta__eq"},
		{"bad number", "price=abc", "price"},
		{"NaN number", "price__gt=NaN", "price__gt"},
		{"infinite number", "price__lt=Inf", "price__lt"},
		{"fractional integer", "stock=1.5", "stock"},
		{"bad value in list", "stock__in=1,x", "stock__in"},
		{"empty value in list", "stock__in=1,", "stock__in"},
		{"like on number", "price__like=1%25", "price__like"},
		{"ilike on boolean", "active__ilike=t", "active__ilike"},
		{"boolean gt", "active__gt=true", "active__gt"},
		{"boolean bad value", "active=yes", "active"},
		{"enum bad value", "status=gone", "status"},
		{"bad uuid", "owner_id=42", "owner_id"},
		{"bad datetime", "created_at__gt=yesterday", "created_at__gt"},
		{"bad isnull", "title__isnull=maybe", "title__isnull"},
		{"limit zero", "_limit=0", "_limit"},
		{"limit over max", "_limit=1001", "_limit"},
		{"limit negative", "_limit=-5", "_limit"},
		{"limit not a number", "_limit=x", "_limit"},
		{"limit fractional", "_limit=1.5", "_limit"},
		{"offset negative", "_offset=-1", "_offset"},
		{"offset not a number", "_offset=x", "_offset"},
		{"sort unknown field", "_sort=nope", "_sort"},
		{"sort not sortable", "_sort=stock", "_sort"},
		{"sort not sortable system field", "_sort=-deleted_at", "_sort"},
		{"sort duplicate", "_sort=price,-price", "_sort"},
		{"sort duplicate id", "_sort=id,-id", "_sort"},
		{"sort empty part", "_sort=title,", "_sort"},
		{"fields unknown", "fields=title,nope", "fields"},
		{"fields empty part", "fields=title,,price", "fields"},
		{"include non-relation", "include=title", "include"},
		{"include unknown", "include=owner", "include"},
		{"include system field", "include=id", "include"},
		{"after garbage", "_after=!!!", "_after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lq, err := ParseListQuery(r, mustParseQuery(t, tt.query))
			require.Nil(t, lq)
			requireQueryError(t, err, tt.param)
		})
	}
}

func TestParseListQueryPaging(t *testing.T) {
	t.Parallel()
	r := queryResource(t)
	tests := []struct {
		query      string
		limit      int
		offset     int
		fields     []string
		include    []string
		wantParsed bool
	}{
		{query: "", limit: DefaultLimit},
		{query: "_limit=1", limit: 1},
		{query: "_limit=1000", limit: MaxLimit},
		{query: "_limit=", limit: DefaultLimit},
		{query: "_offset=0", limit: DefaultLimit},
		{query: "_offset=20&_limit=10", limit: 10, offset: 20},
		{query: "fields=title,id,created_at", limit: DefaultLimit, fields: []string{"title", "id", "created_at"}},
		{query: "include=owner_id,owner_id", limit: DefaultLimit, include: []string{"owner_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			lq, err := ParseListQuery(r, mustParseQuery(t, tt.query))
			require.NoError(t, err)
			require.Equal(t, tt.limit, lq.Limit)
			require.Equal(t, tt.offset, lq.Offset)
			require.Equal(t, tt.fields, lq.Fields)
			require.Equal(t, tt.include, lq.Include)
			require.Nil(t, lq.After)
		})
	}
}

// sortKeys renders a sort as "-price,title,id" for comparison.
func sortKeys(sort []SortKey) string {
	parts := make([]string, len(sort))
	for i, k := range sort {
		parts[i] = k.Field.Name
		if k.Desc {
			parts[i] = "-" + parts[i]
		}
	}
	return strings.Join(parts, ",")
}

func TestParseListQuerySort(t *testing.T) {
	t.Parallel()
	r := queryResource(t)
	tests := []struct {
		sort string
		want string
	}{
		{"", "id"},
		{"title", "title,id"},
		{"+title", "title,id"},
		{"-price,title", "-price,title,id"},
		{"-created_at", "-created_at,id"},
		{"title,-id", "title,-id"},
		{"-id", "-id"},
	}
	for _, tt := range tests {
		t.Run(tt.sort, func(t *testing.T) {
			t.Parallel()
			lq, err := ParseListQuery(r, url.Values{"_sort": {tt.sort}})
			require.NoError(t, err)
			require.Equal(t, tt.want, sortKeys(lq.Sort))
			last := lq.Sort[len(lq.Sort)-1]
			require.Equal(t, ColID, last.Field.Name, "id is always the final key")
		})
	}
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	r := queryResource(t)
	const id = "0190a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	tests := []struct {
		name string
		sort string
		row  Row
		want []any
	}{
		{"id only", "", Row{"id": id, "title": "ignored"}, []any{id}},
		{"number and string", "-price,title", Row{"id": id, "price": 9.5, "title": "x"}, []any{9.5, "x", id}},
		{"integral number", "price", Row{"id": id, "price": float64(3)}, []any{float64(3), id}},
		{"nulls", "-price,title", Row{"id": id, "price": nil, "title": nil}, []any{nil, nil, id}},
		{"missing values are null", "title", Row{"id": id}, []any{nil, id}},
		{"datetime", "-created_at", Row{"id": id, "created_at": at}, []any{at, id}},
		{"unicode string", "title", Row{"id": id, "title": "héllo, \"world\""}, []any{"héllo, \"world\"", id}},
		{"id descending", "-id", Row{"id": id}, []any{id}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			first, err := ParseListQuery(r, url.Values{"_sort": {tt.sort}})
			require.NoError(t, err)
			cursor := encodeCursor(first.Sort, tt.row)
			require.NotContains(t, cursor, "=", "cursors are unpadded")
			next, err := ParseListQuery(r, url.Values{"_sort": {tt.sort}, "_after": {cursor}})
			require.NoError(t, err)
			require.Equal(t, tt.want, next.After)
			require.Len(t, next.After, len(next.Sort))
		})
	}
}

func TestCursorRejected(t *testing.T) {
	t.Parallel()
	r := queryResource(t)
	const id = "0190a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
	row := Row{"id": id, "price": 9.5, "title": "x", "created_at": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cursorFor := func(sort string) string {
		lq, err := ParseListQuery(r, url.Values{"_sort": {sort}})
		require.NoError(t, err)
		return encodeCursor(lq.Sort, row)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name   string
		sort   string
		cursor string
	}{
		{"not base64", "", "!!!"},
		{"padded base64", "", base64.URLEncoding.EncodeToString([]byte(`["` + id + `"]`))},
		{"not json", "", b64("hello")},
		{"json object", "", b64(`{"id": "` + id + `"}`)},
		{"empty list", "", b64(`[]`)},
		{"bad id", "", b64(`["nope"]`)},
		{"different sort, same length", "title", cursorFor("-price")},
		{"different sort, more keys", "title,-price", cursorFor("title")},
		{"different sort, fewer keys", "", cursorFor("title")},
		{"datetime for a number", "price", cursorFor("created_at")},
		{"number for a datetime", "created_at", cursorFor("price")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lq, err := ParseListQuery(r, url.Values{"_sort": {tt.sort}, "_after": {tt.cursor}})
			require.Nil(t, lq, "after = %v", lq)
			requireQueryError(t, err, "_after")
		})
	}
}

func TestParseFilterJSON(t *testing.T) {
	t.Parallel()
	// A json field cannot be declared filterable, so ParseListQuery stops at
	// "not filterable"; parseFilter guards the operators on its own too.
	f := &Field{Name: "meta", Type: TypeJSON, Filterable: true}
	for _, op := range []string{"eq", "neq", "gt", "lte"} {
		_, err := parseFilter(f, op, "{}")
		require.Error(t, err, op)
	}
	got, err := parseFilter(f, "isnull", "true")
	require.NoError(t, err)
	require.Equal(t, true, got.Value)
}

func TestAddAfter(t *testing.T) {
	t.Parallel()
	r := queryResource(t)
	const id = "0190a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name     string
		kind     database.Kind
		sort     string
		after    []any
		wantArgs []any
		never    bool // the condition matches no row
	}{
		{"id asc", database.SQLite, "", []any{id}, []any{id}, false},
		{"id desc", database.SQLite, "-id", []any{id}, []any{id}, false},
		{"two keys", database.Postgres, "price", []any{9.5, id}, []any{9.5, 9.5, id}, false},
		{"asc null first key", database.SQLite, "price", []any{nil, id}, []any{id}, false},
		{"desc null first key", database.SQLite, "-price", []any{nil, id}, []any{id}, false},
		{"three keys no nulls", database.Postgres, "-price,title", []any{9.5, "x", id},
			[]any{9.5, 9.5, "x", 9.5, "x", id}, false},
		{"desc null then value", database.Postgres, "-price,title", []any{nil, "x", id},
			[]any{"x", "x", id}, false},
		{"desc null after a value", database.SQLite, "title,-price", []any{"x", nil, id},
			[]any{"x", "x", "x", id}, false},
		{"all null desc", database.Postgres, "-price,-title", []any{nil, nil, id}, []any{id}, false},
		{"sqlite datetime is text", database.SQLite, "created_at", []any{at, id},
			[]any{"2026-01-02T03:04:05.000000Z", "2026-01-02T03:04:05.000000Z", id}, false},
		{"postgres datetime is time", database.Postgres, "created_at", []any{at, id}, []any{at, at, id}, false},
		{"nothing after a null id", database.SQLite, "", []any{nil}, nil, true},
		// An ascending key after the first with a NULL cursor value: its OR
		// branch is skipped, and so must be the args of its equality prefix.
		{"asc null after a value", database.SQLite, "title,price", []any{"x", nil, id},
			[]any{"x", "x", id}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lq, err := ParseListQuery(r, url.Values{"_sort": {tt.sort}})
			require.NoError(t, err)
			require.Len(t, tt.after, len(lq.Sort))
			b := &sqlBuilder{kind: tt.kind}
			b.addAfter(lq.Sort, tt.after)
			require.Len(t, b.conds, 1)
			require.Equal(t, strings.Count(b.conds[0], "?"), len(b.args), "placeholders vs args in %s", b.conds[0])
			require.Equal(t, tt.wantArgs, b.args)
			for _, a := range b.args {
				require.NotNil(t, a, "a NULL cursor value is rendered as IS NULL, never bound")
			}
			if tt.never {
				require.Equal(t, "1 = 0", b.conds[0])
			}
		})
	}
}
