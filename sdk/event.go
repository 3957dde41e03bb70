package sdk

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
)

// EventKind says what happened to a child or a supervisor.
type EventKind uint8

// The lifecycle events a [Supervisor] emits.
const (
	// EventChildStarted: a new incarnation runs (Incarnation, PID set).
	EventChildStarted EventKind = iota + 1
	// EventChildStartFailed: Child.Start failed (Err). On Start the
	// supervisor rolls back; on a restart it counts as a failure.
	EventChildStartFailed
	// EventChildExited: an incarnation ended by itself; Err is the reason
	// (nil: normal exit). Also emitted when a stuck incarnation finally ends.
	EventChildExited
	// EventChildRestarting: the child will start again after Delay.
	EventChildRestarting
	// EventChildStopped: the supervisor stopped the child (shutdown, a
	// sibling's failure, TerminateChild, RestartChild, a failed health
	// check). Err wraps [ErrShutdownTimeout] if it did not stop in time.
	EventChildStopped
	// EventHealthCheckFailed: a health check failed (Err); the child is
	// stopped and handled as failed.
	EventHealthCheckFailed
	// EventSupervisorGaveUp: the restart intensity was exceeded; Err is the
	// [*RestartLimitError], Child the child whose failure tipped it.
	EventSupervisorGaveUp
	// EventChildSwapped: a hot swap committed: a new incarnation
	// (Incarnation, PID) took over from the old one, which is being
	// stopped. Not a restart: no restart is counted.
	EventChildSwapped
	// EventSwapFailed: a hot swap was abandoned (Err); the old incarnation
	// keeps running.
	EventSwapFailed
)

var eventKindNames = [...]string{"", "child_started", "child_start_failed", "child_exited",
	"child_restarting", "child_stopped", "health_check_failed", "supervisor_gave_up", "child_swapped", "swap_failed"}

// String returns the snake_case name, e.g. "child_restarting".
func (k EventKind) String() string {
	if k == 0 || int(k) >= len(eventKindNames) {
		return fmt.Sprintf("EventKind(%d)", int(k))
	}
	return eventKindNames[k]
}

// Event is one lifecycle event of a supervisor. Events are emitted from one
// place, in order, to the logger, to the stats and to the EventHook.
type Event struct {
	Kind       EventKind
	Time       time.Time     // from the supervisor's Clock
	Supervisor string        // SupervisorOptions.Name
	Child      string        // the child's ID
	Err        error         // exit reason, start/health error, give-up error
	Delay      time.Duration // EventChildRestarting: delay before the start
	// Incarnation counts the child's starts (1 for the first).
	Incarnation int
	// PID is the process ID when the incarnation has a PID() int method
	// (process children), else 0.
	PID int
}

// String renders the event on one line, e.g.
// `supervisor "app": child "db" restarting in 100ms`.
func (e Event) String() string {
	head := fmt.Sprintf("supervisor %q: child %q", e.Supervisor, e.Child)
	switch e.Kind {
	case EventChildStarted:
		return fmt.Sprintf("%s started (incarnation %d)", head, e.Incarnation)
	case EventChildStartFailed:
		return fmt.Sprintf("%s failed to start: %v", head, e.Err)
	case EventChildExited:
		if e.Err == nil {
			return head + " exited normally"
		}
		return fmt.Sprintf("%s exited: %v", head, e.Err)
	case EventChildRestarting:
		return fmt.Sprintf("%s restarting in %v", head, e.Delay)
	case EventChildStopped:
		if e.Err != nil {
			return fmt.Sprintf("%s did not stop: %v", head, e.Err)
		}
		return head + " stopped"
	case EventHealthCheckFailed:
		return fmt.Sprintf("%s health check failed: %v", head, e.Err)
	case EventSupervisorGaveUp:
		return fmt.Sprintf("supervisor %q gave up: %v", e.Supervisor, e.Err)
	case EventChildSwapped:
		return fmt.Sprintf("%s swapped: incarnation %d took over", head, e.Incarnation)
	case EventSwapFailed:
		return fmt.Sprintf("%s swap failed, the old incarnation keeps running: %v", head, e.Err)
	}
	return fmt.Sprintf("%s %v", head, e.Kind)
}

// logEvent writes e to l at a level fitting its kind: starts, stops and
// normal exits at debug, restarts at info, failures at warn/error (with a
// panic's stack). Nothing is formatted when the level is off.
func logEvent(l hclog.Logger, e Event) {
	level := hclog.Error
	switch e.Kind {
	case EventChildStarted:
		level = hclog.Debug
	case EventChildRestarting:
		level = hclog.Info
	case EventChildExited:
		level = hclog.Warn
		if e.Err == nil {
			level = hclog.Debug
		}
	case EventChildStopped:
		if e.Err == nil {
			level = hclog.Debug
		}
	case EventHealthCheckFailed, EventSwapFailed:
		level = hclog.Warn
	case EventChildSwapped:
		level = hclog.Info
	}
	if l.GetLevel() > level || l.GetLevel() == hclog.Off {
		return
	}
	args := []any{"event", e.Kind.String(), "child", e.Child}
	if e.Err != nil {
		args = append(args, "error", e.Err.Error())
	}
	if e.PID != 0 {
		args = append(args, "pid", e.PID)
	}
	if e.Kind == EventChildRestarting {
		args = append(args, "delay", e.Delay)
	}
	var pe *PanicError
	if e.Kind == EventChildExited && errors.As(e.Err, &pe) {
		args = append(args, "stack", string(pe.Stack))
	}
	l.Log(level, e.String(), args...)
}
