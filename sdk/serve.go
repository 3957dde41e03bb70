package sdk

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"

	"github.com/vigil-run/vigil/sdk/protocol"
)

// Every sentinel of this package survives the plugin wire: an error that
// wraps one keeps errors.Is on the other side.
func init() {
	protocol.RegisterSentinels(
		ErrEmptyMailbox, ErrMailboxFull, ErrMessageExpired, ErrMessageTooLarge,
		ErrDuplicateMessage, ErrInboxClosed, ErrInvalidMessage, ErrDeadLetterNotFound,
		ErrPoisonMessage, ErrNotInFlight,
		ErrTooManyRestarts, ErrShutdownTimeout, ErrAlreadyMonitoring, ErrChildNotFound,
		ErrDuplicateChild, ErrChildRunning, ErrInvalidSpec, ErrAlreadyStarted,
		ErrNotStarted, ErrStartFailed, ErrHealthCheckFailed,
		ErrWorkerNotFound, ErrTimeout,
		ErrPanic, ErrDeadLettersDisabled, ErrAppShutdown,
	)
}

// ServeOpt is an option for [Serve]. An option that returns an error makes
// Serve return it before doing anything.
type ServeOpt func(*serveOptions) error

type serveOptions struct {
	logger hclog.Logger
}

// WithServeLogger makes Serve use l as the worker's base logger instead of
// the default (hclog JSON on standard error at the level the host passes in
// $VIGIL_LOG_LEVEL). l must write hclog JSON to the process's standard
// error for the host to re-emit its lines.
func WithServeLogger(l hclog.Logger) ServeOpt {
	return func(o *serveOptions) error {
		if l == nil {
			return fmt.Errorf("%w: WithServeLogger: nil logger", ErrInvalidSpec)
		}
		o.logger = l
		return nil
	}
}

// Serve runs w as a Vigil worker plugin; call it from the plugin's main.
// It does not return when launched by a Vigil host: it ends the process.
// It returns only an error wrapping [ErrInvalidSpec] for a nil w or a bad
// option.
//
// Process semantics:
//
//   - Started by anything but a Vigil host (no magic cookie in the
//     environment), it prints that the binary is a plugin and exits with
//     status 1.
//   - The host starts w.Run once. When Run returns, its result goes to the
//     host as the final status of the run and the process exits with status
//     0 (nil) or 1 (an error, also logged).
//   - A panic in Run is recovered only to report it: the value and stack
//     are logged, the host gets an error wrapping [ErrPanic], and the
//     process exits with status 2. A panic in another goroutine crashes the
//     process (also status 2); the host sees the connection drop.
//   - When the host stops the worker, Run's ctx is cancelled. When the host
//     closes the connection or dies (checked every 250 ms), ctx is
//     cancelled too and Run gets one second to return before the process
//     exits on its own.
//
// Log with [Runtime.Logger], not fmt: standard output and standard error
// are taken over by the plugin machinery once Serve runs.
func Serve(w Worker, opts ...ServeOpt) error {
	if w == nil {
		return fmt.Errorf("%w: Serve: nil Worker", ErrInvalidSpec)
	}
	var o serveOptions
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return err
		}
	}
	if o.logger == nil {
		o.logger = protocol.NewLogger()
	}
	return protocol.Serve(&workerServer{w: w, logger: o.logger}, protocol.WithLogger(o.logger))
}

// workerServer adapts a Worker to protocol.Server.
type workerServer struct {
	w      Worker
	logger hclog.Logger
}

var _ protocol.Server = (*workerServer)(nil)

func newRuntime(req protocol.RunRequest, base hclog.Logger) *Runtime {
	return &Runtime{
		id:          req.WorkerID,
		incarnation: req.Incarnation,
		config:      req.Config,
		logger:      base.Named(req.WorkerID),
		remote:      newRemote(req.WorkerID, req.MailboxConn),
	}
}

// Run implements protocol.Server: it runs the worker's Init (if any), then
// signals ready right before calling the author's Run. A panic is re-raised as a *PanicError (so the host sees
// ErrPanic); protocol recovers it, logs it and exits with status 2.
func (s *workerServer) Run(ctx context.Context, req protocol.RunRequest, ready func()) (err error) {
	rt := newRuntime(req, s.logger)
	defer func() {
		if v := recover(); v != nil {
			panic(&PanicError{Value: v, Stack: debug.Stack()})
		}
	}()
	// Flush the last acks and close the mailbox stream once Run returned
	// (after a failure the last message is left to the host to redeliver).
	clean := false // Run returned nil: no panic, no error
	defer func() { rt.remote.close(clean) }()
	if in, ok := s.w.(Initializer); ok {
		if err := in.Init(ctx, rt); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	ready()
	err = s.w.Run(ctx, rt)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		err = nil
	}
	clean = err == nil
	return err
}

// HealthCheck implements protocol.Server: the worker's own check when it
// is a [HealthChecker], nil otherwise.
func (s *workerServer) HealthCheck(ctx context.Context) error {
	if hc, ok := s.w.(HealthChecker); ok {
		return hc.HealthCheck(ctx)
	}
	return nil
}
