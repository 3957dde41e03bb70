package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/host/process"
	"github.com/vigil-run/vigil/sdk"
)

// Options configures a [Host]. The zero value is usable.
type Options struct {
	// Logger is the root logger; workers and supervisors log under named
	// sub-loggers. Default: a logger named "vigil" writing to Output at the
	// app's log level.
	Logger hclog.Logger
	// Output is where the default logger writes. Default os.Stderr. While
	// the host serves, lines go through a bounded queue: an output that
	// blocks (a paused pager, a pipe nobody reads) makes lines be dropped
	// and counted, never the supervisors wait.
	Output io.Writer
	// EventHook, when set, receives every lifecycle event of every
	// supervisor of the tree (see [sdk.SupervisorOptions.EventHook]: it must
	// not block). It is called before the [Host.Subscribe] subscribers.
	EventHook func(sdk.Event)
	// TempDir is where per-incarnation socket directories are created.
	// Default os.TempDir().
	TempDir string
	// MemoryCheckInterval overrides how often max_memory is checked
	// (default and maximum 1 s). For tests.
	MemoryCheckInterval time.Duration
	// MailboxWindow is the credit window of the mailbox bridge: at most
	// this many unacknowledged messages are pushed to one worker
	// incarnation. Default [DefaultMailboxWindow].
	MailboxWindow int
	// PoolWindow is how many messages of its pool's shared mailbox one
	// pool member may hold unacknowledged. Default [DefaultPoolWindow].
	PoolWindow int
	// DeliveryHook, when set, is called each time a worker acknowledges a
	// message, with the worker ID and the time from the hand-over of the
	// message to the worker's stream to its acknowledgement (the metrics'
	// delivery latency). It is called on the stream's reader goroutine:
	// it must be fast and must not block.
	DeliveryHook func(worker string, d time.Duration)
	// WatchDebounce is how long a watched plugin binary must stay
	// unchanged before it is hot-swapped. Default [DefaultWatchDebounce].
	WatchDebounce time.Duration
}

// Host is a built supervision tree for one app. Build it with [New], run it
// with [Host.Serve]. Its methods are safe for concurrent use.
type Host struct {
	opts   Options
	logger hclog.Logger
	root   *sdk.Supervisor
	sups   []*sdk.Supervisor
	bridge *bridge
	hook   func(sdk.Event) // Options.EventHook
	logw   *logWriter      // the default logger's output; nil with Options.Logger
	mu     sync.Mutex
	served bool

	reloadMu sync.Mutex   // one reload or swap at a time
	treeMu   sync.RWMutex // guards the fields below, which a reload changes
	app      *config.App
	workers  map[string]*process.Child  // by worker ID
	order    []string                   // worker IDs in start order
	owner    map[string]*sdk.Supervisor // worker ID → its supervisor
	applied  map[string]*config.Worker  // worker ID → the block it runs with (what a reload compares against)
	incs     map[string]*atomic.Uint64  // worker ID → its incarnation counter, kept across reloads
	incoming map[string]*process.Child  // worker ID → the child a reload is starting for it (Kill reaches it too)
	killed   bool                       // Kill was called: no more children are started
	byName   map[string]*sdk.Supervisor // supervisor name → supervisor
	watch    *watcher                   // nil until Serve, when a worker has watch = true

	subMu     sync.Mutex
	subs      map[*Subscription]struct{}
	subClosed bool // Serve returned: no more events
}

// Subscription receives the lifecycle events of a [Host] on a bounded
// buffered channel; see [Host.Subscribe]. Safe for concurrent use.
type Subscription struct {
	h       *Host
	c       chan sdk.Event
	dropped atomic.Int64
}

// Events returns the channel of events. It is closed by
// [Subscription.Close] or when the host's Serve returns.
func (s *Subscription) Events() <-chan sdk.Event { return s.c }

// TakeDropped returns how many events were dropped because the channel was
// full since the last call, and resets the count. It does not block.
func (s *Subscription) TakeDropped() int64 { return s.dropped.Swap(0) }

