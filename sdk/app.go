package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// ErrAppShutdown is returned by Start and Run of an [App] after its
// Shutdown: Shutdown closes the worker inboxes for good.
var ErrAppShutdown = errors.New("vigil: app shut down")

// App is the seed's application builder: goroutine workers and worker pools
// under one supervisor configured by a [Preset], each worker with an
// [*Inbox] that survives its restarts.
//
//	app := sdk.NewApp().
//		Worker("service", service).
//		WorkerPool("handlers", handle, 4)
//	if err := app.Run(ctx); err != nil { … }
//
// The preset's values are all used: MaxRestarts/MaxSeconds are the restart
// intensity, HealthCheckInterval the default health-check interval (checks
// run from Start), ShutdownTimeout each worker's stop timeout,
// MailboxCapacity each inbox's capacity, BackoffMin/BackoffMax the restart
// backoff and LogLevel the level of the default logger ("debug" logs every
// lifecycle event). Workers are permanent and [OneForOne] unless configured
// otherwise.
//
// The chained configuration methods (Worker, WorkerPool, Strategy, Logger,
// LogOutput, OnEvent) must be called before Build; they are not safe for
// concurrent use. The other methods are.
type App struct {
	preset   Preset
	vals     PresetValues
	strategy RestartStrategy
	logger   hclog.Logger
	logOut   io.Writer
	hook     func(Event)
	workers  []appWorker
	errs     []error

	mu       sync.Mutex
	sup      *Supervisor
	inboxes  map[string]*Inbox // worker IDs, pool prefixes and pool member IDs
	shutdown bool
}

type appWorker struct {
	id, pool string // pool is "" for a single worker
	fn       func(ctx context.Context) error
	health   func(ctx context.Context) error // nil: not health-checked
}

type inboxKey struct{}

// InboxFromContext returns the inbox of the [App] worker whose ctx this is
// (a pool's members share one), or nil if ctx is not an App worker's.
func InboxFromContext(ctx context.Context) *Inbox {
	in, _ := ctx.Value(inboxKey{}).(*Inbox)
	return in
}

// NewApp returns an app with the [PresetProduction] defaults.
func NewApp() *App { return NewAppWithPreset(PresetProduction) }

// NewAppWithPreset returns an app with p's defaults.
func NewAppWithPreset(p Preset) *App {
	return &App{preset: p, vals: p.Values(), logOut: os.Stderr}
}

// Preset returns the app's preset.
func (a *App) Preset() Preset { return a.preset }

// Worker adds a permanent goroutine worker; fn finds its inbox with
// [InboxFromContext].
func (a *App) Worker(id string, fn func(ctx context.Context) error) *App {
	a.add(appWorker{id: id, fn: fn})
	return a
}

// WorkerPool adds n permanent workers running fn, with IDs prefix_0 …
// prefix_{n-1}, sharing one inbox (named prefix, and also reachable by each
// member's ID) from which they pull work.
func (a *App) WorkerPool(prefix string, fn func(ctx context.Context) error, n int) *App {
	if n <= 0 || prefix == "" {
		a.errs = append(a.errs, fmt.Errorf("%w: worker pool %q needs a name and a positive size (got %d)", ErrInvalidSpec, prefix, n))
		return a
	}
	for i := range n {
		a.add(appWorker{id: fmt.Sprintf("%s_%d", prefix, i), pool: prefix, fn: fn})
	}
	return a
}

// HealthCheck attaches a health check to the worker named name, or to every
// member of the pool named name. The supervisor calls check at the
// preset's HealthCheckInterval (with that interval as its timeout) once the
// app has started; an error restarts the worker like a failure. An unknown
// name is reported by Build as an error wrapping [ErrChildNotFound].
func (a *App) HealthCheck(name string, check func(ctx context.Context) error) *App {
	found := false
	for i := range a.workers {
		if w := &a.workers[i]; w.id == name || w.pool == name {
			w.health, found = check, true
		}
	}
	if !found {
		a.errs = append(a.errs, fmt.Errorf("%w: health check for %q: no such worker or pool (add it first)", ErrChildNotFound, name))
	}
	return a
}

func (a *App) add(w appWorker) {
	if a.built() {
		a.errs = append(a.errs, fmt.Errorf("%w: worker %q added after Build", ErrAlreadyStarted, w.id))
		return
	}
	a.workers = append(a.workers, w)
}

func (a *App) built() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sup != nil
}

// Strategy sets the restart strategy (default [OneForOne]).
func (a *App) Strategy(s RestartStrategy) *App { a.strategy = s; return a }

// Logger replaces the default logger (hclog at the preset's LogLevel,
// writing to the LogOutput).
func (a *App) Logger(l hclog.Logger) *App { a.logger = l; return a }

// LogOutput sets where the default logger writes (default os.Stderr).
func (a *App) LogOutput(w io.Writer) *App { a.logOut = w; return a }

// OnEvent sets the supervisor's EventHook (see [SupervisorOptions]).
func (a *App) OnEvent(f func(Event)) *App { a.hook = f; return a }

