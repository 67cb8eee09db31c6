package webhooks

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"gorm.io/gorm"

	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/models"
	"github.com/herald-dev/herald/resources"
)

// ClassificationFilter makes a webhook fire on a classification's
// transitions (SPEC section 8) instead of on mutations.
type ClassificationFilter struct {
	// Name is a classification of the webhook's resource.
	Name string `json:"name"`
	// From and To are "true", "false", "null" or "any" (the default).
	From string `json:"from"`
	To   string `json:"to"`
}

var outcomeNames = []string{"true", "false", "null", "any"}

// validate names the problems of f for a webhook on resource res.
func (f *ClassificationFilter) validate(res *resources.Resource, resource string, bad func(field, rule, msg string)) {
	if f.From == "" {
		f.From = "any"
	}
	if f.To == "" {
		f.To = "any"
	}
	switch {
	case f.Name == "":
		bad("classification.name", "required", "name the classification")
	case resource == "*":
		bad("classification.name", "resource", `a classification needs a single resource, not "*"`)
	case res != nil && res.Classification(f.Name) == nil:
		bad("classification.name", "exists", fmt.Sprintf("resource %s has no classification %q", resource, f.Name))
	}
	for _, p := range []struct{ field, v string }{{"classification.from", f.From}, {"classification.to", f.To}} {
		if !slices.Contains(outcomeNames, p.v) {
			bad(p.field, "enum", `must be "true", "false", "null" or "any"`)
		}
	}
	if f.From == f.To && f.From != "any" {
		bad("classification.to", "transition", "from and to are the same: such a transition never happens")
	}
}

// matches tells whether a transition passes the filter.
func (f *ClassificationFilter) matches(t *events.Transition) bool {
	return t != nil && t.Name == f.Name && outcomeIs(f.From, t.From) && outcomeIs(f.To, t.To)
}

func outcomeIs(want string, got *bool) bool {
	switch want {
	case "any":
		return true
	case "null":
		return got == nil
	default:
		return got != nil && fmt.Sprint(*got) == want
	}
}

// edge is one relation between a webhook's resource (the source) and a
// related resource: field is a relation field, on the related resource
// pointing to the source (inbound: a change names its source rows in its
// old and new values), or on the source pointing to the related resource
// (outbound: the source rows are those that reference the changed row).
type edge struct {
	related, field string
	inbound        bool
}

// maxRelated bounds a webhook's related entries.
const maxRelated = 20

// resolveRelated turns related entries ("orders", or "orders.customer_id"
// where several relations join the two resources) into edges, reporting
// the entries it cannot resolve.
func resolveRelated(sc *resources.Schema, source string, entries []string, bad func(field, rule, msg string)) []edge {
	src := sc.Resource(source)
	var out []edge
	seen := map[string]bool{}
	for i, entry := range entries {
		path := fmt.Sprintf("related[%d]", i)
		if seen[entry] {
			bad(path, "unique", "listed twice")
			continue
		}
		seen[entry] = true
		name, field, dotted := strings.Cut(entry, ".")
		if dotted && field == "" {
			bad(path, "relation", fmt.Sprintf("%q: name a relation field after the dot", entry))
			continue
		}
		rel := sc.Resource(name)
		if src == nil || rel == nil {
			bad(path, "exists", fmt.Sprintf("no resource %q", name))
			continue
		}
		var found []edge
		for _, f := range rel.Fields {
			if f.Type == resources.TypeRelation && f.Relation.Resource == source && (field == "" || field == f.Name) {
				found = append(found, edge{related: name, field: f.Name, inbound: true})
			}
		}
		for _, f := range src.Fields {
			if f.Type == resources.TypeRelation && f.Relation.Resource == name && (field == "" || field == f.Name) {
				found = append(found, edge{related: name, field: f.Name})
			}
		}
		fields := map[string]bool{}
		for _, e := range found {
			fields[e.field] = true
		}
		switch {
		case len(found) == 0 && field != "":
			bad(path, "relation", fmt.Sprintf("%s is not a relation between %s and %s", entry, source, name))
		case len(found) == 0:
			bad(path, "relation", fmt.Sprintf("no relation joins %s and %s", source, name))
		case len(fields) > 1:
			bad(path, "ambiguous", fmt.Sprintf("several relations join %s and %s: name one as %s.<field>", source, name, name))
		default:
			out = append(out, found...)
		}
	}
	if len(entries) > maxRelated {
		bad("related", "max", fmt.Sprintf("at most %d related resources", maxRelated))
	}
	return out
}

