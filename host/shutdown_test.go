package host

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestVigilExitsWithStatus3WhenShutdownHadToKill(t *testing.T) {
	cfg := writeConfig(t, `
app "k" {
  worker "stubborn" {
    plugin           = "{P}/flaky"
    shutdown_timeout = "300ms"
    config {
      mode = "hang_on_stop"
    }
  }
}`)
	v := startVigil(t, "run", cfg)
	eventually(t, 10*time.Second, "worker started", func() bool { return strings.Contains(v.out.String(), "worker started") })
	v.cmd.Process.Signal(syscall.SIGINT)
	if code := v.wait(t, 10*time.Second); code != 3 {
		t.Fatalf("exit status %d after a shutdown that had to kill, want 3\n%s", code, v.out.String())
	}
	if out := v.out.String(); !strings.Contains(out, `"stubborn"`) || !strings.Contains(out, "shutdown timeout") {
		t.Errorf("output does not name the worker that had to be killed:\n%s", out)
	}
	if left := pluginProcs(); len(left) > 0 {
		t.Errorf("workers left: %v", left)
	}
}
