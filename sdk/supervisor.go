package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// RestartLimitError ends a supervisor that exceeded its restart intensity.
// It matches [ErrTooManyRestarts] with errors.Is, and the last failure of
// Child (errors.Is/As see through to it as well).
type RestartLimitError struct {
	Supervisor string // the supervisor that gave up
	Child      string // the child whose failure exceeded the intensity
	Last       error  // that child's last failure
}

// Error names the supervisor, the child and its last error.
func (e *RestartLimitError) Error() string {
	return fmt.Sprintf("%v: supervisor %q gave up after child %q failed: %v", ErrTooManyRestarts, e.Supervisor, e.Child, e.Last)
}

// Unwrap returns [ErrTooManyRestarts] and the last error.
func (e *RestartLimitError) Unwrap() []error { return []error{ErrTooManyRestarts, e.Last} }

// ChildState is where a child is in its life.
type ChildState uint8

const (
	// ChildStopped: not running (not started yet, terminated, or ended and
	// not restarted).
	ChildStopped ChildState = iota
	// ChildRunning: an incarnation runs.
	ChildRunning
	// ChildRestarting: waiting for its backoff delay before starting again.
	ChildRestarting
	// ChildStuck: a stop timed out and the old incarnation still runs (a
	// goroutine that ignores cancellation). No new incarnation is started
	// until it ends.
	ChildStuck
)

var childStateNames = [...]string{"stopped", "running", "restarting", "stuck"}

// String returns "stopped", "running", "restarting" or "stuck".
func (s ChildState) String() string {
	if int(s) >= len(childStateNames) {
		return fmt.Sprintf("ChildState(%d)", int(s))
	}
	return childStateNames[s]
}

// ChildStats is a snapshot of one child.
type ChildStats struct {
	ID        string
	State     ChildState
	Restart   RestartType
	Restarts  int       // times the supervisor restarted it (any cause)
	LastError error     // last failure (exit error, start or health error)
	StartedAt time.Time // start of the current/last incarnation
	PID       int       // process ID of a process child, else 0
}

// SupervisorStats is a snapshot of a supervisor.
type SupervisorStats struct {
	// TotalRestarts counts restarts of children since the supervisor was
	// created (a one_for_all restart of 3 children counts 3).
	TotalRestarts int
	// Uptime is the time since the current run started; 0 when not running.
	Uptime time.Duration
	// LastFailure is when a child last failed (zero: never).
	LastFailure time.Time
	// ActiveChildren counts children with a running incarnation, stuck ones
	// included.
	ActiveChildren int
	// StuckChildren counts children whose stop timed out and still run.
	StuckChildren int
	// Intensity counts the restarts within the current intensity window
	// (0 when not running); the supervisor gives up when it would exceed
	// MaxRestarts within MaxSeconds.
	Intensity int
	// MaxRestarts and MaxSeconds are the restart intensity in effect
	// (the options with their defaults applied).
	MaxRestarts, MaxSeconds int
	// Children lists every child in start order.
	Children []ChildStats
}

// child is the supervisor's record of one ChildSpec. Fields written by the
// run loop (or, when not running, by the caller) are guarded by
// Supervisor.mu; the loop reads them without it.
type child struct {
	spec    ChildSpec
	c       Child
	backoff Backoff

	inc         Incarnation
	state       ChildState
	starts      int
	restarts    int
	lastErr     error
	startedAt   time.Time
	pid         int
	attempt     int    // backoff attempt within the current series
	startFailed bool   // the last Start failed: the backoff series goes on
	plan        uint64 // restart plan this child waits for (ChildRestarting)
	pending     bool   // ChildStuck: start again when the old incarnation ends
	health      context.CancelFunc
	swapping    bool // a SwapChild is under way
}

// Supervisor runs children and restarts them following OTP's rules: a
// [RestartStrategy], each child's [RestartType], a restart intensity
// (MaxRestarts within MaxSeconds) and a per-child [Backoff].
//
// Run it with [Supervisor.Serve] (blocks) or [Supervisor.Start] (in the
// background), or nest it in another supervisor with [Supervisor.AsChild].
// All methods are safe for concurrent use. One goroutine (the run loop)
// decides everything while running; each incarnation has one watcher
// goroutine, and each health-checked incarnation one checker goroutine; all
// end with the run (a stuck user goroutine is the only exception, and it is
// reported).
type Supervisor struct {
	opts  SupervisorOptions
	err0  error // invalid options, returned by Start/Serve/AddChild
	clock Clock

	mu          sync.Mutex
	children    []*child
	monitoring  bool
	run         *run // current run; nil when not running
	done        chan struct{}
	doneClosed  bool
	lastErr     error // result of the last run
	startedAt   time.Time
	lastFailure time.Time
	total       int
	planSeq     uint64
	swaps       sync.WaitGroup // SwapChild calls under way; a run's end waits for them
}