// relatedRows finds, for each webhook with related entries, the source
// rows each event of batch touches: hookID -> event index -> source ids,
// sorted and without repeats. Inbound edges read the event's old and new
// relation values (a move names both rows). Outbound edges name the live
// source rows that referenced the changed row right after its event
// (referencedAt): what the dispatcher sees is the same whenever it runs.
func relatedRows(ctx context.Context, store *resources.Store, hooks []*hook, batch []events.Event) (map[string]map[int][]string, error) {
	if store == nil {
		return nil, nil
	}
	sc := store.Schema()
	type pending struct {
		hook string
		i    int
		l    lookup
	}
	out := map[string]map[int][]string{}
	add := func(hookID string, i int, ids ...string) {
		for _, id := range ids {
			if id == "" {
				continue
			}
			m := out[hookID]
			if m == nil {
				m = map[int][]string{}
				out[hookID] = m
			}
			if !slices.Contains(m[i], id) {
				m[i] = append(m[i], id)
			}
		}
	}
	var waits []pending
	asked := map[lookup][]*events.Event{}
	for _, h := range hooks {
		if len(h.related) == 0 || h.classification != nil {
			continue
		}
		edges := resolveRelated(sc, h.Resource, h.related, func(string, string, string) {})
		for i := range batch {
			e := &batch[i]
			switch events.Op(e.EventType) {
			case events.OpCreated, events.OpUpdated, events.OpDeleted:
			default:
				continue
			}
			for _, ed := range edges {
				if ed.related != e.ResourceName {
					continue
				}
				if ed.inbound {
					old, _ := e.Data.Old[ed.field].(string)
					new, _ := e.Data.New[ed.field].(string)
					add(h.ID, i, old, new)
					continue
				}
				if events.Op(e.EventType) == events.OpCreated {
					continue // a new row has no rows referencing it yet
				}
				l := lookup{h.Resource, ed.field}
				waits = append(waits, pending{h.ID, i, l})
				if !slices.Contains(asked[l], e) {
					asked[l] = append(asked[l], e)
				}
			}
		}
	}
	for l, evs := range asked {
		// At most 50 changed rows a lookup: each is one LIKE of the scan.
		for len(evs) > 0 {
			part := evs[:min(len(evs), 50)]
			evs = evs[len(part):]
			refs, err := referencedAt(ctx, store, l, part)
			if err != nil {
				return nil, err
			}
			for _, w := range waits {
				if w.l == l && slices.Contains(part, &batch[w.i]) {
					add(w.hook, w.i, refs[batch[w.i].ID]...)
				}
			}
		}
	}
	for _, m := range out {
		for i := range m {
			slices.Sort(m[i])
		}
	}
	return out, nil
}

// lookup is an outbound edge: rows of source whose field references the
// changed row.
type lookup struct{ source, field string }

// referencedAt returns, for each event (by position), the live source rows
// whose relation field held the event's row right after the event. In one
// read snapshot it reads the rows referencing those rows now and the
// source's events after the earliest of them; a row's value at position p
// is the old value of its first event after p, or its current value when
// it has none. Rows created since (old: null) are left out, rows deleted
// or moved away since are counted, exactly as the log says.
func referencedAt(ctx context.Context, store *resources.Store, l lookup, evs []*events.Event) (map[int64][]string, error) {
	var ids []string
	from := evs[0].ID
	for _, e := range evs {
		if !slices.Contains(ids, e.ResourceID) {
			ids = append(ids, e.ResourceID)
		}
		from = min(from, e.ID)
	}
	var now map[string][]string
	type change struct {
		pos int64
		old string // the field's value before this event ("" for none)
	}
	later := map[string][]change{} // source row -> its events after from, in order
	read := store.DB().Read.WithContext(ctx)
	var opts []*sql.TxOptions
	if store.DB().Kind == database.Postgres {
		opts = append(opts, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	}
	err := read.Transaction(func(tx *gorm.DB) error {
		var err error
		if now, err = store.Referencing(tx, l.source, l.field, ids); err != nil {
			return err
		}
		// Only row changes count (not manual or classified events), and
		// only those of rows that reference a target now or whose data
		// names one (a LIKE on the stored text, before any decoding: ids
		// are UUIDs, with no LIKE wildcards).
		var mentions []string
		var args []any
		for _, refs := range now {
			for _, id := range refs {
				args = append(args, id)
			}
		}
		cond := "resource_id IN ?"
		if len(args) == 0 {
			cond = "1 = 0"
		}
		for range ids {
			mentions = append(mentions, "data LIKE ?")
		}
		where := "resource_name = ? AND event_type IN ? AND id > ? AND (" + cond + " OR " + strings.Join(mentions, " OR ") + ")"
		types := []string{l.source + "." + events.OpCreated, l.source + "." + events.OpUpdated, l.source + "." + events.OpDeleted}
		for after := from; ; {
			q := []any{l.source, types, after}
			if len(args) > 0 {
				q = append(q, args)
			}
			for _, id := range ids {
				q = append(q, "%"+id+"%")
			}
			var rows []models.Event
			if err := tx.Where(where, q...).Order("id").Limit(1000).Find(&rows).Error; err != nil {
				return fmt.Errorf("webhooks: events after %d: %w", after, err)
			}
			for i := range rows {
				e, err := events.FromModel(&rows[i])
				if err != nil {
					return err
				}
				old, _ := e.Data.Old[l.field].(string)
				later[e.ResourceID] = append(later[e.ResourceID], change{e.ID, old})
			}
			if len(rows) < 1000 {
				return nil
			}
			after = rows[len(rows)-1].ID
		}
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("webhooks: related rows: %w", err)
	}
	out := map[int64][]string{}
	for _, e := range evs {
		target := e.ResourceID
		cands := slices.Clone(now[target])
		for row, chs := range later {
			for _, c := range chs {
				if c.old == target && !slices.Contains(cands, row) {
					cands = append(cands, row)
					break
				}
			}
		}
		for _, row := range cands {
			holds := slices.Contains(now[target], row)
			for _, c := range later[row] {
				if c.pos > e.ID {
					holds = c.old == target
					break
				}
			}
			if holds {
				out[e.ID] = append(out[e.ID], row)
			}
		}
	}
	return out, nil
}

// relatedPayload names the source rows a related event touched.
type relatedPayload struct {
	Resource string   `json:"resource"`
	IDs      []string `json:"ids"`
}
