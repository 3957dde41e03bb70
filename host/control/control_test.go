package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/host/control"
	"github.com/vigil-run/vigil/sdk/plugintest"
)

// Built once by TestMain: the vigil binary and the real plugins.
var binDir string

func TestMain(m *testing.M) {
	plugintest.MainWithBinaries(m, &binDir,
		plugintest.Build{Out: "p/", Pkgs: []string{"../../plugins/ticker", "../../plugins/counter"}},
		plugintest.Build{Out: "vigil", Pkgs: []string{"../cmd/vigil"}},
	)
}

func pluginDir() string { return filepath.Join(binDir, "p") }

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	plugintest.Eventually(t, d, what, cond)
}

// app: a counter "sink" forwarding to "collector" (a ticker that never
// reads its mailbox), and a nested supervisor with one ticker.
const app = `
app "ops" {
  max_restarts = 20
  max_seconds  = 30
  worker "sink" {
    plugin = "{P}/counter"
    config { forward_to = "collector" }
  }
  worker "collector" {
    plugin = "{P}/ticker"
    config { interval = "1h" }
  }
  supervisor "clocks" {
    worker "tick" {
      plugin = "{P}/ticker"
      config { interval = "1h" }
    }
  }
}`

// writeConfig writes the app definition in a short temporary directory (so
// that the derived socket path is short) and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "app.hcl")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(body, "{P}", pluginDir())), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// syncBuffer collects a process's output; safe for concurrent use.
type syncBuffer = plugintest.Log

// host is a `vigil run` process.
type host struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// startHost runs `vigil run args...` and waits until its control socket
// answers; the cleanup stops it with SIGINT (SIGKILL after 15 s) and checks
// that no plugin process is left.
func startHost(t *testing.T, cfg string, args ...string) *host {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(filepath.Join(binDir, "vigil"), append(append([]string{"run"}, args...), cfg)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &host{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.stop(t)
		t.Logf("vigil run output:\n%s", out.String())
		eventually(t, 5*time.Second, "no plugin process left", func() bool { return len(plugintest.Procs(pluginDir())) == 0 })
	})
	return h
}