// run is one Serve of a supervisor.
type run struct {
	ctx     context.Context // cancelled when the run ends
	cancel  context.CancelFunc
	quit    chan struct{} // closed when the loop has ended
	done    chan struct{} // the Supervisor.done of this run
	err     error         // the result, written before done is closed
	exits   chan exitMsg
	timers  chan uint64
	health  chan healthMsg
	reqs    chan request
	stop    chan time.Time // a stop request with an overall deadline (zero: none)
	in      intensity
	pending map[uint64]func() bool // stop functions of pending backoff timers, by plan
}

type exitMsg struct {
	c   *child
	inc Incarnation
}

type healthMsg struct {
	c   *child
	inc Incarnation
	err error
}

type request struct {
	fn    func(r *run) error
	reply chan error
}

// NewSupervisor returns a supervisor with no children. Invalid options are
// reported by Start, Serve and AddChild as errors wrapping [ErrInvalidSpec].
// It does not start anything.
func NewSupervisor(opts SupervisorOptions) *Supervisor {
	o, err := opts.withDefaults()
	return &Supervisor{opts: o, err0: err, clock: o.Clock, done: make(chan struct{})}
}

// Name returns the supervisor's name (SupervisorOptions.Name).
func (s *Supervisor) Name() string { return s.opts.Name }

func (s *Supervisor) newChild(spec ChildSpec) (*child, error) {
	if s.err0 != nil {
		return nil, s.err0
	}
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if spec.ShutdownTimeout == 0 {
		spec.ShutdownTimeout = s.opts.ShutdownTimeout
	}
	if spec.HealthCheckInterval == 0 {
		spec.HealthCheckInterval = s.opts.HealthCheckInterval
	}
	if spec.HealthCheckTimeout == 0 {
		spec.HealthCheckTimeout = spec.HealthCheckInterval
	}
	c := &child{spec: spec, c: spec.Child, backoff: s.opts.Backoff}
	if !spec.Backoff.IsZero() {
		c.backoff = spec.Backoff.withDefaults(time.Duration(s.opts.MaxSeconds) * time.Second)
	}
	if spec.Start != nil {
		c.c = FuncChild(spec.Start)
	}
	return c, nil
}

// find returns the child with id; s.mu must be held (or the caller is the
// loop).
func (s *Supervisor) find(id string) *child {
	for _, c := range s.children {
		if c.spec.ID == id {
			return c
		}
	}
	return nil
}

func (s *Supervisor) remove(c *child) {
	s.mu.Lock()
	s.children = slices.DeleteFunc(s.children, func(x *child) bool { return x == c })
	s.mu.Unlock()
}

func (s *Supervisor) set(c *child, f func(c *child)) {
	s.mu.Lock()
	f(c)
	s.mu.Unlock()
}

// emit is the one place lifecycle events go through: stats, then the
// logger, then the hook.
func (s *Supervisor) emit(c *child, e Event) {
	e.Time = s.clock.Now()
	e.Supervisor = s.opts.Name
	s.mu.Lock()
	if c != nil {
		e.Child = c.spec.ID
		e.Incarnation = c.starts
		e.PID = c.pid
		switch e.Kind {
		case EventChildRestarting:
			c.restarts++
			s.total++
		case EventChildStartFailed, EventHealthCheckFailed:
			c.lastErr, s.lastFailure = e.Err, e.Time
		case EventChildExited:
			if e.Err != nil {
				c.lastErr, s.lastFailure = e.Err, e.Time
			}
		}
	}
	s.mu.Unlock()
	logEvent(s.opts.Logger, e)
	if s.opts.EventHook != nil {
		s.opts.EventHook(e)
	}
}

