package resources

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/database"
)

func FuzzParseListQuery(f *testing.F) {
	const id = "0190a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
	cursor := func(vals string) string { return base64.RawURLEncoding.EncodeToString([]byte(vals)) }
	for _, seed := range []string{
		"",
		"title=abc&price__gt=1.5&_sort=-price,title&_limit=10&_offset=5",
		"stock__in=1,2,3&active=true&status__like=dr%25&owner_id=" + id,
		"title__isnull=maybe&_limit=1001",
		"price__gt=NaN&stock=1e400&created_at__gte=2026-01-02T03:04:05%2B02:00",
		"_sort=-price,title&_after=" + cursor(`[9.5,"x","`+id+`"]`),
		"_sort=-price,title&_after=" + cursor(`[null,null,"`+id+`"]`),
		"_sort=-created_at&_after=" + cursor(`["2026-01-02T03:04:05Z","`+id+`"]`),
		"_after=" + cursor(`[null]`),
		"_after=%%%",
		"fields=title,id&include=owner_id,owner_id",
		"__=1&_sort=,&fields=,&include=,",
		"meta__eq=%7B%7D&notes=x&nope__eq=1",
	} {
		f.Add(seed)
	}
	r := queryResource(f)
	f.Fuzz(func(t *testing.T, raw string) {
		// ParseQuery returns what it could parse along with an error; the
		// server sees the same partial values, so fuzz them too.
		params, _ := url.ParseQuery(raw)
		lq, err := ParseListQuery(r, params)
		if err != nil {
			var qe *QueryError
			require.True(t, errors.As(err, &qe), "want *QueryError, got %T: %v", err, err)
			require.Nil(t, lq)
			return
		}
		require.GreaterOrEqual(t, lq.Limit, 1)
		require.LessOrEqual(t, lq.Limit, MaxLimit)
		require.GreaterOrEqual(t, lq.Offset, 0)
		require.NotEmpty(t, lq.Sort)
		if lq.After != nil {
			require.Len(t, lq.After, len(lq.Sort))
		}
		// Whatever parsed must render without panicking.
		for _, kind := range []database.Kind{database.SQLite, database.Postgres} {
			b := &sqlBuilder{kind: kind}
			for _, flt := range lq.Filters {
				b.addFilter(flt)
			}
			if lq.After != nil {
				b.addAfter(lq.Sort, lq.After)
			}
			_ = b.where() + orderBy(lq.Sort)
		}
	})
}

func FuzzParseSchema(f *testing.F) {
	for _, seed := range []string{
		validYAML,
		validJSON,
		querySchema,
		coerceSchema,
		"",
		"resources: []\n",
		"resources:\n  - {name: Items, fields: []}\n",
		oneResource("      - {name: title, type: string, filterabel: true}\n"),
		oneResource("      - {name: n, type: integer, default: 1.5}\n"),
		oneResource("      - {name: at, type: datetime, default: 2026-01-02}\n"),
		oneResource("      - {name: j, type: json, default: {1: [a, {b: null}]}}\n"),
		withPermission("{resource: items, role: user, action: read, filters: [{field: title, operator: eq, value: 1}]}"),
		`{"resources": [{"name": "items", "fields": [{"name": "t", "type": "string"}]}]}`,
		`{"resources": [null]}`,
		// Inputs that once panicked or broke the stored registry.
		//
		// A null field plus a permission on that resource: Validate calls
		// Resource.Column -> Resource.Field, which dereferenced the nil *Field.
		"resources:\n  - name: a\n    fields: [null]\npermissions:\n  - {resource: a, role: user, action: read, fields: [x]}\n",
		//
		// A YAML tag on a value decoded into a slice panics inside
		// goccy/go-yaml v1.19.2 (upstream issue 735, fixed after that release);
		// ParseSchema recovers it as a syntax problem.
		"resources: !foo\n",
		"resources:\n  - name: items\n    fields:\n      !\n00000000000:00000000000000000000000000000000",
		//
		// A non-finite validation or rule value is accepted, and then the
		// schema cannot be marshalled to JSON (the registry's stored form).
		oneResource("      - {name: t, type: number, validations: [{rule: min, value: .nan}]}\n"),
		oneResource("      - {name: t, type: string, validations: [{rule: email, value: .inf}]}\n"),
		withPermission("{resource: items, role: user, action: read, filters: [{field: title, operator: eq, value: .nan}]}"),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		s, err := ParseSchema(doc)
		if err != nil {
			var se *SchemaError
			require.True(t, errors.As(err, &se), "want *SchemaError, got %T: %v", err, err)
			require.NotEmpty(t, se.Problems)
			require.Nil(t, s)
			return
		}
		require.NoError(t, s.Validate(), "a parsed schema stays valid")
		b, err := json.Marshal(s)
		require.NoError(t, err, "a parsed schema marshals to JSON")
		s2, err := ParseSchema(b)
		require.NoError(t, err, "JSON export re-imports: %s", b)
		b2, err := json.Marshal(s2)
		require.NoError(t, err)
		require.JSONEq(t, string(b), string(b2), "JSON round trip is stable")
	})
}
