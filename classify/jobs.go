package classify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/herald-dev/herald/events"
	"github.com/herald-dev/herald/resources"
)

// Definition states in herald_classifications.
const (
	stateBackfill = "backfill" // every row is being evaluated; cursor is the last id done
	stateReady    = "ready"
	stateRemove   = "remove" // no longer declared: outcomes are being retired
)

const leaseName = "classifier"

// definition is a row of herald_classifications.
type definition struct {
	ResourceName string
	Name         string
	Expression   string
	State        string
	Cursor       string
	EvaluatedAt  int64 // unix µs: the time-based evaluation covered up to here
}

// Start runs the background job until Stop; safe to call twice.
func (c *Classifier) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel, c.done = cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.cfg.Interval)
		defer t.Stop()
		for {
			if err := c.safeRun(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, resources.ErrStopped) {
				c.cfg.Logger.Error("classify: background evaluation", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-c.kick:
			}
		}
	}()
	return nil
}

// Stop stops the job and waits for the batch in flight; safe to call twice.
func (c *Classifier) Stop() {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.cancel = nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
		// Hand the lease over at once: the next instance (or this one
		// restarted) need not wait for it to expire.
		ctx, cancelRelease := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelRelease()
		if err := c.store.Write(ctx, func(tx *gorm.DB) error {
			return tx.Exec("DELETE FROM herald_leases WHERE name = ? AND owner = ?", leaseName, c.owner).Error
		}); err != nil && !errors.Is(err, resources.ErrStopped) {
			c.cfg.Logger.Warn("classify: release the lease", "err", err)
		}
	}
}

// SchemaChanged wakes the job to re-evaluate changed definitions
// (resources.StoreConfig.OnSchema).
func (c *Classifier) SchemaChanged(int) {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Classifier) safeRun(ctx context.Context) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("classify: panicked: %v", p)
		}
	}()
	return c.RunOnce(ctx)
}

// RunOnce does one round of the background job if this instance holds
// the lease: it brings the stored definitions in line with the schema
// (re-evaluating added and changed classifications, retiring removed
// ones) and re-evaluates the outcomes that depend on now. A long
// re-evaluation goes in slices of about half an interval, with the
// time-based evaluations in between, so they still run every interval.
func (c *Classifier) RunOnce(ctx context.Context) error {
	ctx = events.WithRequestInfo(ctx, &events.RequestInfo{SessionVariables: map[string]any{"role": "system"}})
	if ok, err := c.Acquire(ctx); err != nil || !ok {
		return err
	}
	renewed := time.Now()
	defs, err := c.reconcile(ctx)
	if err != nil {
		return err
	}
	slice := max(c.cfg.Interval/2, 100*time.Millisecond)
	for first := true; ; first = false {
		busy := false
		for _, d := range defs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := c.keep(ctx, &renewed); err != nil {
				return ignoreLost(err)
			}
			var done bool
			switch d.State {
			case stateBackfill:
				done, err = c.backfill(ctx, d, time.Now().Add(slice))
			case stateRemove:
				done, err = c.retire(ctx, d, time.Now().Add(slice))
			case stateReady:
				done = true
				if first || time.Since(time.UnixMicro(d.EvaluatedAt)) >= c.cfg.Interval/2 {
					err = c.evaluateTime(ctx, d, &renewed)
				}
			default:
				done = true
			}
			if err != nil {
				return ignoreLost(err)
			}
			busy = busy || !done
		}
		if !busy {
			return nil
		}
	}
}

// errLeaseLost stops a round whose instance no longer holds the lease.
var errLeaseLost = errors.New("classify: the lease went to another instance")

func ignoreLost(err error) error {
	if errors.Is(err, errLeaseLost) {
		return nil
	}
	return err
}

// keep renews the lease when a third of it has passed since renewed.
func (c *Classifier) keep(ctx context.Context, renewed *time.Time) error {
	if time.Since(*renewed) < c.leaseTTL()/3 {
		return nil
	}
	ok, err := c.Acquire(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errLeaseLost
	}
	*renewed = time.Now()
	return nil
}

// leaseTTL is how long the lease lasts without renewal: an instance that
// dies hands the job over after that.
func (c *Classifier) leaseTTL() time.Duration { return 2*c.cfg.Interval + 5*time.Second }