// AddChild adds a child. If the supervisor is running the child is started
// at once (blocking until Child.Start returns) and, if that fails, not
// added. It returns errors wrapping [ErrInvalidSpec], [ErrDuplicateChild] or
// [ErrStartFailed].
func (s *Supervisor) AddChild(spec ChildSpec) error {
	c, err := s.newChild(spec)
	if err != nil {
		return err
	}
	add := func() error {
		if s.find(spec.ID) != nil {
			return fmt.Errorf("%w: %q in supervisor %q", ErrDuplicateChild, spec.ID, s.opts.Name)
		}
		s.children = append(s.children, c)
		return nil
	}
	return s.do(func() error {
		return add()
	}, func(r *run) error {
		s.mu.Lock()
		err := add()
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if err := s.startChild(r, c, r.ctx); err != nil {
			s.remove(c)
			return err
		}
		return nil
	})
}

// do runs offline under s.mu when the supervisor is not running, else online
// on the run loop.
func (s *Supervisor) do(offline func() error, online func(r *run) error) error {
	for range 3 {
		s.mu.Lock()
		r := s.run
		if r == nil {
			defer s.mu.Unlock()
			return offline()
		}
		s.mu.Unlock()
		req := request{fn: online, reply: make(chan error, 1)}
		select {
		case r.reqs <- req:
			return <-req.reply
		case <-r.quit:
		}
	}
	return fmt.Errorf("%w: supervisor %q is starting and stopping too fast", ErrNotStarted, s.opts.Name)
}

func (s *Supervisor) notFound(id string) error {
	return fmt.Errorf("%w: %q in supervisor %q", ErrChildNotFound, id, s.opts.Name)
}

// TerminateChild stops a child and keeps its spec (a temporary child is
// removed), blocking until it stopped or its ShutdownTimeout passed. It is
// not restarted until [Supervisor.RestartChild]. It returns errors wrapping
// [ErrChildNotFound] or [ErrShutdownTimeout] (the child still runs).
func (s *Supervisor) TerminateChild(id string) error {
	return s.do(func() error {
		c := s.find(id)
		if c == nil {
			return s.notFound(id)
		}
		if c.current() == ChildStuck {
			return fmt.Errorf("child %q: %w: still running", id, ErrShutdownTimeout)
		}
		return nil
	}, func(r *run) error {
		c := s.find(id)
		if c == nil {
			return s.notFound(id)
		}
		var err error
		switch c.state {
		case ChildRunning:
			err = s.stopChild(c, time.Time{})
		case ChildRestarting:
			s.set(c, func(c *child) { c.state, c.plan = ChildStopped, 0 })
		case ChildStuck:
			s.set(c, func(c *child) { c.pending = false })
			err = fmt.Errorf("child %q: %w: still running", id, ErrShutdownTimeout)
		}
		if c.spec.Restart == Temporary && c.state == ChildStopped {
			s.remove(c)
		}
		return err
	})
}

// RestartChild stops the child if it runs, then starts it again at once
// (ignoring backoff; not counted in the restart intensity). It blocks until
// the new incarnation runs. It returns errors wrapping [ErrChildNotFound],
// [ErrNotStarted] (the supervisor is not running), [ErrShutdownTimeout] (the
// old incarnation still runs; it is started again when that ends) or
// [ErrStartFailed] (the child stays stopped).
func (s *Supervisor) RestartChild(id string) error {
	return s.do(func() error {
		if s.find(id) == nil {
			return s.notFound(id)
		}
		return fmt.Errorf("%w: supervisor %q", ErrNotStarted, s.opts.Name)
	}, func(r *run) error {
		c := s.find(id)
		if c == nil {
			return s.notFound(id)
		}
		switch c.state {
		case ChildStuck:
			s.set(c, func(c *child) { c.pending = true })
			return fmt.Errorf("child %q: %w: still running, restarts when it ends", id, ErrShutdownTimeout)
		case ChildRunning:
			if err := s.stopChild(c, time.Time{}); err != nil {
				s.set(c, func(c *child) { c.pending = true })
				return err
			}
		}
		s.emit(c, Event{Kind: EventChildRestarting})
		return s.startChild(r, c, r.ctx)
	})
}

