package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/host/process"
	"github.com/vigil-run/vigil/sdk"
)

func pids(r *running, ids ...string) map[string]int {
	m := map[string]int{}
	for _, id := range ids {
		if inc := r.h.Worker(id).Current(); inc != nil {
			m[id] = inc.PID()
		}
	}
	return m
}

func TestStrategiesOnRealProcesses(t *testing.T) {
	tests := map[string]struct{ changed []string }{
		"one_for_one":  {changed: []string{"b"}},
		"one_for_all":  {changed: []string{"a", "b", "c"}},
		"rest_for_one": {changed: []string{"b", "c"}},
	}
	for strategy, tc := range tests {
		t.Run(strategy, func(t *testing.T) {
			r := runHost(t, fmt.Sprintf(`
app "s" {
  strategy     = %q
  max_restarts = 5
  max_seconds  = 10
  worker "a" { plugin = "{P}/echo" }
  worker "b" { plugin = "{P}/echo" }
  worker "c" { plugin = "{P}/echo" }
}`, strategy))
			for _, id := range []string{"a", "b", "c"} {
				r.ev.Wait(t, 10*time.Second, id+" started", started(id, 1))
			}
			before := pids(r, "a", "b", "c")
			if err := syscall.Kill(before["b"], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for _, id := range tc.changed {
				r.ev.Wait(t, 10*time.Second, id+" restarted", started(id, 2))
			}
			after := pids(r, "a", "b", "c")
			for _, id := range []string{"a", "b", "c"} {
				want := false
				for _, c := range tc.changed {
					want = want || c == id
				}
				if got := after[id] != before[id]; got != want {
					t.Errorf("%s: worker %s pid %d -> %d; changed = %v, want %v", strategy, id, before[id], after[id], got, want)
				}
				if !alive(after[id]) {
					t.Errorf("worker %s pid %d not alive", id, after[id])
				}
			}
			if alive(before["b"]) {
				t.Errorf("killed pid %d still alive", before["b"])
			}
		})
	}
}

func TestRestartTypeByExitCode(t *testing.T) {
	tests := map[string]struct {
		restart, mode string
		restarted     bool
	}{
		"transient, exit 0":      {"transient", `mode = "exit"` + "\n code = 0", false},
		"transient, returns nil": {"transient", `mode = "ok_exit"`, false},
		"transient, exit 3":      {"transient", `mode = "exit"` + "\n code = 3", true},
		"permanent, exit 0":      {"permanent", `mode = "exit"` + "\n code = 0", true},
		"temporary, exit 3":      {"temporary", `mode = "exit"` + "\n code = 3", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := runHost(t, fmt.Sprintf(`
app "r" {
  max_restarts = 5
  max_seconds  = 10
  worker "w" {
    plugin  = "{P}/flaky"
    restart = %q
    config {
      %s
      after = "100ms"
    }
  }
}`, tc.restart, tc.mode))
			exited := r.ev.Wait(t, 10*time.Second, "w exited", func(e sdk.Event) bool {
				return e.Kind == sdk.EventChildExited && e.Child == "w"
			})
			t.Logf("exit: %v", exited)
			if tc.restarted {
				r.ev.Wait(t, 10*time.Second, "w restarted", started("w", 2))
				return
			}
			eventually(t, 5*time.Second, "w settled", func() bool {
				st, err := r.h.Root().FindChild("w")
				return errors.Is(err, sdk.ErrChildNotFound) || (err == nil && st.State == sdk.ChildStopped)
			})
			for _, e := range r.ev.Snapshot() {
				if e.Kind == sdk.EventChildRestarting || started("w", 2)(e) {
					t.Errorf("restarted although it should not be: %v", e)
				}
			}
		})
	}
}