// Acquire takes or renews the lease of the background job; false when
// another instance holds it. RunOnce calls it first.
func (c *Classifier) Acquire(ctx context.Context) (bool, error) {
	var held bool
	err := c.store.Write(ctx, func(tx *gorm.DB) error {
		now := c.now()
		res := tx.Exec(`INSERT INTO herald_leases (name, owner, expires_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE herald_leases.owner = excluded.owner OR herald_leases.expires_at < ?`,
			leaseName, c.owner, now.Add(c.leaseTTL()).UnixMicro(), now.UnixMicro())
		held = res.RowsAffected == 1
		return res.Error
	})
	if err != nil {
		return false, fmt.Errorf("classify: lease: %w", err)
	}
	return held, nil
}

// reconcile records the schema's classifications: new or changed ones
// start a backfill, undeclared ones are marked for removal. It returns
// every definition.
func (c *Classifier) reconcile(ctx context.Context) ([]*definition, error) {
	var defs []*definition
	err := c.store.Write(ctx, func(tx *gorm.DB) error {
		defs = nil
		if err := tx.Table("herald_classifications").Order("resource_name, name").Find(&defs).Error; err != nil {
			return err
		}
		byKey := map[[2]string]*definition{}
		for _, d := range defs {
			byKey[[2]string{d.ResourceName, d.Name}] = d
		}
		now := c.now().UnixMicro()
		declared := map[[2]string]bool{}
		for _, r := range c.store.Schema().Resources {
			for _, cl := range r.ClassificationList() {
				k := [2]string{r.Name, cl.Name}
				declared[k] = true
				d := byKey[k]
				if d != nil && d.Expression == cl.Expr && d.State != stateRemove {
					continue
				}
				nd := &definition{ResourceName: r.Name, Name: cl.Name, Expression: cl.Expr, State: stateBackfill, EvaluatedAt: now}
				if err := tx.Exec(`INSERT INTO herald_classifications (resource_name, name, expression, state, cursor, evaluated_at)
VALUES (?, ?, ?, ?, '', ?) ON CONFLICT (resource_name, name) DO UPDATE SET expression = excluded.expression,
state = excluded.state, cursor = excluded.cursor, evaluated_at = excluded.evaluated_at`,
					nd.ResourceName, nd.Name, nd.Expression, nd.State, nd.EvaluatedAt).Error; err != nil {
					return err
				}
				if d == nil {
					defs = append(defs, nd)
				} else {
					*d = *nd
				}
			}
		}
		for _, d := range defs {
			if !declared[[2]string{d.ResourceName, d.Name}] && d.State != stateRemove {
				if err := tx.Exec(`UPDATE herald_classifications SET state = ?, cursor = '' WHERE resource_name = ? AND name = ?`,
					stateRemove, d.ResourceName, d.Name).Error; err != nil {
					return err
				}
				d.State, d.Cursor = stateRemove, ""
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("classify: definitions: %w", err)
	}
	return defs, nil
}

// current returns the declared classification d describes, or nil when
// the schema moved on (the next round starts over).
func (c *Classifier) current(d *definition) (*resources.Resource, *resources.Classification) {
	r := c.store.Schema().Resource(d.ResourceName)
	if r == nil {
		return nil, nil
	}
	cl := r.Classification(d.Name)
	if cl == nil || cl.Expr != d.Expression {
		return nil, nil
	}
	return r, cl
}

// backfill evaluates every live row, in id order, one batch per write
// transaction of its own, from the stored cursor (so a restart resumes),
// until done or until the deadline (done false: the next slice goes on).
func (c *Classifier) backfill(ctx context.Context, d *definition, until time.Time) (bool, error) {
	started, total, moved := time.Now(), 0, 0
	if d.Cursor == "" {
		c.cfg.Logger.Info("classify: evaluating every row", "resource", d.ResourceName, "classification", d.Name)
	}
	for d.State == stateBackfill {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if time.Now().After(until) {
			return false, nil
		}
		r, cl := c.current(d)
		if cl == nil {
			return true, nil // the schema moved on: the next round starts over
		}
		var n, t int
		var next definition
		began, writes := time.Now(), c.store.Writes()
		err := c.store.WriteAlone(ctx, func(tx *gorm.DB) error {
			rows, err := c.store.ScanLive(tx, r.Name, d.Cursor, c.cfg.BatchSize, nil, time.Time{}, time.Time{})
			if err != nil {
				return err
			}
			if t, err = c.evaluate(tx, r, cl, rows); err != nil {
				return err
			}
			n, next = len(rows), *d
			if len(rows) < c.cfg.BatchSize {
				next.State, next.Cursor = stateReady, ""
			} else {
				next.Cursor, _ = rows[len(rows)-1][resources.ColID].(string)
			}
			return tx.Exec(`UPDATE herald_classifications SET state = ?, cursor = ? WHERE resource_name = ? AND name = ? AND expression = ?`,
				next.State, next.Cursor, d.ResourceName, d.Name, d.Expression).Error
		})
		if err != nil {
			return false, fmt.Errorf("classify: evaluate %s.%s: %w", d.ResourceName, d.Name, err)
		}
		*d = next
		total, moved = total+n, moved+t
		c.pace(ctx, time.Since(began), writes)
	}
	c.cfg.Logger.Info("classify: every row evaluated", "resource", d.ResourceName, "classification", d.Name,
		"rows in the last slice", total, "transitions", moved, "duration", time.Since(started).Round(time.Millisecond).String())
	return true, nil
}

// evaluate compares cl's outcome on rows now with the stored one, and
// records the transitions and the new outcomes in tx. It returns how many
// rows moved.
func (c *Classifier) evaluate(tx *gorm.DB, r *resources.Resource, cl *resources.Classification, rows []resources.Row) (int, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	ids := make([]string, len(rows))
	for i, row := range rows {
		ids[i], _ = row[resources.ColID].(string)
	}
	state := map[outcomeKey]*bool{}
	if err := loadOutcomes(tx, r.Name, ids, cl.Name, state); err != nil {
		return 0, err
	}
	dirty := map[outcomeKey]bool{}
	now := c.now()
	for i, row := range rows {
		k := outcomeKey{r.Name, ids[i], cl.Name}
		from, to := state[k], boolPtr(cl.Eval(r.Activation(row), now))
		if sameOutcome(from, to) {
			continue
		}
		state[k], dirty[k] = to, true
		if err := appendTransition(tx, nil, r.Name, ids[i], cl.Name, from, to, row, row); err != nil {
			return 0, err
		}
	}
	return len(dirty), saveOutcomes(tx, state, dirty, nil)
}

// evaluateTime re-evaluates a classification that depends on now, on the
// rows whose outcome can have changed since the last run.
func (c *Classifier) evaluateTime(ctx context.Context, d *definition, renewed *time.Time) error {
	r, cl := c.current(d)
	if cl == nil || !cl.UsesNow() {
		return nil
	}
	windows := cl.Windows()
	if windows == nil {
		c.mu.Lock()
		first := !c.unnarrowed[d.ResourceName+"."+d.Name+"\x00"+d.Expression]
		c.unnarrowed[d.ResourceName+"."+d.Name+"\x00"+d.Expression] = true
		c.mu.Unlock()
		if first {
			c.cfg.Logger.Warn("classify: this classification uses now in a way that cannot be narrowed to a range of a datetime field; every row is evaluated on each run",
				"resource", d.ResourceName, "classification", d.Name, "expression", d.Expression)
		}
	}
	// The window reaches back windowOverlap before the last run's end: a
	// write that evaluated before that end but committed after the run
	// read its rows is looked at again (outcomes are compared with the
	// stored ones, so looking twice is harmless).
	t0, t1 := time.UnixMicro(d.EvaluatedAt).UTC().Add(-windowOverlap), c.now()
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.keep(ctx, renewed); err != nil {
			return err
		}
		var n int
		var last string
		err := c.store.WriteAlone(ctx, func(tx *gorm.DB) error {
			rows, err := c.store.ScanLive(tx, r.Name, after, c.cfg.BatchSize, windows, t0, t1)
			if err != nil {
				return err
			}
			if _, err := c.evaluate(tx, r, cl, rows); err != nil {
				return err
			}
			n, last = len(rows), ""
			if n > 0 {
				last, _ = rows[n-1][resources.ColID].(string)
			}
			if n < c.cfg.BatchSize {
				return tx.Exec(`UPDATE herald_classifications SET evaluated_at = ? WHERE resource_name = ? AND name = ? AND expression = ? AND state = ?`,
					t1.UnixMicro(), d.ResourceName, d.Name, d.Expression, stateReady).Error
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("classify: evaluate %s.%s: %w", d.ResourceName, d.Name, err)
		}
		if n < c.cfg.BatchSize {
			d.EvaluatedAt = t1.UnixMicro()
			return nil
		}
		after = last
	}
}

// pace waits as long as a background batch took when other writes came
// in meanwhile,
// so that re-evaluating a large table holds a busy write path (SQLite's
// one writer connection, PostgreSQL's position lock) at most half the
// time: writers slow down while it runs but are never starved (measured:
// creates at 0.20x of their rate during an unpaced re-evaluation on
// SQLite). On an idle write path it goes on at once.
func (c *Classifier) pace(ctx context.Context, took time.Duration, writesBefore uint64) {
	if c.store.Writes() == writesBefore { // no request wrote meanwhile
		return
	}
	t := time.NewTimer(min(took, time.Second))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// windowOverlap is how far each time-based run looks back before the
// previous run's end: longer than a write transaction may take
// (HERALD_WRITE_TIMEOUT, 10 s by default).
const windowOverlap = time.Minute

// retire emits x to null for every stored outcome of a classification
// that is no longer declared and deletes them, then the definition, until
// done or the deadline. It walks the resource's live rows by id (the
// outcomes' key leads with the row id) and takes their outcomes by a
// DELETE … RETURNING, so each is retired once; what is left at the end
// (rows deleted meanwhile) goes without events. When the resource itself
// is gone, its rows went without events, and so do their outcomes.
func (c *Classifier) retire(ctx context.Context, d *definition, until time.Time) (bool, error) {
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if time.Now().After(until) {
			return false, nil
		}
		var n int
		var next string
		began, writes := time.Now(), c.store.Writes()
		err := c.store.WriteAlone(ctx, func(tx *gorm.DB) error {
			n, next = 0, ""
			r := c.store.Schema().Resource(d.ResourceName)
			var rows []resources.Row
			if r != nil {
				var err error
				if rows, err = c.store.ScanLive(tx, r.Name, d.Cursor, c.cfg.BatchSize, nil, time.Time{}, time.Time{}); err != nil {
					return err
				}
			}
			n = len(rows)
			if n > 0 {
				byID := make(map[string]resources.Row, n)
				ids := make([]string, n)
				for i, row := range rows {
					ids[i], _ = row[resources.ColID].(string)
					byID[ids[i]] = row
				}
				next = ids[n-1]
				var outs []struct {
					RowID   string
					Outcome bool
				}
				if err := tx.Raw(`DELETE FROM herald_outcomes WHERE row_id IN ? AND resource_name = ? AND classification = ?
RETURNING row_id, outcome`, ids, d.ResourceName, d.Name).Find(&outs).Error; err != nil {
					return err
				}
				for _, o := range outs {
					row := byID[o.RowID]
					if err := appendTransition(tx, nil, r.Name, o.RowID, d.Name, boolPtr(o.Outcome), nil, row, row); err != nil {
						return err
					}
				}
			}
			if n < c.cfg.BatchSize {
				if err := tx.Exec(`DELETE FROM herald_outcomes WHERE resource_name = ? AND classification = ?`,
					d.ResourceName, d.Name).Error; err != nil {
					return err
				}
				return tx.Exec(`DELETE FROM herald_classifications WHERE resource_name = ? AND name = ? AND state = ?`,
					d.ResourceName, d.Name, stateRemove).Error
			}
			return tx.Exec(`UPDATE herald_classifications SET cursor = ? WHERE resource_name = ? AND name = ? AND state = ?`,
				next, d.ResourceName, d.Name, stateRemove).Error
		})
		if err != nil {
			return false, fmt.Errorf("classify: retire %s.%s: %w", d.ResourceName, d.Name, err)
		}
		c.pace(ctx, time.Since(began), writes)
		if n < c.cfg.BatchSize {
			d.State = ""
			c.cfg.Logger.Info("classify: classification retired", "resource", d.ResourceName, "classification", d.Name)
			return true, nil
		}
		d.Cursor = next
	}
}