// DeleteChild removes a stopped child's spec. It returns errors wrapping
// [ErrChildNotFound] or [ErrChildRunning] (running, stuck or waiting to
// restart: terminate it first).
func (s *Supervisor) DeleteChild(id string) error {
	del := func() error {
		c := s.find(id)
		if c == nil {
			return s.notFound(id)
		}
		if st := c.current(); st != ChildStopped {
			return fmt.Errorf("%w: %q is %v", ErrChildRunning, id, st)
		}
		s.children = slices.DeleteFunc(s.children, func(x *child) bool { return x == c })
		return nil
	}
	return s.do(del, func(*run) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		// While running, a stuck child is deletable only once the loop has
		// seen its end.
		if c := s.find(id); c != nil && c.state != ChildStopped {
			return fmt.Errorf("%w: %q is %v", ErrChildRunning, id, c.state)
		}
		return del()
	})
}

// current is c's state, except that a stuck incarnation that ended while no
// run watched it (between runs) counts as stopped.
func (c *child) current() ChildState {
	if c.state == ChildStuck && c.inc != nil {
		select {
		case <-c.inc.Done():
			return ChildStopped
		default:
		}
	}
	return c.state
}

func (c *child) stats() ChildStats {
	return ChildStats{ID: c.spec.ID, State: c.current(), Restart: c.spec.Restart, Restarts: c.restarts,
		LastError: c.lastErr, StartedAt: c.startedAt, PID: c.pid}
}

// FindChild returns a snapshot of the child with id, or an error wrapping
// [ErrChildNotFound]. It does not block.
func (s *Supervisor) FindChild(id string) (ChildStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.find(id)
	if c == nil {
		return ChildStats{}, s.notFound(id)
	}
	return c.stats(), nil
}

// Stats returns a snapshot of the supervisor and its children. It does not
// block.
func (s *Supervisor) Stats() SupervisorStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SupervisorStats{TotalRestarts: s.total, LastFailure: s.lastFailure,
		MaxRestarts: s.opts.MaxRestarts, MaxSeconds: s.opts.MaxSeconds,
		Children: make([]ChildStats, 0, len(s.children))}
	if s.run != nil {
		now := s.clock.Now()
		st.Uptime = now.Sub(s.startedAt)
		st.Intensity = s.run.in.count(now)
	}
	for _, c := range s.children {
		switch c.current() {
		case ChildRunning:
			st.ActiveChildren++
		case ChildStuck:
			st.ActiveChildren++
			st.StuckChildren++
		}
		st.Children = append(st.Children, c.stats())
	}
	return st
}

// StartMonitoring turns periodic health checks on: every child with a
// HealthCheck (or whose incarnation is a [HealthChecker]) is checked every
// HealthCheckInterval while it runs. Failure detection and restarts do not
// need it: they are always on. It may be called before Start. It returns
// [ErrAlreadyMonitoring] if monitoring is on already.
func (s *Supervisor) StartMonitoring() error {
	s.mu.Lock()
	if s.monitoring {
		s.mu.Unlock()
		return ErrAlreadyMonitoring
	}
	s.monitoring = true
	s.mu.Unlock()
	return s.do(func() error { return nil }, func(r *run) error {
		for _, c := range s.children {
			if c.state == ChildRunning && c.health == nil {
				s.startHealth(r, c)
			}
		}
		return nil
	})
}

// StopMonitoring turns health checks off, blocking until the supervisor has
// cancelled them. It is a no-op when monitoring is off.
func (s *Supervisor) StopMonitoring() {
	s.mu.Lock()
	s.monitoring = false
	s.mu.Unlock()
	_ = s.do(func() error { return nil }, func(*run) error {
		for _, c := range s.children {
			s.stopHealth(c)
		}
		return nil
	})
}

// Serve starts the children in order and supervises them until ctx is done
// (it then stops them in reverse order and returns nil, or an error wrapping
// [ErrShutdownTimeout] naming the children that did not stop), until
// [Supervisor.Shutdown] (same), or until it gives up (a [*RestartLimitError]
// wrapping [ErrTooManyRestarts], after stopping all children in reverse
// order). If child k fails to start, children 0..k-1 are stopped in reverse
// order and Serve returns an error wrapping [ErrStartFailed] naming child k.
// It returns [ErrAlreadyStarted] if the supervisor runs already. Serve
// blocks; a supervisor can be served again after it returned.
func (s *Supervisor) Serve(ctx context.Context) error {
	r, err := s.begin(ctx, ctx)
	if err != nil {
		return err
	}
	return s.loop(r)
}