// Close unsubscribes and closes the channel (if not closed yet). It does
// not block and may be called more than once.
func (s *Subscription) Close() {
	s.h.subMu.Lock()
	defer s.h.subMu.Unlock()
	if _, ok := s.h.subs[s]; ok {
		delete(s.h.subs, s)
		close(s.c)
	}
}

// Subscribe returns a new subscription to every lifecycle event of the
// tree, with a channel buffering up to buffer events (at least 1). The
// supervisors never wait for a subscriber: when its buffer is full the
// event is dropped and counted (see [Subscription.TakeDropped]). After
// Serve returned, the channel is already closed. It does not block; the
// caller must Close the subscription when done.
func (h *Host) Subscribe(buffer int) *Subscription {
	s := &Subscription{h: h, c: make(chan sdk.Event, max(buffer, 1))}
	h.subMu.Lock()
	defer h.subMu.Unlock()
	if h.subClosed {
		close(s.c)
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

// publish is the EventHook of every supervisor: the Options.EventHook,
// then a non-blocking send to each subscriber.
func (h *Host) publish(e sdk.Event) {
	if h.hook != nil {
		h.hook(e)
	}
	h.subMu.Lock()
	defer h.subMu.Unlock()
	for s := range h.subs {
		select {
		case s.c <- e:
		default:
			s.dropped.Add(1)
		}
	}
}

// closeSubs closes every subscription: Serve returned.
func (h *Host) closeSubs() {
	h.subMu.Lock()
	defer h.subMu.Unlock()
	h.subClosed = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.c)
	}
}

