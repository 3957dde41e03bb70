package sdk

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
)

// ChildSpec describes one child of a [Supervisor]. Exactly one of Start and
// Child must be set. Zero durations mean the supervisor's defaults (which
// come from the production preset unless SupervisorOptions says otherwise).
type ChildSpec struct {
	// ID names the child; it is unique within its supervisor and not empty.
	ID string
	// Start is a goroutine worker, run through [FuncChild]: returning nil is
	// a normal exit, an error or a panic is a failure, and ctx is cancelled
	// when the supervisor stops the child.
	Start func(ctx context.Context) error
	// Child is any other child: an OS process (the vigil host), a nested
	// supervisor ([Supervisor.AsChild]) or your own implementation.
	Child Child
	// Restart says when the child is restarted. The zero value is [Permanent].
	Restart RestartType
	// ShutdownTimeout bounds one stop of the child. 0 means the supervisor's
	// ShutdownTimeout.
	ShutdownTimeout time.Duration
	// Priority is the scheduling priority of a process child. It cannot be
	// enforced on a goroutine, so a Start child must leave it at
	// [ProcessNormal]; the vigil host applies it to process workers.
	Priority ProcessPriority
	// MaxMemoryBytes is the memory limit of a process child (0: none). It
	// cannot be enforced on a goroutine, so a Start child must leave it 0;
	// the vigil host applies it to process workers.
	MaxMemoryBytes uint64
	// HealthCheck, when set, is called every HealthCheckInterval while
	// monitoring is on ([Supervisor.StartMonitoring]); a non-nil error (or
	// no answer within HealthCheckTimeout) is a failure of the child and goes
	// through the normal restart path. Without it, an incarnation that
	// implements [HealthChecker] is checked instead.
	HealthCheck func(ctx context.Context) error
	// HealthCheckInterval is the time between health checks. 0 means the
	// supervisor's HealthCheckInterval.
	HealthCheckInterval time.Duration
	// HealthCheckTimeout bounds one health check. 0 means the interval.
	HealthCheckTimeout time.Duration
	// Backoff is the delay between this child's restarts. The zero value
	// means the supervisor's Backoff.
	Backoff Backoff
}

// validate returns an error wrapping [ErrInvalidSpec] naming the problem.
func (c ChildSpec) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: child %q: %s", ErrInvalidSpec, c.ID, fmt.Sprintf(format, args...))
	}
	switch {
	case c.ID == "":
		return fmt.Errorf("%w: child with an empty ID", ErrInvalidSpec)
	case (c.Start == nil) == (c.Child == nil):
		return bad("exactly one of Start and Child must be set")
	case c.Restart > Temporary:
		return bad("unknown restart type %v", c.Restart)
	case c.ShutdownTimeout < 0 || c.HealthCheckInterval < 0 || c.HealthCheckTimeout < 0:
		return bad("durations must not be negative")
	case !c.Priority.Valid():
		return bad("unknown priority %v", c.Priority)
	case c.Start != nil && c.Priority != ProcessNormal:
		return bad("priority %v cannot be enforced on a goroutine (it applies to process workers)", c.Priority)
	case c.Start != nil && c.MaxMemoryBytes != 0:
		return bad("max memory cannot be enforced on a goroutine (it applies to process workers)")
	}
	if err := c.Backoff.validate(); err != nil {
		return fmt.Errorf("child %q: %w", c.ID, err)
	}
	return nil
}

// NoRestarts, as SupervisorOptions.MaxRestarts, sets the restart intensity
// to zero: the first restart the supervisor would make makes it give up
// instead. (A MaxRestarts of 0 means the default, 3.)
const NoRestarts = -1

// SupervisorOptions configures a [Supervisor]. The zero value of every field
// is a documented default; numbers come from [PresetProduction].Values().
type SupervisorOptions struct {
	// Name names the supervisor in events, logs and errors. Default
	// "supervisor".
	Name string
	// Strategy says which children restart when one fails. Default
	// [OneForOne].
	Strategy RestartStrategy
	// MaxRestarts is the restart intensity: more than MaxRestarts restarts
	// within MaxSeconds make the supervisor give up. 0 means the default (3);
	// [NoRestarts] (any negative value) means zero restarts tolerated.
	MaxRestarts int
	// MaxSeconds is the sliding intensity window in whole seconds. 0 means
	// the default (60); negative is invalid.
	MaxSeconds int
	// Backoff is the default delay between a child's restarts. The zero value
	// means the preset's BackoffMin/BackoffMax (100 ms … 10 s), multiplier 2,
	// jitter 0.2, reset after MaxSeconds; use [NoBackoff] to restart at once.
	Backoff Backoff
	// ShutdownTimeout is the default per-child stop timeout. Default 30 s.
	ShutdownTimeout time.Duration
	// HealthCheckInterval is the default health-check interval. Default 5 s.
	HealthCheckInterval time.Duration
	// Logger receives one line per lifecycle event. Default: discard.
	Logger hclog.Logger
	// EventHook, when set, is called with every lifecycle [Event],
	// synchronously on the supervisor's goroutine and in order. It must not
	// block and must not call the supervisor's blocking methods (AddChild,
	// TerminateChild, RestartChild, DeleteChild, Shutdown…); Stats and
	// FindChild are fine.
	EventHook func(Event)
	// Clock is the time source of the intensity window, backoff delays,
	// uptime and event times. Default: the real clock. Tests inject a fake.
	Clock Clock
}

// withDefaults fills every zero field and reports invalid values.
func (o SupervisorOptions) withDefaults() (SupervisorOptions, error) {
	p := PresetProduction.Values()
	if o.Name == "" {
		o.Name = "supervisor"
	}
	if o.Strategy > RestForOne {
		return o, fmt.Errorf("%w: unknown strategy %v", ErrInvalidSpec, o.Strategy)
	}
	switch {
	case o.MaxRestarts == 0:
		o.MaxRestarts = p.MaxRestarts
	case o.MaxRestarts < 0:
		o.MaxRestarts = 0
	}
	if o.MaxSeconds < 0 || o.ShutdownTimeout < 0 || o.HealthCheckInterval < 0 {
		return o, fmt.Errorf("%w: supervisor %q: negative MaxSeconds, ShutdownTimeout or HealthCheckInterval", ErrInvalidSpec, o.Name)
	}
	if o.MaxSeconds == 0 {
		o.MaxSeconds = p.MaxSeconds
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = p.ShutdownTimeout
	}
	if o.HealthCheckInterval == 0 {
		o.HealthCheckInterval = p.HealthCheckInterval
	}
	if o.Backoff.IsZero() {
		o.Backoff = Backoff{Min: p.BackoffMin, Max: p.BackoffMax, Jitter: 0.2}
	}
	if err := o.Backoff.validate(); err != nil {
		return o, fmt.Errorf("supervisor %q: %w", o.Name, err)
	}
	o.Backoff = o.Backoff.withDefaults(time.Duration(o.MaxSeconds) * time.Second)
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	return o, nil
}

// Clock is the supervisor's time source. Implementations must be safe for
// concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has elapsed, unless the
	// returned stop function is called first (stop reports whether it
	// prevented the call).
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}
