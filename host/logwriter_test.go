package host

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/plugintest"
)

// stalledOutput blocks every Write until released: a terminal paused with
// Ctrl-S, or a pipe nobody reads.
type stalledOutput struct {
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	buf     strings.Builder
}

func (s *stalledOutput) Write(p []byte) (int, error) {
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *stalledOutput) open() { s.once.Do(func() { close(s.release) }) }

// TestStalledLogOutputDoesNotStopSupervision: with the default logger's
// output blocked, a killed worker is still restarted (log lines are dropped
// and counted instead of blocking the supervisor).
func TestStalledLogOutputDoesNotStopSupervision(t *testing.T) {
	app, err := config.Load(writeConfig(t, `
app "s" {
  log_level = "debug"
  worker "echo" {
    plugin = "{P}/echo"
    config { interval = "1ms" }
  }
}`))
	if err != nil {
		t.Fatal(err)
	}
	out := &stalledOutput{release: make(chan struct{})}
	ev := plugintest.NewRecorder[sdk.Event]()
	h, err := New(app, Options{Output: out, EventHook: ev.Add, TempDir: shortTempDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- h.Serve(ctx) }()
	t.Cleanup(func() {
		out.open()
		cancel()
		select {
		case <-errc:
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return")
		}
		noPluginProcsLeft(t)
	})
	first := ev.Wait(t, 10*time.Second, "echo started", started("echo", 1))
	// The echo worker logs a line per millisecond, re-emitted by the host:
	// the queue fills up behind the stalled output.
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev.Wait(t, 10*time.Second, "echo restarted", started("echo", 2))
	if h.logw.dropped.Load() == 0 {
		eventually(t, 10*time.Second, "log lines dropped", func() bool { return h.logw.dropped.Load() > 0 })
	}
	out.open()
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	errc <- nil
	out.mu.Lock()
	defer out.mu.Unlock()
	if !strings.Contains(out.buf.String(), "log lines were dropped") {
		t.Fatalf("no drop warning in the log:\n%.2000s", out.buf.String())
	}
}