func TestBackoffDelaysAreObserved(t *testing.T) {
	r := runHost(t, `
app "b" {
  max_restarts = 10
  max_seconds  = 30
  worker "w" {
    plugin = "{P}/flaky"
    backoff {
      min    = "150ms"
      max    = "300ms"
      jitter = 0
    }
    config {
      mode  = "exit"
      code  = 1
      after = "10ms"
    }
  }
}`)
	want := []time.Duration{150 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
	for n, d := range want {
		exited := r.ev.Wait(t, 10*time.Second, "exit", func(e sdk.Event) bool {
			return e.Kind == sdk.EventChildExited && e.Incarnation == n+1
		})
		restarting := r.ev.Wait(t, 10*time.Second, "restarting", func(e sdk.Event) bool {
			return e.Kind == sdk.EventChildRestarting && e.Time.After(exited.Time.Add(-time.Nanosecond))
		})
		next := r.ev.Wait(t, 10*time.Second, "next start", started("w", n+2))
		if restarting.Delay != d {
			t.Errorf("restart %d: delay %v, want %v", n+1, restarting.Delay, d)
		}
		if gap := next.Time.Sub(exited.Time); gap < d {
			t.Errorf("restart %d: started %v after the exit, before its %v backoff", n+1, gap, d)
		} else {
			t.Logf("restart %d: backoff %v, exit→running %v", n+1, d, gap)
		}
	}
}

func TestHealthCheckFailureRestartsTheWorker(t *testing.T) {
	r := runHost(t, `
app "h" {
  max_restarts = 5
  max_seconds  = 10
  worker "sick" {
    plugin = "{P}/flaky"
    health_check {
      interval = "100ms"
      timeout  = "100ms"
      failures = 2
    }
    config {
      mode  = "unhealthy"
      after = "1ms"
    }
  }
}`)
	e := r.ev.Wait(t, 10*time.Second, "health check failure", func(e sdk.Event) bool {
		return e.Kind == sdk.EventHealthCheckFailed && e.Child == "sick"
	})
	if !errors.Is(e.Err, sdk.ErrHealthCheckFailed) || !strings.Contains(e.Err.Error(), "2 consecutive") {
		t.Errorf("health event error = %v", e.Err)
	}
	r.ev.Wait(t, 10*time.Second, "restart after the failed check", started("sick", 2))
}

func TestMemoryLimitRestartsTheWorker(t *testing.T) {
	r := runHost(t, `
app "m" {
  max_restarts = 5
  max_seconds  = 10
  worker "leaky" {
    plugin     = "{P}/flaky"
    max_memory = "64MiB"
    config {
      mode            = "leak"
      leak_mb_per_sec = 200
    }
  }
}`)
	e := r.ev.Wait(t, 10*time.Second, "memory-limit exit", func(e sdk.Event) bool {
		return e.Kind == sdk.EventChildExited && e.Child == "leaky"
	})
	if !errors.Is(e.Err, process.ErrMemoryLimit) || !strings.Contains(e.Err.Error(), "memory limit") {
		t.Errorf("exit error = %v, want the memory limit", e.Err)
	}
	r.ev.Wait(t, 10*time.Second, "restart", started("leaky", 2))
}

func TestWorkerThatIgnoresStopIsKilledAfterItsTimeout(t *testing.T) {
	r := runHost(t, `
app "k" {
  worker "polite" { plugin = "{P}/echo" }
  worker "stubborn" {
    plugin           = "{P}/flaky"
    shutdown_timeout = "500ms"
    config {
      mode = "hang_on_stop"
    }
  }
}`)
	r.ev.Wait(t, 10*time.Second, "started", started("stubborn", 1))
	inc := r.h.Worker("stubborn").Current()
	began := time.Now()
	r.stop(t)
	took := time.Since(began)
	if took > 3*time.Second || took < 300*time.Millisecond {
		t.Errorf("shutdown took %v with a 500ms timeout", took)
	}
	var ee *process.ExitError
	if !errors.As(inc.Err(), &ee) || ee.Signal == 0 {
		t.Errorf("stubborn ended with %v, want an exit by signal", inc.Err())
	}
	pid := inc.PID()
	if alive(pid) {
		t.Errorf("stubborn pid %d survived", pid)
	}
	// Reverse order: stubborn (started last) is stopped before polite.
	var order []string
	for _, e := range r.ev.Snapshot() {
		if e.Kind == sdk.EventChildStopped {
			order = append(order, e.Child)
		}
	}
	if strings.Join(order, ",") != "stubborn,polite" {
		t.Errorf("stop order %v, want stubborn then polite", order)
	}
}

func TestNestedSupervisorAndPool(t *testing.T) {
	r := runHost(t, `
app "n" {
  worker "echo" {
    plugin = "{P}/echo"
    pool   = 3
  }
  supervisor "inner" {
    strategy = "one_for_all"
    worker "t1" { plugin = "{P}/ticker" }
    worker "t2" { plugin = "{P}/ticker" }
  }
}`)
	for _, id := range []string{"echo_0", "echo_1", "echo_2", "t1", "t2"} {
		r.ev.Wait(t, 10*time.Second, id+" started", started(id, 1))
	}
	before := pids(r, "echo_0", "t1", "t2")
	syscall.Kill(before["t1"], syscall.SIGKILL)
	r.ev.Wait(t, 10*time.Second, "t2 restarted with t1", started("t2", 2))
	after := pids(r, "echo_0")
	if after["echo_0"] != before["echo_0"] {
		t.Errorf("a failure inside the nested supervisor restarted the pool")
	}
}

func TestVigilRunGivesUpWithStatus2AfterStoppingEverything(t *testing.T) {
	cfg := writeConfig(t, `
app "g" {
  max_restarts = 2
  max_seconds  = 10
  worker "echo" { plugin = "{P}/echo" }
  worker "crasher" {
    plugin = "{P}/flaky"
    config {
      mode  = "exit"
      code  = 3
      after = "20ms"
    }
  }
}`)
	v := startVigil(t, "run", cfg)
	if code := v.wait(t, 20*time.Second); code != 2 {
		t.Fatalf("exit status %d, want 2; output:\n%s", code, v.out)
	}
	if out := v.out.String(); !strings.Contains(out, "too many restarts") || !strings.Contains(out, "exit status 3") {
		t.Errorf("output does not explain the give-up:\n%s", out)
	}
	if left := pluginProcs(); len(left) > 0 {
		t.Errorf("worker processes left after vigil exited: %v", left)
	}
}

func TestVigilSIGKILLedLeavesNoWorker(t *testing.T) {
	cfg := writeConfig(t, `
app "d" {
  worker "echo" {
    plugin = "{P}/echo"
    pool   = 3
  }
  worker "ticker" { plugin = "{P}/ticker" }
}`)
	v := startVigil(t, "run", cfg)
	eventually(t, 10*time.Second, "4 workers running", func() bool { return len(pluginProcs()) == 4 })
	if err := v.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	v.wait(t, 5*time.Second)
	noPluginProcsLeft(t)
}

func TestVigilSIGINTStopsCleanly(t *testing.T) {
	cfg := writeConfig(t, `
app "i" {
  worker "echo" {
    plugin = "{P}/echo"
    pool   = 2
  }
  supervisor "inner" {
    worker "ticker" { plugin = "{P}/ticker" }
  }
}`)
	v := startVigil(t, "run", cfg)
	eventually(t, 10*time.Second, "3 workers started", func() bool { return strings.Count(v.out.String(), "worker started") == 3 })
	v.cmd.Process.Signal(syscall.SIGINT)
	if code := v.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGINT, want 0", code)
	}
	if left := pluginProcs(); len(left) > 0 {
		t.Errorf("workers left: %v", left)
	}
}

