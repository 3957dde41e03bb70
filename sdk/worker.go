package sdk

import "context"

// Worker is what a plugin author implements: the body of one worker
// process. A plugin's main hands it to [Serve]:
//
//	func main() { sdk.Serve(&worker{}) }
//
// Run is the contract:
//
//   - It blocks for as long as the worker works, and is called once per
//     process (each restart is a new process with a new [Runtime] whose
//     Incarnation is one higher).
//   - Returning nil is a normal exit: a transient worker is not restarted
//     (a permanent one is). Returning ctx.Err() after ctx is done also
//     counts as nil.
//   - Returning a non-nil error, or panicking, is a failure: the host
//     restarts the worker as its supervisor's strategy, intensity and
//     backoff say. The error's text and the sentinels it wraps reach the
//     host (errors.Is works there).
//   - ctx.Done() means the host asks the worker to stop (shutdown, a
//     restart of its siblings, a failed health check, …): return promptly.
//     A worker that does not return within its shutdown_timeout is killed.
//
// Optional extras are detected by type assertion:
//
//   - A Worker that also implements [Initializer] has Init called before
//     the host is told the worker has started, so a slow or failing set-up
//     counts against the worker's start timeout and is a failed start.
//   - A Worker that also implements [HealthChecker] is health-checked by
//     the host over RPC at the worker's health_check interval (a non-nil
//     error is a failed check). HealthCheck is called from another
//     goroutine while Run runs.
type Worker interface {
	Run(ctx context.Context, rt *Runtime) error
}

// Initializer is an optional interface of a [Worker]: Init runs before the
// host is told the worker has started (before Run, in the same goroutine,
// with the same ctx and Runtime). A non-nil error (or a panic) is a failed
// start: Run is not called and the error reaches the host as the result of
// the start. ctx is cancelled if the host gives up waiting (its start
// timeout) or stops the worker.
type Initializer interface {
	Init(ctx context.Context, rt *Runtime) error
}
