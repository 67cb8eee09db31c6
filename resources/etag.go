package resources

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	"github.com/herald-dev/herald/models"
)

// ETag is a record's entity tag, a strong validator (RFC 9110): a hash of
// its id, its updated_at and its resource's shape (the declared fields),
// quoted. Every change of a row moves its updated_at forward (writes keep
// it strictly increasing per row, even within one microsecond), an update
// that changes nothing leaves it, and a schema import that changes what a
// record looks like (a new field filled with its default) changes the
// shape, so the tag changes exactly when the record may have. The tag
// does not depend on which fields a caller sees: a PATCH with If-Match
// compares against the same tag whatever the role or the fields
// parameter of the GET that produced it.
func (r *Resource) ETag(row Row) string {
	id, _ := row[ColID].(string)
	at, _ := row[ColUpdatedAt].(string)
	h := fnv.New64a()
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(at))
	h.Write([]byte{0})
	h.Write([]byte(r.shape))
	return `"` + strconv.FormatUint(h.Sum64(), 16) + `"`
}

// shapeOf is what a record of r looks like, for its tags: its fields and
// whether it has deleted_at.
func shapeOf(r *Resource) string {
	raw, _ := json.Marshal(struct {
		Fields     []*Field
		SoftDelete bool
	}{r.Fields, r.SoftDelete})
	h := fnv.New64a()
	h.Write(raw)
	return strconv.FormatUint(h.Sum64(), 16)
}

// expandedETag is the tag of a record served with include: the included
// records change the representation, so they change the tag too. It is
// not the record's own tag, so it never satisfies an If-Match.
func expandedETag(tag string, expand any) string {
	raw, _ := json.Marshal(expand)
	h := fnv.New64a()
	h.Write([]byte(tag))
	h.Write(raw)
	return `"` + strconv.FormatUint(h.Sum64(), 16) + `-x"`
}

// checkIfMatch evaluates an If-Match list against the current row: nil is
// no precondition, "*" matches any row, otherwise one of the tags must be
// the row's (strong comparison: a weak tag never matches).
func (r *Resource) checkIfMatch(row Row, ifMatch []string) error {
	if ifMatch == nil || slices.Contains(ifMatch, "*") {
		return nil
	}
	if slices.Contains(ifMatch, r.ETag(row)) {
		return nil
	}
	return fmt.Errorf("resources: %s: %w", row[ColID], models.ErrPreconditionFailed)
}

// nextUpdatedAt is the updated_at of a change to a row whose updated_at
// is prev (a time or its output string): now, or one microsecond after
// prev when the clock has not moved past it (a frozen or stepped-back
// clock, instances with skewed clocks), so that a row's versions (and so
// its ETag) never repeat.
func (s *Store) nextUpdatedAt(prev any) time.Time {
	now := s.now()
	if t, ok := prev.(time.Time); ok {
		if !now.After(t) {
			return t.Add(time.Microsecond)
		}
		return now
	}
	if at, ok := prev.(string); ok {
		if prev, err := time.Parse(TimeFormat, at); err == nil && !now.After(prev) {
			return prev.Add(time.Microsecond)
		}
	}
	return now
}