func TestVigilSecondSIGINTKillsAtOnce(t *testing.T) {
	cfg := writeConfig(t, `
app "x" {
  worker "stubborn" {
    plugin           = "{P}/flaky"
    shutdown_timeout = "60s"
    config {
      mode = "hang_on_stop"
    }
  }
}`)
	v := startVigil(t, "run", cfg)
	eventually(t, 10*time.Second, "worker running", func() bool { return len(pluginProcs()) == 1 })
	v.cmd.Process.Signal(syscall.SIGINT)
	eventually(t, 5*time.Second, "shutdown begun", func() bool { return strings.Contains(v.out.String(), "shutting down") })
	began := time.Now()
	v.cmd.Process.Signal(syscall.SIGINT)
	v.wait(t, 5*time.Second)
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("second SIGINT took %v to end vigil", took)
	}
	if left := pluginProcs(); len(left) > 0 {
		t.Errorf("workers left: %v", left)
	}
}

func TestVigilErrorsNameTheFileAndLine(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "notexec")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	notPlugin := filepath.Join(dir, "true")
	raw, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(notPlugin, raw, 0o755)
	worker := func(attrs string) string {
		return "app \"e\" {\n  worker \"w\" {\n    " + attrs + "\n  }\n}\n"
	}
	tests := map[string]struct {
		cmd, config string
		want        []string
	}{
		"bad HCL": {"validate", "app \"e\" {\n  worker \"w\" {\n    plugin = \n  }\n", []string{"app.hcl:3"}},
		"missing binary": {"validate", worker(`plugin = "` + filepath.Join(dir, "nope") + `"`),
			[]string{"app.hcl:3", filepath.Join(dir, "nope")}},
		"not executable": {"validate", worker(`plugin = "` + notExec + `"`), []string{"app.hcl:3", notExec}},
		"not a vigil plugin": {"run", worker(`plugin = "` + notPlugin + `"`),
			[]string{"app.hcl:2", notPlugin, "handshake", "sdk.Serve"}},
		"checksum mismatch": {"run", worker(`plugin = "{P}/echo"` + "\n    sha256 = \"" + strings.Repeat("ab", 32) + `"`),
			[]string{"app.hcl:2", pluginDir() + "/echo", "sha256", "refusing to start"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := writeConfig(t, tc.config)
			v := startVigil(t, tc.cmd, cfg)
			if code := v.wait(t, 15*time.Second); code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			out := v.out.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestVigilValidateOK(t *testing.T) {
	v := startVigil(t, "validate", writeConfig(t, `app "ok" {
  worker "echo" { plugin = "{P}/echo" }
}`))
	if code := v.wait(t, 10*time.Second); code != 0 || strings.TrimSpace(v.out.String()) != "OK" {
		t.Errorf("validate: status %d, output %q; want 0, OK", code, v.out)
	}
}

func TestShutdownDuringStartUpIsClean(t *testing.T) {
	r := runHost(t, `
app "slow" {
  worker "slow" {
    plugin = "{P}/flaky"
    config {
      start_delay = "30s"
    }
  }
}`)
	eventually(t, 10*time.Second, "the worker process to exist", func() bool { return len(pluginProcs()) == 1 })
	began := time.Now()
	if err := r.stop(t); err != nil {
		t.Errorf("Serve = %v after a shutdown during start-up, want nil", err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("shutdown during start-up took %v", took)
	}
}