// Build checks the configuration and creates the supervisor and the inboxes;
// it starts nothing. A second Build returns nil. It returns every problem
// joined, each wrapping [ErrInvalidSpec], [ErrDuplicateChild] or
// [ErrAlreadyStarted].
func (a *App) Build() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sup != nil {
		return errors.Join(a.errs...)
	}
	errs := slices.Clone(a.errs)
	v := a.vals
	logger := a.logger
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Name: "vigil", Level: hclog.LevelFromString(v.LogLevel), Output: a.logOut})
	}
	backoff := NoBackoff
	if v.BackoffMin > 0 {
		backoff = Backoff{Min: v.BackoffMin, Max: v.BackoffMax, Jitter: 0.2}
	}
	maxRestarts := v.MaxRestarts
	if maxRestarts == 0 {
		maxRestarts = NoRestarts
	}
	sup := NewSupervisor(SupervisorOptions{Name: "app", Strategy: a.strategy, MaxRestarts: maxRestarts,
		MaxSeconds: v.MaxSeconds, Backoff: backoff, ShutdownTimeout: v.ShutdownTimeout,
		HealthCheckInterval: v.HealthCheckInterval, Logger: logger, EventHook: a.hook})
	pools := map[string]bool{}
	for _, w := range a.workers {
		if w.pool != "" {
			pools[w.pool] = true
		}
	}
	for _, w := range a.workers {
		if w.pool == "" && pools[w.id] {
			errs = append(errs, fmt.Errorf("%w: worker %q has the name of a pool", ErrDuplicateChild, w.id))
		}
	}
	inboxes := map[string]*Inbox{}
	for _, w := range a.workers {
		name := w.id
		if w.pool != "" {
			name = w.pool
		}
		in := inboxes[name]
		if in == nil {
			in = NewInbox(MailboxConfig{Capacity: v.MailboxCapacity})
			inboxes[name] = in
		}
		if w.pool != "" {
			if _, taken := inboxes[w.id]; taken {
				errs = append(errs, fmt.Errorf("%w: %q", ErrDuplicateChild, w.id))
			}
			inboxes[w.id] = in
		}
		fn := w.fn
		if fn == nil {
			errs = append(errs, fmt.Errorf("%w: worker %q has no function", ErrInvalidSpec, w.id))
			continue
		}
		err := sup.AddChild(ChildSpec{ID: w.id, HealthCheck: w.health, Start: func(ctx context.Context) error {
			return fn(context.WithValue(ctx, inboxKey{}, in))
		}})
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		for _, in := range inboxes {
			in.Close()
		}
		return err
	}
	a.sup, a.inboxes = sup, inboxes
	return nil
}

// Start builds the app if needed, starts every worker in order (atomically,
// see [Supervisor.Start]) and turns health checks on. It returns the errors
// of Build and [Supervisor.Start], or [ErrAppShutdown].
func (a *App) Start() error {
	if err := a.Build(); err != nil {
		return err
	}
	a.mu.Lock()
	sup, down := a.sup, a.shutdown
	a.mu.Unlock()
	if down {
		return ErrAppShutdown
	}
	if err := sup.Start(); err != nil {
		return err
	}
	if err := sup.StartMonitoring(); err != nil && !errors.Is(err, ErrAlreadyMonitoring) {
		return err
	}
	return nil
}

// Stop stops the workers in reverse order (the supervisor's Stop: 5 s
// overall, each worker within the preset's ShutdownTimeout); the inboxes
// and their messages stay, and Start may be called again. It blocks, and
// returns the errors of [Supervisor.Shutdown].
func (a *App) Stop() error {
	a.mu.Lock()
	sup := a.sup
	a.mu.Unlock()
	if sup == nil {
		return nil
	}
	return sup.Stop()
}

// Shutdown stops the app like Stop and then closes every inbox (blocked
// receivers wake with [ErrInboxClosed]). It is final: Start then returns
// [ErrAppShutdown]. It returns Stop's error.
func (a *App) Shutdown() error {
	err := a.Stop()
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.shutdown {
		a.shutdown = true
		for _, in := range a.inboxes {
			in.Close() // Close is idempotent; pools appear under several names
		}
	}
	return err
}

// Run starts the app and blocks until ctx is done (then it shuts down
// gracefully and returns nil, or the shutdown error) or the supervisor gives
// up (then it shuts down and returns the [*RestartLimitError], which wraps
// [ErrTooManyRestarts]). It returns Start's errors too.
func (a *App) Run(ctx context.Context) error {
	if err := a.Start(); err != nil {
		return err
	}
	a.mu.Lock()
	sup := a.sup
	a.mu.Unlock()
	select {
	case <-ctx.Done():
		return a.Shutdown()
	case <-sup.Done():
		_ = a.Shutdown()
		return sup.Err()
	}
}

// Supervisor returns the app's supervisor, or nil before Build.
func (a *App) Supervisor() *Supervisor {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sup
}

// Inbox returns the inbox of a worker, or of a pool by its prefix or a
// member's ID. It returns an error wrapping [ErrWorkerNotFound] for an
// unknown name (or before Build).
func (a *App) Inbox(name string) (*Inbox, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	in, ok := a.inboxes[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrWorkerNotFound, name)
	}
	return in, nil
}

// Send queues m in the inbox named to (see [App.Inbox]) without blocking.
// It returns errors wrapping [ErrWorkerNotFound] or those of
// [Inbox.SendMessage] ([ErrMailboxFull], [ErrInboxClosed], …).
func (a *App) Send(to string, m *Message) error {
	in, err := a.Inbox(to)
	if err != nil {
		return err
	}
	return in.SendMessage(m)
}
