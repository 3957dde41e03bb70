package sdk

import (
	"context"
	"errors"
	"fmt"
)

// SwapChild replaces the running incarnation of child id by a new one
// started from next (nil: the child's own [Child] again, e.g. after its
// plugin binary was replaced on disk), without a gap in service:
//
//  1. the new incarnation is started next to the old one, in standby when
//     next implements [StandbyStarter] (it takes no work yet); Start blocks
//     until it is ready;
//  2. if the child has a health check (ChildSpec.HealthCheck, or an
//     incarnation implementing [HealthChecker]), it is checked once;
//  3. the swap commits: the new incarnation becomes the child's (its
//     Activate is called when it implements [Activator]), next replaces the
//     child's Child for later restarts, and [EventChildSwapped] is emitted;
//  4. the old incarnation is drained when it implements [Drainer] (it
//     finishes the work it holds, within the child's ShutdownTimeout), then
//     stopped within the ShutdownTimeout; its end is not a failure.
//
// If the new incarnation fails to start or to pass its health check, it is
// stopped and the old one keeps running untouched (a rollback):
// [EventSwapFailed] is emitted and the error wraps [ErrSwapFailed] and
// [ErrStartFailed] or [ErrHealthCheckFailed]. A swap is not a restart: it
// is not counted in the restart intensity nor in the child's restarts.
//
// A child that is not running (stopped, or waiting for a backoff restart)
// only has its Child replaced (when next is not nil), which its next start
// uses. SwapChild blocks for the whole sequence; ctx bounds steps 1 and 2.
// The run loop is not held during the start, so the supervisor keeps
// handling its other children meanwhile. Safe for concurrent use; a second
// swap of the same child while one runs fails with [ErrSwapInProgress].
// Other errors wrap [ErrChildNotFound], or [ErrNotStarted] when the
// supervisor stopped, or the child was stopped or removed, during the
// swap. A supervisor that stops waits for the swaps under way to end, the
// replaced incarnations they stop included.
func (s *Supervisor) SwapChild(ctx context.Context, id string, next Child) error {
	var (
		c       *child
		r       *run
		cur     Child
		running bool
	)
	// 1. Claim the child on the run loop.
	err := s.do(func() error {
		c := s.find(id)
		if c == nil {
			return s.notFound(id)
		}
		if next != nil {
			c.c = next
		}
		return nil
	}, func(rr *run) error {
		c = s.find(id)
		if c == nil {
			return s.notFound(id)
		}
		s.mu.Lock()
		busy := c.swapping // written off the loop (under mu) when a swap ends
		s.mu.Unlock()
		if busy {
			return fmt.Errorf("%w: child %q in supervisor %q", ErrSwapInProgress, id, s.opts.Name)
		}
		if c.state != ChildRunning {
			if next != nil {
				s.set(c, func(c *child) { c.c = next })
			}
			return nil
		}
		cur = c.c
		if next != nil {
			cur = next
		}
		s.set(c, func(c *child) { c.swapping = true })
		s.swaps.Add(1) // on the loop: before the run's end can wait for it
		r, running = rr, true
		return nil
	})
	if err != nil || !running {
		return err
	}
	defer s.swaps.Done()
	defer s.set(c, func(c *child) { c.swapping = false })

	fail := func(inc Incarnation, cause, err error) error {
		if inc != nil {
			sctx, cancel := context.WithTimeout(context.Background(), c.spec.ShutdownTimeout)
			_ = inc.Stop(sctx)
			cancel()
		}
		if errors.Is(err, cause) {
			err = fmt.Errorf("%w: child %q: %w", ErrSwapFailed, id, err)
		} else {
			err = fmt.Errorf("%w: child %q: %w: %w", ErrSwapFailed, id, cause, err)
		}
		s.emit(c, Event{Kind: EventSwapFailed, Err: err})
		return err
	}

	// 2. Start the new incarnation off the loop; give up with the run.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.ctx, cancel)()
	var inc Incarnation
	if ss, ok := cur.(StandbyStarter); ok {
		inc, err = ss.StartStandby(sctx)
	} else {
		inc, err = cur.Start(sctx)
	}
	if err == nil && inc == nil {
		err = errors.New("Start returned no incarnation")
	}
	if err != nil {
		return fail(nil, ErrStartFailed, err)
	}
	check := c.spec.HealthCheck
	if hc, ok := inc.(HealthChecker); ok && check == nil {
		check = hc.HealthCheck
	}
	if check != nil {
		if err := runCheck(sctx, check, c.spec.HealthCheckTimeout); err != nil {
			return fail(inc, ErrHealthCheckFailed, err)
		}
	}

	// 3. Commit on the loop.
	var old Incarnation
	err = s.do(func() error {
		return fmt.Errorf("%w: supervisor %q stopped during the swap", ErrNotStarted, s.opts.Name)
	}, func(rr *run) error {
		if rr != r || s.find(id) != c {
			return fmt.Errorf("%w: child %q was removed or its supervisor restarted during the swap", ErrNotStarted, id)
		}
		switch c.state {
		case ChildRunning:
			old = c.inc
			s.stopHealth(c)
		case ChildRestarting:
			// The old incarnation died meanwhile: the new one is its
			// restart (the pending timer finds no child on its plan).
		default:
			return fmt.Errorf("%w: child %q was stopped during the swap", ErrNotStarted, id)
		}
		pid := 0
		if p, ok := inc.(pider); ok {
			pid = p.PID()
		}
		now := s.clock.Now()
		s.set(c, func(c *child) {
			c.c, c.inc, c.state, c.plan, c.pending = cur, inc, ChildRunning, 0, false
			c.startedAt, c.pid, c.startFailed = now, pid, false
			c.starts++
		})
		if a, ok := inc.(Activator); ok {
			a.Activate()
		}
		go s.watch(r, c, inc)
		s.mu.Lock()
		monitoring := s.monitoring
		s.mu.Unlock()
		if monitoring {
			s.startHealth(r, c)
		}
		s.emit(c, Event{Kind: EventChildSwapped})
		return nil
	})
	if err != nil {
		return fail(inc, ErrNotStarted, err)
	}

	// 4. Drain, then stop, the old incarnation off the loop. Its end is
	// stale to the loop (c.inc moved on), so it is not handled as a
	// failure.
	if old != nil {
		if d, ok := old.(Drainer); ok {
			dctx, cancel := context.WithTimeout(context.Background(), c.spec.ShutdownTimeout)
			if err := d.Drain(dctx); err != nil {
				s.opts.Logger.Warn("the replaced incarnation did not finish its work in time; stopping it (what it holds is redelivered)",
					"child", id, "timeout", c.spec.ShutdownTimeout)
			}
			cancel()
		}
		octx, cancel := context.WithTimeout(context.Background(), c.spec.ShutdownTimeout)
		defer cancel()
		if err := old.Stop(octx); err != nil {
			s.opts.Logger.Warn("the replaced incarnation did not stop in time", "child", id, "timeout", c.spec.ShutdownTimeout, "error", err)
		}
	}
	return nil
}
