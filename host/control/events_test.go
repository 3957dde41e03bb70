package control_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/host/control"
)

// eventsProc is a `vigil events` process whose lines are decoded on lines.
type eventsProc struct {
	cmd   *exec.Cmd
	lines chan control.Event
	done  chan struct{}
}

func startEvents(t *testing.T, args ...string) *eventsProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "vigil"), append([]string{"events"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	p := &eventsProc{cmd: cmd, lines: make(chan control.Event, 1024), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e control.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("vigil events printed a line that is not JSON: %q: %v", sc.Text(), err)
				continue
			}
			p.lines <- e
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		_ = cmd.Wait()
	})
	return p
}

// next waits up to d for a line matching match, discarding the others. It
// reports false if the stream ended or the time ran out.
func (p *eventsProc) next(d time.Duration, match func(control.Event) bool) (control.Event, bool) {
	timeout := time.After(d)
	for {
		select {
		case e, ok := <-p.lines:
			if !ok {
				return control.Event{}, false
			}
			if match(e) {
				return e, true
			}
		case <-timeout:
			return control.Event{}, false
		}
	}
}

func TestControlEventsFollowsCrashAndEndsWithHost(t *testing.T) {
	cfg := writeConfig(t, app)
	h := startHost(t, cfg)
	old := node(waitRunning(t, cfg, "sink", "collector", "tick"), "sink").PID

	ev := startEvents(t, "-c", cfg)
	// Wait until the stream is live: restart collector until its events show.
	live := false
	for range 10 {
		mustCLI(t, "restart", "-c", cfg, "collector")
		if _, ok := ev.next(2*time.Second, func(e control.Event) bool {
			return e.Child == "collector" && e.Kind == "child_started"
		}); ok {
			live = true
			break
		}
	}
	if !live {
		t.Fatal("vigil events showed no event of restarted collector")
	}

	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	exited, ok := ev.next(15*time.Second, func(e control.Event) bool { return e.Child == "sink" && e.Kind == "child_exited" })
	if !ok {
		t.Fatal("no child_exited line for sink after kill -9")
	}
	if exited.PID != old || exited.Error == "" || exited.Supervisor != "ops" || exited.Incarnation != 1 || time.Since(exited.Time) > time.Minute {
		t.Fatalf("child_exited line %+v, want pid %d, an error, supervisor ops, incarnation 1, a recent time", exited, old)
	}
	started, ok := ev.next(15*time.Second, func(e control.Event) bool { return e.Child == "sink" && e.Kind == "child_started" })
	if !ok {
		t.Fatal("no child_started line for sink after kill -9")
	}
	if started.Incarnation != 2 || started.PID == 0 || started.PID == old {
		t.Fatalf("child_started line %+v, want incarnation 2 with a new pid (old %d)", started, old)
	}

	// The stream ends, and `vigil events` exits 0, when the host stops.
	h.stop(t)
	_, _ = ev.next(10*time.Second, func(control.Event) bool { return false }) // drain to the end
	select {
	case <-ev.done:
	case <-time.After(10 * time.Second):
		t.Fatal("vigil events did not end when the host stopped")
	}
	if err := ev.cmd.Wait(); err != nil {
		t.Fatalf("vigil events after the host stopped: %v", err)
	}
}
