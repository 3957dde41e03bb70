package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/protocol"
)

// Incarnation is one running plugin process. It implements
// [sdk.Incarnation] and [sdk.HealthChecker]; its methods are safe for
// concurrent use.
type Incarnation struct {
	owner  *Child
	binID  fileID       // the plugin file it was started from
	killed *atomic.Bool // the Child's: set by Child.Kill
	spec   Spec
	n      uint64
	logger hclog.Logger
	client *plugin.Client
	runner *procRunner
	pc     *protocol.Client
	run    *protocol.Run
	dir    string
	stderr *ring

	closeOnce    sync.Once
	clientClosed chan struct{}

	done chan struct{}
	err  error // set before done is closed

	mu        sync.Mutex
	memReason string // set when the memory watcher killed the process
	hcFails   int    // consecutive failed health checks
}

var (
	_ sdk.Incarnation   = (*Incarnation)(nil)
	_ sdk.HealthChecker = (*Incarnation)(nil)
	_ sdk.Activator     = (*Incarnation)(nil)
	_ sdk.Drainer       = (*Incarnation)(nil)
)

// Drain blocks until the incarnation holds no unacknowledged message of
// its mailbox (it ended, or settled everything it was given) or ctx is
// done (ctx.Err()). A hot swap drains the replaced incarnation before
// stopping it. Without a mailbox it returns nil at once.
func (i *Incarnation) Drain(ctx context.Context) error {
	if i.spec.Mailbox == nil {
		return nil
	}
	return i.spec.Mailbox.Drain(ctx, i.n)
}

// Activate makes a standby incarnation (see [Child.StartStandby]) the
// worker's current one: its mailbox stream starts receiving messages and
// the incarnation it replaces receives no new ones. It does not block.
func (i *Incarnation) Activate() {
	i.owner.standby.CompareAndSwap(i, nil)
	i.owner.current.Store(i)
	if i.spec.Mailbox != nil {
		i.spec.Mailbox.Activate(i.n)
	}
}

// PID returns the plugin process's ID. It does not block.
func (i *Incarnation) PID() int { return i.runner.PID() }

// Number returns the incarnation's number: 1 for the child's first start.
func (i *Incarnation) Number() uint64 { return i.n }

// Done is closed once the process has exited and its resources (socket
// directory, go-plugin client) are released.
func (i *Incarnation) Done() <-chan struct{} { return i.done }

// Err reports how the incarnation ended, once Done is closed: nil when the
// worker's Run returned nil or the process exited with status 0; otherwise
// an [*ExitError] wrapping the worker's error, [ErrMemoryLimit] or
// [ErrProcessExited].
func (i *Incarnation) Err() error {
	select {
	case <-i.done:
		return i.err
	default:
		return nil
	}
}

// closeClient releases the go-plugin client once: a graceful Shutdown RPC
// if the process still runs, then go-plugin's wait for the exit (at most
// 2 s before it kills the process), then removal of the socket directory.
func (i *Incarnation) closeClient() {
	i.closeOnce.Do(func() {
		i.client.Kill()
		close(i.clientClosed)
	})
}

// monitor waits for the end of the incarnation: the process exiting (a
// crash, or the exit after the worker returned) or the Run stream ending.
// It never polls.
func (i *Incarnation) monitor() {
	select {
	case <-i.runner.exited:
		// Died first: the stream breaks within milliseconds; give it a
		// bounded moment so a worker error that raced the exit is kept.
		t := time.NewTimer(time.Second)
		select {
		case <-i.run.Done():
		case <-t.C:
		}
		t.Stop()
	case <-i.run.Done():
		// The worker's Run returned (the plugin exits by itself after
		// reporting it) or the stream broke: make sure the process goes.
		go i.closeClient()
		t := time.NewTimer(i.spec.ShutdownTimeout)
		select {
		case <-i.runner.exited:
		case <-t.C:
			i.logger.Warn("worker process did not exit after its Run ended; killing its process group",
				"pid", i.PID(), "timeout", i.spec.ShutdownTimeout)
			i.runner.signal(syscall.SIGKILL)
			<-i.runner.exited
		}
		t.Stop()
	}
	i.closeClient()
	<-i.clientClosed
	os.RemoveAll(i.dir)
	i.err = i.exitReason()
	i.logger.Debug("worker process ended", "pid", i.PID(), "incarnation", i.n, "failed", i.err != nil)
	close(i.done)
}

// exitReason classifies the end of the incarnation.
func (i *Incarnation) exitReason() error {
	st := i.runner.exitState()
	e := &ExitError{Worker: i.spec.ID, PID: i.PID(), Code: -1}
	if st != nil {
		e.Code = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Signal = ws.Signal()
		}
	}
	var runErr error
	select {
	case <-i.run.Done():
		runErr = i.run.Err()
	default:
	}
	i.mu.Lock()
	mem := i.memReason
	i.mu.Unlock()
	switch {
	case mem != "":
		e.Reason, e.Err = "memory limit", fmt.Errorf("%w (%s)", ErrMemoryLimit, mem)
	case runErr != nil && !errors.Is(runErr, protocol.ErrConnectionLost):
		// The worker reported its error itself (and its log lines are in
		// the host's log): no stderr tail needed.
		e.Reason, e.Err = "worker error", runErr
		return e
	case e.Code == 0 && e.Signal == 0:
		return nil // clean return or exit status 0
	default:
		e.Reason, e.Err = "crashed", ErrProcessExited
	}
	e.Stderr = i.stderr.Lines()
	return e
}

