package process

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/vigil-run/vigil/sdk"
)

var (
	// ErrProcessExited is wrapped by an [*ExitError] for a worker process
	// that exited with a non-zero status or was killed by a signal.
	ErrProcessExited = errors.New("vigil: worker process exited")
	// ErrMemoryLimit is wrapped by an [*ExitError] for a worker process
	// killed because its process group's RSS exceeded [Spec.MaxMemory].
	ErrMemoryLimit = errors.New("vigil: memory limit exceeded")
	// ErrChecksumMismatch is wrapped by [Check] and [Child.Start] when the
	// plugin binary's SHA-256 differs from [Spec.SHA256]. The binary is not
	// started.
	ErrChecksumMismatch = errors.New("vigil: plugin checksum mismatch")
	// ErrBadPlugin is wrapped by [Check] and [Child.Start] when the plugin
	// path is missing, is a directory or is not executable.
	ErrBadPlugin = errors.New("vigil: bad plugin binary")
	// ErrBadTempDir is wrapped by [Child.Start] when the directory for
	// the worker's unix socket is too long for a socket path.
	ErrBadTempDir = errors.New("vigil: socket directory unusable")
)

// StartError is returned by [Child.Start] when an incarnation could not be
// started. It matches [sdk.ErrStartFailed] and the cause with errors.Is.
type StartError struct {
	Worker string // worker ID
	Origin string // where the worker is defined ([Spec.Origin]), may be ""
	Err    error  // the cause
}

// Error names the worker, where it is defined, and the cause.
func (e *StartError) Error() string {
	if e.Origin != "" {
		return fmt.Sprintf("worker %s (defined at %s) failed to start: %v", e.Worker, e.Origin, e.Err)
	}
	return fmt.Sprintf("worker %s failed to start: %v", e.Worker, e.Err)
}

// Unwrap returns [sdk.ErrStartFailed] and the cause.
func (e *StartError) Unwrap() []error { return []error{sdk.ErrStartFailed, e.Err} }

// ExitError reports how a worker process ended when that was a failure. It
// unwraps to the cause: [ErrProcessExited], [ErrMemoryLimit], or the error
// the worker's Run returned (which wraps the sdk sentinel it was sent as).
type ExitError struct {
	Worker string         // worker ID, e.g. "echo_1"
	PID    int            // the process's PID
	Code   int            // exit status, -1 if killed by a signal
	Signal syscall.Signal // the killing signal, 0 if it exited
	Reason string         // short reason: "memory limit", "worker error", "crashed"
	Stderr []string       // the last lines of its stderr (crashes and memory kills only)
	Err    error          // the cause; see the type's doc
}

// Error returns a one-paragraph description: worker, pid, reason, exit code
// or signal, cause, then the stderr tail indented.
func (e *ExitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "worker %s (pid %d): %s", e.Worker, e.PID, e.Reason)
	switch {
	case e.Signal != 0:
		fmt.Fprintf(&b, ", killed by signal %s", e.Signal)
	case e.Code >= 0:
		fmt.Fprintf(&b, ", exit status %d", e.Code)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if len(e.Stderr) > 0 {
		b.WriteString("; last stderr lines:")
		for _, l := range e.Stderr {
			b.WriteString("\n    ")
			b.WriteString(l)
		}
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *ExitError) Unwrap() error { return e.Err }
