package host

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// logQueue is how many log lines may wait for a slow output before lines
// are dropped.
const logQueue = 4096

// logWriter decouples the default logger's output from whoever logs. While
// the host serves, lines are queued (bounded) and written by one
// goroutine; when the output cannot keep up — a paused pager, a full pipe
// nobody reads, a plugin flooding its log — lines are dropped and counted
// (a warning says how many) instead of blocking: a supervisor that logs an
// event must never wait for stderr, or a stalled terminal would stop every
// restart. Before Serve and after it, writes go straight through.
type logWriter struct {
	out     io.Writer
	outMu   sync.Mutex // serialises writes to out (the queue's goroutine and direct writes)
	mu      sync.RWMutex
	ch      chan []byte // nil when not serving
	done    chan struct{}
	dropped atomic.Int64
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.RLock()
	if w.ch == nil {
		w.mu.RUnlock()
		return w.write(p)
	}
	defer w.mu.RUnlock()
	select {
	case w.ch <- append([]byte(nil), p...): // hclog reuses p
	default:
		w.dropped.Add(1)
	}
	return len(p), nil
}

// start queues writes from now on.
func (w *logWriter) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, done := make(chan []byte, logQueue), make(chan struct{})
	w.ch, w.done = ch, done
	go func() {
		defer close(done)
		for b := range ch {
			w.reportDropped()
			_, _ = w.write(b)
		}
	}()
}

// stop writes what is queued (waiting at most 2 s for a stalled output)
// and goes back to direct writes.
func (w *logWriter) stop() {
	w.mu.Lock()
	ch, done := w.ch, w.done
	w.ch = nil
	w.mu.Unlock()
	if ch == nil {
		return
	}
	close(ch)
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C: // the output is stuck; its goroutine ends when it unblocks
		return
	}
	w.reportDropped()
}

// write writes p to the output, one writer at a time.
func (w *logWriter) write(p []byte) (int, error) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	return w.out.Write(p)
}

// reportDropped writes how many lines were dropped since the last report.
func (w *logWriter) reportDropped() {
	if n := w.dropped.Swap(0); n > 0 {
		_, _ = w.write(fmt.Appendf(nil, "%s [WARN]  vigil: the log output is not keeping up: %d log lines were dropped\n",
			time.Now().Format("2006-01-02T15:04:05.000Z0700"), n))
	}
}
