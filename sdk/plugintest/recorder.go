package plugintest

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// Recorder collects values a test waits for, such as a host's lifecycle
// events (use Add as the event hook). Create it with [NewRecorder]. Its
// methods are safe for concurrent use; Add never blocks.
type Recorder[T any] struct {
	mu     sync.Mutex
	list   []T
	notify chan struct{}
}

// NewRecorder returns an empty recorder.
func NewRecorder[T any]() *Recorder[T] { return &Recorder[T]{notify: make(chan struct{}, 1)} }

// Add records v.
func (r *Recorder[T]) Add(v T) {
	r.mu.Lock()
	r.list = append(r.list, v)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Snapshot returns what was recorded so far, in order (a new slice).
func (r *Recorder[T]) Snapshot() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.list...)
}

// Wait blocks until a value matching match was recorded and returns the
// first such value, or fails t after d, listing what was recorded.
func (r *Recorder[T]) Wait(t testing.TB, d time.Duration, what string, match func(T) bool) T {
	t.Helper()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		for _, v := range r.Snapshot() {
			if match(v) {
				return v
			}
		}
		select {
		case <-r.notify:
		case <-timeout.C:
			var b strings.Builder
			for _, v := range r.Snapshot() {
				fmt.Fprintf(&b, "\n  %v", v)
			}
			t.Fatalf("no %s within %v; recorded:%s", what, d, b.String())
		}
	}
}

// Output returns a writer that logs each write to t (one t.Log per write,
// trailing newlines trimmed) until t's cleanup runs, and then discards:
// background goroutines may still log after the test. Call it before
// registering the cleanups that stop them, so that it is silenced last.
// Safe for concurrent use.
func Output(t testing.TB) io.Writer {
	w := &output{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

type output struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *output) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
