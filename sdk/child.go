package sdk

import "context"

// Child is one supervised thing that can be started many times: a goroutine
// running a function, a nested supervisor, or (in the host) an OS process
// running a plugin. The supervision engine only sees this interface, so the
// same engine supervises all three.
type Child interface {
	// Start starts a new incarnation and blocks until it is running (for a
	// process: ready to answer), it failed to start, or ctx is done. ctx
	// bounds the start only, not the incarnation's life. A failed start
	// returns a nil Incarnation and an error.
	Start(ctx context.Context) (Incarnation, error)
}

// Incarnation is one run of a [Child]. Its methods are safe for concurrent
// use.
type Incarnation interface {
	// Done is closed when the incarnation has ended, whatever the reason.
	Done() <-chan struct{}
	// Err reports how the incarnation ended; it is valid once Done is
	// closed. nil is a normal exit; any other error is a failure.
	Err() error
	// Stop asks the incarnation to end and blocks until it has, or until
	// ctx is done (the child's shutdown timeout). If it still runs then,
	// Stop does what it can (a process is killed; a goroutine cannot be)
	// and returns an error wrapping [ErrShutdownTimeout]. Stop after the
	// incarnation ended returns nil at once.
	Stop(ctx context.Context) error
}

// HealthChecker is an optional interface of an [Incarnation]: the
// supervisor calls HealthCheck at the child's health-check interval when the
// ChildSpec has no HealthCheck function of its own. A non-nil error is a
// failed check.
type HealthChecker interface {
	HealthCheck(ctx context.Context) error
}

// StandbyStarter is an optional interface of a [Child] for hot swaps
// ([Supervisor.SwapChild]): StartStandby starts an incarnation that is
// running and ready but does not take work yet (a process worker receives
// no messages) until the supervisor calls its Activate method (see
// [Activator]). Its contract is otherwise Start's.
type StandbyStarter interface {
	StartStandby(ctx context.Context) (Incarnation, error)
}

// Activator is an optional interface of an [Incarnation] started by
// [StandbyStarter.StartStandby]: Activate makes it take over the child's
// work from the incarnation it replaces, which from then on takes no new
// work (it finishes what it holds and is stopped). It does not block.
type Activator interface {
	Activate()
}

// Drainer is an optional interface of an [Incarnation]: before a hot swap
// stops the incarnation it replaced, it calls Drain, which blocks until
// the incarnation finished the work it holds (a process worker: every
// message it was given is acknowledged) or ctx is done (ctx.Err()).
type Drainer interface {
	Drain(ctx context.Context) error
}