// Start starts the children in order, atomically as Serve does, and then
// supervises them in the background until [Supervisor.Stop] or
// [Supervisor.Shutdown], or until it gives up ([Supervisor.Done],
// [Supervisor.Err]). It blocks until every child's Start returned. It
// returns errors wrapping [ErrStartFailed] (naming the child),
// [ErrAlreadyStarted] or [ErrInvalidSpec].
func (s *Supervisor) Start() error {
	r, err := s.begin(context.Background(), context.Background())
	if err != nil {
		return err
	}
	go s.loop(r) //nolint:errcheck // the result is Err()
	return nil
}

// Stop is Shutdown(5 * time.Second).
func (s *Supervisor) Stop() error { return s.Shutdown(5 * time.Second) }

// Shutdown stops the children in reverse start order, each within its
// ShutdownTimeout and all within timeout (0: no overall limit), and blocks until the supervisor
// has stopped. It returns nil, an error wrapping [ErrShutdownTimeout] naming
// each child that still runs, or, when the supervisor had already given up,
// that [*RestartLimitError]. Shutdown of a supervisor that never ran returns
// nil.
func (s *Supervisor) Shutdown(timeout time.Duration) error {
	s.mu.Lock()
	r := s.run
	err := s.lastErr
	s.mu.Unlock()
	if r == nil {
		return err
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	select {
	case r.stop <- deadline:
	case <-r.quit:
	}
	<-r.done
	return r.err
}

// Done returns a channel closed when the current (or next) run of the
// supervisor ends: stopped, or gave up. It does not block.
func (s *Supervisor) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// Err returns the result of the last run (see [Supervisor.Serve]): nil while
// running or after a clean stop, a [*RestartLimitError] after giving up.
func (s *Supervisor) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Wait blocks until the current run ends and returns its result ([Supervisor.Err]).
func (s *Supervisor) Wait() error {
	<-s.Done()
	return s.Err()
}

// begin registers a new run and starts the children in order (startCtx
// bounds the starts; runCtx's values reach the children).
func (s *Supervisor) begin(runCtx, startCtx context.Context) (*run, error) {
	if s.err0 != nil {
		return nil, s.err0
	}
	ctx, cancel := context.WithCancel(runCtx)
	r := &run{ctx: ctx, cancel: cancel, quit: make(chan struct{}),
		exits: make(chan exitMsg), timers: make(chan uint64), health: make(chan healthMsg),
		reqs: make(chan request), stop: make(chan time.Time), pending: map[uint64]func() bool{},
		in: intensity{max: s.opts.MaxRestarts, period: time.Duration(s.opts.MaxSeconds) * time.Second}}
	s.mu.Lock()
	if s.run != nil {
		s.mu.Unlock()
		cancel()
		return nil, fmt.Errorf("%w: supervisor %q", ErrAlreadyStarted, s.opts.Name)
	}
	if s.doneClosed {
		s.done, s.doneClosed = make(chan struct{}), false
	}
	r.done = s.done
	s.run, s.lastErr, s.startedAt = r, nil, s.clock.Now()
	children := slices.Clone(s.children)
	s.mu.Unlock()

	for i, c := range children {
		if c.state == ChildStuck { // left over from the previous run
			s.set(c, func(c *child) { c.pending = true })
			go s.watch(r, c, c.inc)
			continue
		}
		if err := s.startChild(r, c, startCtx); err != nil {
			for j := i - 1; j >= 0; j-- {
				_ = s.stopChild(children[j], time.Time{})
			}
			s.end(r, err)
			return nil, err
		}
	}
	return r, nil
}

// end closes a run with result err.
func (s *Supervisor) end(r *run, err error) {
	for _, stop := range r.pending {
		stop()
	}
	r.cancel()
	close(r.quit)
	// Swaps under way see the run end (their start is cancelled, their
	// commit refused) and stop what they started; wait for them, so that
	// nothing they started outlives the run.
	s.swaps.Wait()
	s.mu.Lock()
	for _, c := range s.children {
		if c.state == ChildRestarting {
			c.state, c.plan = ChildStopped, 0
		}
		c.health = nil
	}
	r.err = err
	s.run, s.lastErr = nil, err
	s.doneClosed = true
	close(r.done)
	s.mu.Unlock()
}

// loop is the run loop: the only goroutine that changes children while the
// supervisor runs.
func (s *Supervisor) loop(r *run) (err error) {
	defer func() { s.end(r, err) }()
	for {
		select {
		case <-r.ctx.Done():
			return s.stopAll(time.Time{})
		case deadline := <-r.stop:
			return s.stopAll(deadline)
		case m := <-r.exits:
			if err := s.handleExit(r, m); err != nil {
				return err
			}
		case id := <-r.timers:
			if err := s.firePlan(r, id); err != nil {
				return err
			}
		case m := <-r.health:
			if err := s.handleHealth(r, m); err != nil {
				return err
			}
		case req := <-r.reqs:
			req.reply <- req.fn(r)
		}
	}
}

type pider interface{ PID() int }

// startChild starts one incarnation of c.
func (s *Supervisor) startChild(r *run, c *child, ctx context.Context) error {
	inc, err := c.c.Start(ctx)
	if err == nil && inc == nil {
		err = errors.New("Start returned no incarnation")
	}
	if err != nil {
		err = fmt.Errorf("%w: child %q: %w", ErrStartFailed, c.spec.ID, err)
		s.set(c, func(c *child) { c.state, c.plan, c.startFailed = ChildStopped, 0, true })
		s.emit(c, Event{Kind: EventChildStartFailed, Err: err})
		return err
	}
	pid := 0
	if p, ok := inc.(pider); ok {
		pid = p.PID()
	}
	now := s.clock.Now()
	s.mu.Lock()
	c.inc, c.state, c.plan, c.pending = inc, ChildRunning, 0, false
	c.startedAt, c.pid, c.startFailed = now, pid, false
	c.starts++
	monitoring := s.monitoring
	s.mu.Unlock()
	go s.watch(r, c, inc)
	if monitoring {
		s.startHealth(r, c)
	}
	s.emit(c, Event{Kind: EventChildStarted})
	return nil
}

// watch reports the end of inc to the loop.
func (s *Supervisor) watch(r *run, c *child, inc Incarnation) {
	select {
	case <-inc.Done():
		select {
		case r.exits <- exitMsg{c, inc}:
		case <-r.quit:
		}
	case <-r.quit:
	}
}

// stopChild stops c's running incarnation within its ShutdownTimeout (and
// deadline, if not zero). On timeout the child becomes ChildStuck and the
// error, wrapping ErrShutdownTimeout, names it.
func (s *Supervisor) stopChild(c *child, deadline time.Time) error {
	inc := c.inc
	if inc == nil || c.state != ChildRunning {
		return nil
	}
	s.stopHealth(c)
	d := time.Now().Add(c.spec.ShutdownTimeout)
	if !deadline.IsZero() && deadline.Before(d) {
		d = deadline
	}
	ctx, cancel := context.WithDeadline(context.Background(), d)
	err := inc.Stop(ctx)
	cancel()
	if err != nil {
		if !errors.Is(err, ErrShutdownTimeout) {
			err = fmt.Errorf("%w: %w", ErrShutdownTimeout, err)
		}
		err = fmt.Errorf("child %q: %w", c.spec.ID, err)
	}
	select {
	case <-inc.Done():
		// Stopped — perhaps only by force (a process killed after its
		// timeout, a nested supervisor whose own children timed out): the
		// child is gone, but the timeout is still reported.
		s.set(c, func(c *child) { c.inc, c.state = nil, ChildStopped })
		s.emit(c, Event{Kind: EventChildStopped, Err: err})
		return err
	default:
	}
	if err == nil {
		// Stop returned nil but the incarnation has not ended: treat it as
		// still running (Incarnation.Stop broke its contract).
		err = fmt.Errorf("child %q: %w: stop returned but it still runs", c.spec.ID, ErrShutdownTimeout)
	}
	s.set(c, func(c *child) { c.state = ChildStuck })
	s.emit(c, Event{Kind: EventChildStopped, Err: err})
	return err
}

// stopAll stops every child in reverse start order and removes temporary
// ones. It returns the joined errors of children that still run.
func (s *Supervisor) stopAll(deadline time.Time) error {
	s.mu.Lock()
	children := slices.Clone(s.children)
	s.mu.Unlock()
	var errs []error
	var stuck []string // children that ran past their shutdown timeout
	for i := len(children) - 1; i >= 0; i-- {
		c := children[i]
		switch c.state {
		case ChildRunning:
			if err := s.stopChild(c, deadline); err != nil {
				errs = append(errs, err)
				stuck = append(stuck, c.spec.ID)
			}
		case ChildRestarting:
			s.set(c, func(c *child) { c.state, c.plan = ChildStopped, 0 })
		case ChildStuck:
			s.set(c, func(c *child) { c.pending = false })
			errs = append(errs, fmt.Errorf("child %q: %w: still running", c.spec.ID, ErrShutdownTimeout))
			stuck = append(stuck, c.spec.ID)
		}
		if c.spec.Restart == Temporary && c.state == ChildStopped {
			s.remove(c)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	slices.Reverse(stuck)
	return fmt.Errorf("supervisor %q: %w: children did not stop in time: %s: %w",
		s.opts.Name, ErrShutdownTimeout, strings.Join(stuck, ", "), errors.Join(errs...))
}

// handleExit handles the end of an incarnation the supervisor did not stop.
func (s *Supervisor) handleExit(r *run, m exitMsg) error {
	c := m.c
	if c.inc != m.inc {
		return nil // stale: the supervisor stopped it
	}
	err := m.inc.Err()
	if c.state == ChildStuck { // a stop timed out earlier; now it ended
		pending := c.pending
		s.set(c, func(c *child) { c.inc, c.state, c.pending = nil, ChildStopped, false })
		s.emit(c, Event{Kind: EventChildExited, Err: err})
		if c.spec.Restart == Temporary {
			s.remove(c)
			return nil
		}
		if pending {
			if err := s.startChild(r, c, r.ctx); err != nil {
				return s.failed(r, c, err)
			}
		}
		return nil
	}
	s.stopHealth(c)
	s.set(c, func(c *child) { c.inc, c.state = nil, ChildStopped })
	s.emit(c, Event{Kind: EventChildExited, Err: err})
	return s.failed(r, c, err)
}

// handleHealth stops a child whose health check failed and handles it as a
// failure.
func (s *Supervisor) handleHealth(r *run, m healthMsg) error {
	c := m.c
	if c.inc != m.inc || c.state != ChildRunning {
		return nil
	}
	s.stopHealth(c)
	err := fmt.Errorf("%w: child %q: %w", ErrHealthCheckFailed, c.spec.ID, m.err)
	s.emit(c, Event{Kind: EventHealthCheckFailed, Err: err})
	_ = s.stopChild(c, time.Time{}) // if stuck, it restarts when it ends
	return s.failed(r, c, err)
}

// failed applies the restart rules after c ended with err (nil: normal exit)
// or failed to start. It returns a *RestartLimitError when giving up.
func (s *Supervisor) failed(r *run, c *child, err error) error {
	restart := c.spec.Restart == Permanent || (c.spec.Restart == Transient && err != nil)
	if !restart {
		if c.spec.Restart == Temporary && c.state == ChildStopped {
			s.remove(c)
		}
		return nil
	}
	now := s.clock.Now()
	s.mu.Lock()
	exceeded := r.in.add(now)
	s.mu.Unlock()
	if exceeded {
		gerr := &RestartLimitError{Supervisor: s.opts.Name, Child: c.spec.ID, Last: err}
		s.emit(c, Event{Kind: EventSupervisorGaveUp, Err: gerr})
		if serr := s.stopAll(time.Time{}); serr != nil {
			s.opts.Logger.Error("children did not stop after giving up", "error", serr)
		}
		return gerr
	}
	// Backoff: a long enough run starts a new series. A failed start is no
	// run at all: it keeps the series going, so a worker that cannot start
	// is retried ever more slowly.
	if !c.startFailed && !c.startedAt.IsZero() && now.Sub(c.startedAt) >= c.backoff.ResetAfter {
		c.attempt = 0
	}
	delay := c.backoff.Delay(c.attempt)
	c.attempt++

	s.mu.Lock()
	children := slices.Clone(s.children)
	s.planSeq++
	plan := s.planSeq
	s.mu.Unlock()
	i := slices.Index(children, c)
	if i < 0 {
		return nil // deleted meanwhile
	}
	var affected []*child
	switch s.opts.Strategy {
	case OneForAll:
		affected = children
	case RestForOne:
		affected = children[i:]
	default:
		affected = children[i : i+1]
	}
	// Siblings that were stopped on purpose (TerminateChild, transient
	// normal exit) stay stopped.
	var group []*child
	for _, o := range affected {
		if o == c || o.state != ChildStopped {
			group = append(group, o)
		}
	}
	for j := len(group) - 1; j >= 0; j-- {
		if o := group[j]; o != c && o.state == ChildRunning {
			_ = s.stopChild(o, time.Time{}) // a stuck sibling restarts when it ends
		}
	}
	var restarting []*child
	for _, o := range group {
		if o.spec.Restart == Temporary {
			if o.state == ChildStuck {
				s.set(o, func(o *child) { o.pending = false })
			} else {
				s.set(o, func(o *child) { o.state, o.plan = ChildStopped, 0 })
				s.remove(o)
			}
			continue
		}
		if o.state == ChildStuck {
			s.set(o, func(o *child) { o.pending = true })
		} else {
			s.set(o, func(o *child) { o.state, o.plan = ChildRestarting, plan })
		}
		restarting = append(restarting, o)
	}
	// The timer is armed before the events go out, so that whoever sees
	// EventChildRestarting may advance a fake clock past it.
	if delay > 0 {
		r.pending[plan] = s.clock.AfterFunc(delay, func() {
			select {
			case r.timers <- plan:
			case <-r.quit:
			}
		})
	}
	for _, o := range restarting {
		s.emit(o, Event{Kind: EventChildRestarting, Delay: delay})
	}
	if delay <= 0 {
		return s.firePlan(r, plan)
	}
	return nil
}

// firePlan starts, in order, the children waiting for plan.
func (s *Supervisor) firePlan(r *run, plan uint64) error {
	delete(r.pending, plan)
	s.mu.Lock()
	children := slices.Clone(s.children)
	s.mu.Unlock()
	for _, c := range children {
		if c.plan != plan || c.state != ChildRestarting {
			continue
		}
		if err := s.startChild(r, c, r.ctx); err != nil {
			return s.failed(r, c, err)
		}
	}
	return nil
}

// startHealth starts the health checker of c's current incarnation, if it
// has a check.
func (s *Supervisor) startHealth(r *run, c *child) {
	check := c.spec.HealthCheck
	inc := c.inc
	if check == nil {
		hc, ok := inc.(HealthChecker)
		if !ok {
			return
		}
		check = hc.HealthCheck
	}
	ctx, cancel := context.WithCancel(r.ctx)
	s.set(c, func(c *child) { c.health = cancel })
	interval, timeout := c.spec.HealthCheckInterval, c.spec.HealthCheckTimeout
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := runCheck(ctx, check, timeout); err != nil && ctx.Err() == nil {
				select {
				case r.health <- healthMsg{c, inc, err}:
				case <-ctx.Done():
				}
				return
			}
		}
	}()
}

// runCheck runs one health check; a check that outlives timeout fails (and
// is left to return by itself).
func runCheck(ctx context.Context, check func(context.Context) error, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- check(cctx) }()
	select {
	case err := <-res:
		return err
	case <-cctx.Done():
		return fmt.Errorf("no answer within %v: %w", timeout, cctx.Err())
	}
}

