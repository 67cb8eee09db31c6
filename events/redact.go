package events

// Reader is what one caller may read of one resource's rows, asked of
// each event of that resource by Redact. Implementations must be safe for
// concurrent use: a stream's reader is shared by every subscriber with the
// same view.
//
// The redaction is one function for record history and for realtime
// streams, and it lives here, beside the envelope whose fields it trims
// (old, new, changes, classification, session variables). It asks for the
// caller's permissions through this interface, in plain types (rows as
// maps, field names), which resources.View answers without importing
// events: events knows the shape of an event, resources the permissions,
// and only the package that holds both (api) joins them. The other way
// round (resources redacting Event values) made resources import events;
// a package of its own for one function would add a layer for nothing.
type Reader interface {
	// Admin reports that the caller is the admin: it sees every
	// classification's events and the session variables whole.
	Admin() bool
	// Whole reports that an event the caller may see is shown unchanged
	// (the admin, when it did not narrow the fields).
	Whole() bool
	// Visible reports whether the caller may see one side of an event: its
	// old or new row in API form, nil when the side has none.
	Visible(row map[string]any) bool
	// Project returns what the caller sees of a visible, non-nil row,
	// without modifying it.
	Project(row map[string]any) map[string]any
	// Readable reports whether the caller sees the named field (in rows
	// and in the change lists).
	Readable(field string) bool
	// ClassificationReadable reports whether the caller may read every
	// field the resource's named classification reads (false when there is
	// no such classification).
	ClassificationReadable(name string) bool
}

// Redact returns r's view of e, and false when the caller may not see e at
// all. An event is seen when its row was visible before or after it; a
// side the caller may not see is null (so an update that moves a row into
// or out of view arrives with old or new null, and the delete of a
// visible row always arrives). Rows keep the fields the caller sees; the
// change lists name only those; of the session variables, only who did it
// (userId, role) remains. A classification's events reach a caller other
// than the admin only when it may read every field the classification
// reads and sees both sides of the transition (a row moved into view must
// not tell what it was while hidden). e is not modified.
func Redact(e *Event, r Reader) (Event, bool) {
	out := *e
	oldOK, newOK := r.Visible(e.Data.Old), r.Visible(e.Data.New)
	if !oldOK && !newOK {
		return out, false
	}
	if r.Whole() {
		return out, true
	}
	admin := r.Admin()
	if !admin && e.Data.Classification != nil {
		if (e.Data.Old != nil && !oldOK) || (e.Data.New != nil && !newOK) ||
			!r.ClassificationReadable(e.Data.Classification.Name) {
			return out, false
		}
	}
	out.Data.Old, out.Data.New = nil, nil
	if oldOK && e.Data.Old != nil {
		out.Data.Old = r.Project(e.Data.Old)
	}
	if newOK && e.Data.New != nil {
		out.Data.New = r.Project(e.Data.New)
	}
	keep := func(names []string) []string {
		kept := []string{}
		for _, n := range names {
			if r.Readable(n) {
				kept = append(kept, n)
			}
		}
		return kept
	}
	out.Data.Changes = Changes{Added: keep(e.Data.Changes.Added), Updated: keep(e.Data.Changes.Updated),
		Removed: keep(e.Data.Changes.Removed)}
	if !admin {
		out.SessionVariables = who(e.SessionVariables)
	}
	return out, true
}

// RedactAll keeps, in order, r's view of the events r lets the caller see
// (Redact), reusing evs.
func RedactAll(evs []Event, r Reader) []Event {
	out := evs[:0]
	for i := range evs {
		if e, ok := Redact(&evs[i], r); ok {
			out = append(out, e)
		}
	}
	return out
}

// who keeps, of an event's session variables, who did it (userId, role).
func who(sv map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range []string{"userId", "role"} {
		if val, ok := sv[k]; ok {
			out[k] = val
		}
	}
	return out
}