// Stop asks the worker to return from its Run with a Stop RPC, bounded by
// ctx's deadline minus a short SIGTERM grace (a fifth of the time left, at
// most 1 s); if the process still runs it SIGTERMs the process group, and
// when ctx is done it SIGKILLs the group. It blocks until the process has
// exited. It returns nil if the worker stopped gracefully (or had already
// ended) and an error wrapping [sdk.ErrShutdownTimeout] naming the worker if
// it had to be signalled.
func (i *Incarnation) Stop(ctx context.Context) error {
	select {
	case <-i.done:
		return nil
	default:
	}
	if i.killed.Load() { // the host is going down at once: no graceful stop
		i.runner.signal(syscall.SIGKILL)
		<-i.done
		return nil
	}
	gctx := ctx
	var grace time.Duration
	if d, ok := ctx.Deadline(); ok {
		grace = min(time.Until(d)/5, time.Second)
		var cancel context.CancelFunc
		gctx, cancel = context.WithDeadline(ctx, d.Add(-grace))
		defer cancel()
	}
	go func() {
		if err := i.pc.Stop(gctx); err != nil && gctx.Err() == nil {
			i.logger.Debug("stop RPC failed", "error", err)
		}
	}()
	select {
	case <-i.done:
		return nil
	case <-gctx.Done():
	}
	if grace > 0 {
		i.logger.Warn("worker did not stop in time; sending SIGTERM to its process group", "pid", i.PID())
		i.runner.signal(syscall.SIGTERM)
		select {
		case <-i.done:
			return fmt.Errorf("%w: worker %s (pid %d) ignored the stop request and was terminated by SIGTERM", sdk.ErrShutdownTimeout, i.spec.ID, i.PID())
		case <-ctx.Done():
		}
	}
	i.logger.Warn("worker did not stop in time; sending SIGKILL to its process group", "pid", i.PID())
	i.runner.signal(syscall.SIGKILL)
	<-i.done // the process is dead: exit, stream end and cleanup follow at once
	return fmt.Errorf("%w: worker %s (pid %d) did not stop in time and was killed", sdk.ErrShutdownTimeout, i.spec.ID, i.PID())
}

// HealthCheck calls the worker's health check over RPC. A failure counts;
// only after [Spec.HealthCheckFailures] consecutive failures does it return
// an error (wrapping [sdk.ErrHealthCheckFailed]), which makes the supervisor
// stop and restart the worker. Safe for concurrent use; blocks at most
// until ctx is done.
func (i *Incarnation) HealthCheck(ctx context.Context) error {
	if d, ok := ctx.Deadline(); ok {
		// Answer a little before the caller's deadline, so that a timed-out
		// check is counted here against the threshold rather than by the
		// caller as a failure.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-min(time.Until(d)/10, 50*time.Millisecond)))
		defer cancel()
	}
	err := i.pc.HealthCheck(ctx)
	if err != nil {
		select {
		case <-i.run.Done():
			return nil // the worker is ending anyway: its exit is the news, not its health
		case <-i.runner.exited:
			return nil
		default:
		}
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if err == nil {
		i.hcFails = 0
		return nil
	}
	i.hcFails++
	if i.hcFails < i.spec.HealthCheckFailures {
		i.logger.Warn("health check failed", "failures", i.hcFails, "threshold", i.spec.HealthCheckFailures, "error", err)
		return nil
	}
	return fmt.Errorf("%w: worker %s: %d consecutive failures, last: %w", sdk.ErrHealthCheckFailed, i.spec.ID, i.hcFails, err)
}

// watchMemory samples the process group's RSS every MemoryCheckInterval
// and kills the group when it exceeds MaxMemory.
func (i *Incarnation) watchMemory() {
	t := time.NewTicker(i.spec.MemoryCheckInterval)
	defer t.Stop()
	pgid := i.PID()
	for {
		select {
		case <-i.runner.exited:
			return
		case <-t.C:
		}
		rss := groupRSS(pgid)
		if rss <= i.spec.MaxMemory {
			continue
		}
		reason := fmt.Sprintf("rss %d bytes > max_memory %d bytes", rss, i.spec.MaxMemory)
		i.mu.Lock()
		i.memReason = reason
		i.mu.Unlock()
		i.logger.Error("worker over its memory limit; killing its process group", "pid", pgid, "rss", rss, "max_memory", i.spec.MaxMemory)
		i.runner.signal(syscall.SIGKILL)
		return
	}
}