// stop sends SIGINT and waits for the exit (killing after 15 s).
func (h *host) stop(t *testing.T) {
	t.Helper()
	_ = h.cmd.Process.Signal(os.Interrupt)
	select {
	case <-h.done:
	case <-time.After(15 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
		t.Errorf("vigil run did not stop within 15s of SIGINT")
	}
}

// cli runs a vigil control command and returns its stdout, stderr and
// exit status.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "vigil"), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("vigil %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// mustCLI runs a control command that must succeed and returns its stdout.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, args...)
	if code != 0 {
		t.Fatalf("vigil %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// status returns the parsed `vigil status --json` of the host of cfg, or
// nil if the command fails.
func status(t *testing.T, cfg string) *control.Status {
	t.Helper()
	out, _, code := cli(t, "status", "--json", cfg)
	if code != 0 {
		return nil
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return &st
}

func node(st *control.Status, id string) control.Node {
	if st != nil {
		for _, n := range st.Nodes {
			if n.ID == id {
				return n
			}
		}
	}
	return control.Node{}
}

// waitRunning waits until every worker (or supervisor) of the host of cfg
// runs and returns that status.
func waitRunning(t *testing.T, cfg string, ids ...string) *control.Status {
	t.Helper()
	var st *control.Status
	eventually(t, 15*time.Second, "workers "+strings.Join(ids, ", ")+" running", func() bool {
		st = status(t, cfg)
		for _, id := range ids {
			if n := node(st, id); n.State != "running" || (n.Kind != control.KindSupervisor && n.PID == 0) {
				return false
			}
		}
		return true
	})
	return st
}

func TestControlStatusStopStartRestartAndCrash(t *testing.T) {
	cfg := writeConfig(t, app)
	h := startHost(t, cfg)
	// The nested supervisor last: its parent marks it running only after
	// its children started.
	st := waitRunning(t, cfg, "sink", "collector", "tick", "clocks")

	// The socket is derived from the config and private to its owner.
	sock := control.SocketPath(cfg)
	if want := filepath.Join(filepath.Dir(cfg), ".app.hcl.vigil.sock"); sock != want {
		t.Fatalf("socket path %s, want %s", sock, want)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v, want a socket with 0600", fi.Mode())
	}

	// The tree and the per-worker fields.
	sink := node(st, "sink")
	if sink.Supervisor != "ops" || sink.Depth != 1 || sink.RSSBytes <= 0 || len(sink.SHA256) != 64 || sink.Restarts != 0 ||
		sink.Plugin != filepath.Join(pluginDir(), "counter") {
		t.Fatalf("sink status %+v", sink)
	}
	if tick := node(st, "tick"); tick.Supervisor != "ops/clocks" || tick.Depth != 2 {
		t.Fatalf("tick status %+v, want under ops/clocks at depth 2", tick)
	}
	if clocks := node(st, "clocks"); clocks.Kind != control.KindSupervisor || clocks.State != "running" {
		t.Fatalf("clocks status %+v, want a running supervisor", clocks)
	}
	text := mustCLI(t, "status", cfg)
	for _, want := range []string{"NAME", "ops/", "  sink ", "  clocks/", "    tick ", "running"} {
		if !strings.Contains(text, want) {
			t.Fatalf("status text lacks %q:\n%s", want, text)
		}
	}

	// kill -9: status shows the restart and a new PID.
	old := sink.PID
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "sink restarted after kill -9", func() bool {
		n := node(status(t, cfg), "sink")
		return n.State == "running" && n.Restarts == 1 && n.PID != 0 && n.PID != old && n.LastExit != ""
	})

	// stop: stopped, no PID, the process is gone.
	old = node(status(t, cfg), "sink").PID
	if out := mustCLI(t, "stop", "-c", cfg, "sink"); !strings.Contains(out, "sink: stopped") {
		t.Fatalf("stop output %q", out)
	}
	if n := node(status(t, cfg), "sink"); n.State != "stopped" || n.PID != 0 {
		t.Fatalf("after stop: %+v", n)
	}
	eventually(t, 5*time.Second, "stopped sink's process gone", func() bool { return !plugintest.Alive(old) })
	if _, errOut, code := cli(t, "stop", "-c", cfg, "sink"); code != 1 || !strings.Contains(errOut, "already stopped") {
		t.Fatalf("second stop: exit %d, %q", code, errOut)
	}

	// start: running with a new PID.
	mustCLI(t, "start", "-c", cfg, "sink")
	started := node(status(t, cfg), "sink")
	if started.State != "running" || started.PID == 0 || started.PID == old {
		t.Fatalf("after start: %+v (old pid %d)", started, old)
	}
	if _, errOut, code := cli(t, "start", "-c", cfg, "sink"); code != 1 || !strings.Contains(errOut, "already running") {
		t.Fatalf("start of a running worker: exit %d, %q", code, errOut)
	}

	// restart: a new PID and one more restart.
	mustCLI(t, "restart", "--control", sock, "sink")
	restarted := node(status(t, cfg), "sink")
	if restarted.State != "running" || restarted.PID == started.PID || restarted.Restarts <= started.Restarts {
		t.Fatalf("after restart: %+v, before %+v", restarted, started)
	}
	if plugintest.Alive(started.PID) {
		eventually(t, 5*time.Second, "restarted sink's old process gone", func() bool { return !plugintest.Alive(started.PID) })
	}

	// Unknown worker: the known ones are listed.
	_, errOut, code := cli(t, "restart", "-c", cfg, "nope")
	if code != 1 || !strings.Contains(errOut, `worker not found: "nope"`) || !strings.Contains(errOut, "sink, collector, tick") {
		t.Fatalf("unknown worker: exit %d, %q", code, errOut)
	}

	// A clean stop removes the socket.
	h.stop(t)
	if h.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("vigil run exit %d", h.cmd.ProcessState.ExitCode())
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left after shutdown: %v", err)
	}
}

func TestControlSendAndDeadLetters(t *testing.T) {
	cfg := writeConfig(t, app)
	startHost(t, cfg)
	waitRunning(t, cfg, "sink", "collector")

	// send reaches the worker: sink processes it and forwards to collector.
	if out := mustCLI(t, "send", "-c", cfg, "--priority", "high", "sink", "hello"); !strings.HasPrefix(out, "sent ") {
		t.Fatalf("send output %q", out)
	}
	eventually(t, 10*time.Second, "sink forwarded the message to collector", func() bool {
		return node(status(t, cfg), "collector").Mailbox == 1
	})
	if _, errOut, code := cli(t, "send", "-c", cfg, "--priority", "bogus", "sink", "x"); code != 1 || !strings.Contains(errOut, "unknown priority") {
		t.Fatalf("bad priority: exit %d, %q", code, errOut)
	}
	if _, errOut, code := cli(t, "send", "-c", cfg, "nobody", "x"); code != 1 || !strings.Contains(errOut, "known workers and pools") {
		t.Fatalf("send to unknown: exit %d, %q", code, errOut)
	}

	// A short-lived message to collector (which never reads) expires.
	mustCLI(t, "send", "-c", cfg, "--ttl", "50ms", "--id", "short-1", "collector", "short")
	eventually(t, 10*time.Second, "short-1 dead-lettered", func() bool {
		out, _, _ := cli(t, "deadletters", "-c", cfg, "collector")
		return strings.Contains(out, "dl-1") && strings.Contains(out, "short-1") && strings.Contains(out, "expired")
	})
	if n := node(status(t, cfg), "collector"); n.DeadLetters != 1 {
		t.Fatalf("status after expiry: %+v, want 1 dead letter", n)
	}

	// Replay: dl-1 leaves the list (the message is queued again, with its
	// own 50 ms TTL, and expires again as a new dead letter).
	if out := mustCLI(t, "deadletters", "-c", cfg, "collector", "--replay", "dl-1"); !strings.Contains(out, "replayed dl-1") {
		t.Fatalf("replay output %q", out)
	}
	if _, errOut, code := cli(t, "deadletters", "-c", cfg, "collector", "--replay", "dl-1"); code != 1 || !strings.Contains(errOut, "dead letter not found") {
		t.Fatalf("second replay: exit %d, %q", code, errOut)
	}
	eventually(t, 10*time.Second, "the replayed message expired again as dl-2", func() bool {
		out, _, _ := cli(t, "deadletters", "-c", cfg, "collector")
		return strings.Contains(out, "dl-2") && strings.Contains(out, "short-1") && !strings.Contains(out, "dl-1")
	})

	// Discard empties the list.
	mustCLI(t, "deadletters", "-c", cfg, "collector", "--discard", "dl-2")
	if out := mustCLI(t, "deadletters", "-c", cfg, "collector"); !strings.Contains(out, "no dead letters") {
		t.Fatalf("after discard: %q", out)
	}
}

func TestControlNoHostRunning(t *testing.T) {
	cfg := writeConfig(t, app)
	_, errOut, code := cli(t, "status", cfg)
	want := "no vigil host is running for " + cfg + " (socket " + control.SocketPath(cfg) + "): start it with `vigil run " + cfg + "`"
	if code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("status without host: exit %d, stderr %q, want %q", code, errOut, want)
	}
}

func TestControlStaleSocketReplacedAndLiveHostRefused(t *testing.T) {
	cfg := writeConfig(t, app)
	sock := filepath.Join(filepath.Dir(cfg), "ctl.sock")
	// A stale socket file: a listener closed without unlinking it.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("stale socket not left: %v", err)
	}
	startHost(t, cfg, "--control", sock)
	eventually(t, 15*time.Second, "the host answers on the replaced socket", func() bool {
		_, _, code := cli(t, "status", "--control", sock)
		return code == 0
	})
	// A second host on the same socket refuses to start.
	_, errOut, code := cli(t, "run", "--control", sock, cfg)
	if code != 1 || !strings.Contains(errOut, "a vigil host is already running on control socket "+sock) {
		t.Fatalf("second host: exit %d, %q", code, errOut)
	}
	if _, _, code := cli(t, "status", "--control", sock); code != 0 {
		t.Fatal("the first host's socket was disturbed by the second")
	}
}

func TestSocketPath(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	long := "/" + strings.Repeat("d", 100) + "/app.hcl"
	tests := map[string]struct{ config, want string }{
		"next to the config":    {"/etc/vigil/app.hcl", "/etc/vigil/.app.hcl.vigil.sock"},
		"too long: runtime dir": {long, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := control.SocketPath(tc.config)
			if tc.want != "" && got != tc.want {
				t.Fatalf("SocketPath(%q) = %q, want %q", tc.config, got, tc.want)
			}
			if tc.want == "" && (!strings.HasPrefix(got, "/run/user/1000/vigil-") || !strings.HasSuffix(got, ".sock") || len(got) > 107) {
				t.Fatalf("SocketPath(long) = %q, want /run/user/1000/vigil-<hash>.sock", got)
			}
			if again := control.SocketPath(tc.config); again != got {
				t.Fatalf("not stable: %q then %q", got, again)
			}
		})
	}
}