// New builds the tree for app without starting anything. It checks every
// plugin binary first (exists, executable, sha256 pin) and returns all
// problems at once, each naming the config file, line and column of the
// worker block and the binary; errors wrap [process.ErrBadPlugin],
// [process.ErrChecksumMismatch] or [sdk.ErrInvalidSpec].
func New(app *config.App, opts Options) (*Host, error) {
	if app == nil || app.Root == nil {
		return nil, fmt.Errorf("%w: no app", sdk.ErrInvalidSpec)
	}
	logger := opts.Logger
	var logw *logWriter
	if logger == nil {
		out := opts.Output
		if out == nil {
			out = os.Stderr
		}
		logw = &logWriter{out: out}
		level := hclog.LevelFromString(app.LogLevel)
		if level == hclog.NoLevel {
			level = hclog.Info
		}
		color := hclog.ColorOff // hclog cannot see the terminal behind logw
		if f, ok := out.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				color = hclog.ForceColor
			}
		}
		logger = hclog.New(&hclog.LoggerOptions{Name: "vigil", Level: level, Output: logw, Color: color})
	}
	h := &Host{opts: opts, app: app, logger: logger, workers: map[string]*process.Child{}, hook: opts.EventHook,
		owner: map[string]*sdk.Supervisor{}, byName: map[string]*sdk.Supervisor{},
		applied: map[string]*config.Worker{}, incs: map[string]*atomic.Uint64{}, incoming: map[string]*process.Child{}, subs: map[*Subscription]struct{}{}, bridge: newBridge(logger.Named("mailbox"), opts.MailboxWindow, opts.PoolWindow)}
	h.bridge.deliveryHook = opts.DeliveryHook
	h.bridge.socketBase = process.SocketBase(opts.TempDir)
	h.logw = logw
	var errs []error
	h.bridge.setWorkers(app.Workers())
	for _, w := range app.Workers() {
		// The IDs of a pool share one binary: check it once.
		if err := process.Check(h.workerSpec(w, w.Name, opts)); err != nil {
			errs = append(errs, fmt.Errorf("%s: worker %q: %w", w.Range, w.Name, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	root, _, err := h.build(app.Root, opts)
	if err != nil {
		return nil, err
	}
	h.root = root
	return h, nil
}

// workerSpec maps one worker ID of a worker block to a process spec.
func (h *Host) workerSpec(w *config.Worker, id string, opts Options) process.Spec {
	s := process.Spec{
		ID: id, Path: w.Plugin, Origin: w.Range.String(), Args: w.Args, Env: w.Env, Config: w.Config, SHA256: w.SHA256,
		StartTimeout: w.StartTimeout, ShutdownTimeout: w.ShutdownTimeout, Priority: w.Priority,
		MaxMemory: w.MaxMemory, LogLevel: h.app.LogLevel, MemoryCheckInterval: opts.MemoryCheckInterval, TempDir: opts.TempDir,
	}
	if w.HealthCheck != nil {
		s.HealthCheckFailures = max(w.HealthCheck.Failures, 1)
	}
	return s
}

// build creates the sdk supervisor for s and its subtree. It returns the
// supervisor and the time its whole subtree may take to stop.
func (h *Host) build(s *config.Supervisor, opts Options) (*sdk.Supervisor, time.Duration, error) {
	maxRestarts := s.MaxRestarts
	if maxRestarts == 0 {
		maxRestarts = sdk.NoRestarts // config: 0 means none tolerated
	}
	sup := sdk.NewSupervisor(sdk.SupervisorOptions{
		Name:        s.Name,
		Strategy:    s.Strategy,
		MaxRestarts: maxRestarts,
		MaxSeconds:  s.MaxSeconds,
		Backoff:     sdk.NoBackoff, // every child sets its own
		Logger:      h.logger.Named(s.Name),
		EventHook:   h.publish,
	})
	h.sups = append(h.sups, sup)
	h.byName[s.Name] = sup
	var total time.Duration
	for _, n := range s.Children {
		switch {
		case n.Worker != nil:
			w := n.Worker
			for _, id := range w.IDs {
				child, cs := h.newWorker(w, id)
				if err := sup.AddChild(cs); err != nil {
					return nil, 0, fmt.Errorf("%s: worker %q: %w", w.Range, w.Name, err)
				}
				h.workers[id] = child
				h.order = append(h.order, id)
				h.owner[id] = sup
				h.applied[id] = w
				total += child.Spec().ShutdownTimeout
			}
		case n.Supervisor != nil:
			nested, t, err := h.build(n.Supervisor, opts)
			if err != nil {
				return nil, 0, err
			}
			t += time.Second // margin for the nested supervisor's own work
			if err := sup.AddChild(sdk.ChildSpec{
				ID: n.Supervisor.Name, Child: nested.AsChild(), Restart: sdk.Permanent,
				ShutdownTimeout: t, Backoff: sdk.NoBackoff,
			}); err != nil {
				return nil, 0, fmt.Errorf("%s: supervisor %q: %w", n.Supervisor.Range, n.Supervisor.Name, err)
			}
			total += t
		}
	}
	if err := sup.StartMonitoring(); err != nil {
		return nil, 0, err
	}
	return sup, total, nil
}

// newWorker returns the process child of worker ID id of block w and its
// child spec for the supervisor.
func (h *Host) newWorker(w *config.Worker, id string) (*process.Child, sdk.ChildSpec) {
	spec := h.workerSpec(w, id, h.opts)
	spec.Mailbox = h.bridge.handlerFor(id)
	h.treeMu.Lock()
	if h.incs[id] == nil {
		h.incs[id] = new(atomic.Uint64)
	}
	spec.Incarnations = h.incs[id]
	h.treeMu.Unlock()
	child := process.New(spec, h.logger.Named(id))
	cs := sdk.ChildSpec{
		ID: id, Child: child, Restart: w.Restart,
		ShutdownTimeout: w.ShutdownTimeout, Priority: w.Priority, MaxMemoryBytes: w.MaxMemory,
		Backoff: backoff(w.Backoff),
	}
	if w.HealthCheck != nil {
		cs.HealthCheckInterval = w.HealthCheck.Interval
		cs.HealthCheckTimeout = w.HealthCheck.Timeout
	}
	return child, cs
}

// backoff maps a worker's backoff block; zero restarts at once.
func backoff(b config.Backoff) sdk.Backoff {
	if b.Min == 0 && b.Max == 0 {
		return sdk.NoBackoff
	}
	return sdk.Backoff{Min: b.Min, Max: max(b.Max, b.Min), Jitter: b.Jitter}
}

// Logger returns the host's root logger.
func (h *Host) Logger() hclog.Logger { return h.logger }

// Root returns the root supervisor (for stats and tests).
func (h *Host) Root() *sdk.Supervisor { return h.root }

// Worker returns the process child of a worker ID, or nil. A hot swap
// from a reload that changed the worker's settings replaces it.
func (h *Host) Worker(id string) *process.Child {
	h.treeMu.RLock()
	defer h.treeMu.RUnlock()
	return h.workers[id]
}

// WorkerIDs returns every worker ID in start order (a new slice); a
// reload changes it.
func (h *Host) WorkerIDs() []string {
	h.treeMu.RLock()
	defer h.treeMu.RUnlock()
	return append([]string(nil), h.order...)
}

// App returns the app definition the host runs now (the last one
// reloaded). Do not modify it.
func (h *Host) App() *config.App {
	h.treeMu.RLock()
	defer h.treeMu.RUnlock()
	return h.app
}

// Supervisors returns every supervisor of the tree, the root first, each
// before its nested supervisors (a new slice).
func (h *Host) Supervisors() []*sdk.Supervisor { return append([]*sdk.Supervisor(nil), h.sups...) }

// Serve starts the tree (workers in file order) and supervises it until ctx
// is done, then stops everything in reverse order, each worker within its
// shutdown timeout (graceful Stop RPC, then SIGTERM, then SIGKILL of its
// process group). It blocks. It returns nil after a clean stop; an error
// wrapping [sdk.ErrTooManyRestarts] (a [*sdk.RestartLimitError]) when the
// root supervisor gave up, after stopping everything; an error wrapping
// [sdk.ErrStartFailed] when a worker could not be started at first; or one
// wrapping [sdk.ErrShutdownTimeout] naming workers that had to be killed.
// A Host is served once; a second Serve returns [sdk.ErrAlreadyStarted].
func (h *Host) Serve(ctx context.Context) error {
	h.mu.Lock()
	if h.served {
		h.mu.Unlock()
		return sdk.ErrAlreadyStarted
	}
	h.served = true
	h.mu.Unlock()
	if h.logw != nil {
		h.logw.start()
		defer h.logw.stop()
	}
	app := h.App()
	h.logger.Info("starting app", "app", app.Name, "file", app.File, "workers", len(h.WorkerIDs()), "preset", app.Preset)
	stopWatch := h.startWatching(ctx)
	err := h.root.Serve(ctx)
	stopWatch()
	h.closeSubs()
	if err != nil && ctx.Err() != nil && errors.Is(err, sdk.ErrStartFailed) && errors.Is(err, context.Canceled) {
		// Stopped while starting: a shutdown, not a failure.
		h.logger.Info("app stopped during start-up", "app", h.App().Name)
		return nil
	}
	switch {
	case err == nil:
		h.logger.Info("app stopped", "app", h.App().Name)
	case errors.Is(err, sdk.ErrTooManyRestarts):
		h.logger.Error("app gave up: restart intensity exceeded; every worker was stopped", "app", h.App().Name, "error", err)
	default:
		h.logger.Error("app stopped with an error", "app", h.App().Name, "error", err)
	}
	return err
}

// Kill SIGKILLs every worker's process group at once, without waiting (a
// second Ctrl-C). A running Serve then finishes its shutdown promptly.
func (h *Host) Kill() {
	h.treeMu.Lock()
	defer h.treeMu.Unlock()
	h.killed = true
	for _, id := range h.order {
		h.workers[id].Kill()
	}
	for _, c := range h.incoming { // being started by a reload
		c.Kill()
	}
}

// errHostKilled refuses reload starts after Kill.
var errHostKilled = errors.New("vigil: the host is killing every worker; not starting another")

// admit registers c, about to be started for worker id by a reload, so
// that Kill reaches it; the returned function forgets it. It fails after
// Kill.
func (h *Host) admit(id string, c *process.Child) (func(), error) {
	h.treeMu.Lock()
	defer h.treeMu.Unlock()
	if h.killed {
		return nil, fmt.Errorf("worker %q: %w", id, errHostKilled)
	}
	h.incoming[id] = c
	return func() {
		h.treeMu.Lock()
		if h.incoming[id] == c {
			delete(h.incoming, id)
		}
		h.treeMu.Unlock()
	}, nil
}
