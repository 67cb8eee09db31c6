package resources

import (
	"context"
	"errors"

	"github.com/herald-dev/herald/models"
)

// Capability is what one caller may do with one resource: the basis of
// the API description it is served (GET /v1/_openapi). A nil field list
// means the action is not allowed.
type Capability struct {
	Resource *Resource
	// Read lists the columns the caller may read, system columns included,
	// in table order.
	Read []*Field
	// Create and Update list the declared fields the caller may write.
	Create, Update []*Field
	// Delete tells whether the caller may delete.
	Delete bool
}

// Capabilities lists, for the caller in ctx, every resource it may use
// with at least one action, in schema order, and the schema version they
// come from (the role's permissions are part of the schema, so the pair
// (version, role) determines the answer).
func (s *Store) Capabilities(ctx context.Context) ([]Capability, int, error) {
	st := s.state.Load()
	var out []Capability
	for _, r := range st.schema.Resources {
		c := Capability{Resource: r}
		allowed := false
		for _, action := range []string{ActionRead, ActionCreate, ActionUpdate, ActionDelete} {
			a, err := s.authorize(ctx, st.schema, r, action)
			if errors.Is(err, models.ErrForbidden) || errors.Is(err, models.ErrUnauthorized) {
				continue
			}
			if err != nil {
				return nil, 0, err
			}
			allowed = true
			switch action {
			case ActionRead:
				c.Read = []*Field{}
				for _, f := range r.Columns() {
					if a.readable(f.Name) {
						c.Read = append(c.Read, f)
					}
				}
			case ActionCreate, ActionUpdate:
				fs := []*Field{}
				for _, f := range r.Fields {
					if a.writable(f.Name) {
						fs = append(fs, f)
					}
				}
				if action == ActionCreate {
					c.Create = fs
				} else {
					c.Update = fs
				}
			case ActionDelete:
				c.Delete = true
			}
		}
		if allowed {
			out = append(out, c)
		}
	}
	return out, st.version, nil
}

// FilterOperators lists the operators a list request may filter this
// column with (name__op=value; eq also as plain name=value), or none when
// it is not filterable. The list parser applies the same rules.
func (f *Field) FilterOperators() []string {
	if !f.Filterable && f.Type != TypeRelation {
		return nil
	}
	switch f.Type {
	case TypeJSON:
		return []string{"isnull"}
	case TypeBoolean:
		return []string{"eq", "neq", "isnull"}
	case TypeString, TypeText, TypeEnum:
		return filterOps
	}
	return []string{"eq", "neq", "gt", "gte", "lt", "lte", "in", "isnull"}
}