func (s *Supervisor) stopHealth(c *child) {
	if c.health != nil {
		c.health()
		s.set(c, func(c *child) { c.health = nil })
	}
}

// AsChild returns the supervisor as a [Child] of another supervisor. Its
// Start starts the children (atomically, as Serve) and then supervises them
// in the background; the incarnation fails with the [*RestartLimitError]
// when this supervisor gives up, so the parent handles it as its child's
// failure; its Stop stops the children in reverse order.
func (s *Supervisor) AsChild() Child { return supervisorChild{s} }

type supervisorChild struct{ s *Supervisor }

func (sc supervisorChild) Start(ctx context.Context) (Incarnation, error) {
	r, err := sc.s.begin(context.WithoutCancel(ctx), ctx)
	if err != nil {
		return nil, err
	}
	go sc.s.loop(r) //nolint:errcheck // the result is the incarnation's Err
	return supIncarnation{sc.s, r}, nil
}

type supIncarnation struct {
	s *Supervisor
	r *run
}

func (i supIncarnation) Done() <-chan struct{} { return i.r.done }

func (i supIncarnation) Err() error {
	select {
	case <-i.r.done:
		return i.r.err
	default:
		return nil
	}
}

func (i supIncarnation) Stop(ctx context.Context) error {
	deadline, _ := ctx.Deadline()
	select {
	case i.r.stop <- deadline:
	case <-i.r.quit:
	}
	select {
	case <-i.r.done:
		if errors.Is(i.r.err, ErrShutdownTimeout) {
			return i.r.err
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: supervisor %q still stopping", ErrShutdownTimeout, i.s.opts.Name)
	}
}
