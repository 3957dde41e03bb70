package host

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/plugintest"
)

// Built once by TestMain: the vigil binary and the real plugins.
var (
	binDir string // holds vigil, and the plugins in p/
)

func TestMain(m *testing.M) {
	plugintest.MainWithBinaries(m, &binDir,
		plugintest.Build{Out: "p/", Pkgs: []string{"../plugins/echo", "../plugins/ticker", "../plugins/flaky", "../plugins/counter", "../plugins/producer", "./testdata/rawbench", "./testdata/badplugin"}},
		plugintest.Build{Out: "vigil", Pkgs: []string{"./cmd/vigil"}},
		// A second version of counter, for the hot-swap tests.
		plugintest.Build{Out: "v2/", Pkgs: []string{"../plugins/counter"}, Flags: []string{"-ldflags=-X main.version=v2"}},
	)
}

// pluginDir returns the directory of the plugins built by TestMain.
func pluginDir() string { return filepath.Join(binDir, "p") }

// pluginProcs lists live (non-zombie) processes running a built plugin.
func pluginProcs() []int { return plugintest.Procs(pluginDir()) }

func alive(pid int) bool { return plugintest.Alive(pid) }

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	plugintest.Eventually(t, d, what, cond)
}

// noPluginProcsLeft waits until no plugin process runs.
func noPluginProcsLeft(t *testing.T) {
	t.Helper()
	eventually(t, 5*time.Second, "no plugin process left", func() bool { return len(pluginProcs()) == 0 })
}

// writeConfig writes an app definition in which {P} stands for the plugin dir.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.hcl")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(body, "{P}", pluginDir())), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// events records a host's lifecycle events (plugintest.Recorder).
type events = plugintest.Recorder[sdk.Event]

func started(id string, n int) func(sdk.Event) bool {
	return func(e sdk.Event) bool { return e.Kind == sdk.EventChildStarted && e.Child == id && e.Incarnation == n }
}

// running is a host served in the background by runHost.
type running struct {
	h      *Host
	ev     *events
	cancel context.CancelFunc
	errc   chan error
}

// stop cancels Serve and returns its result (within 15 s).
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.errc:
		r.errc <- err
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return within 15s of cancel")
		return nil
	}
}

// runHost loads body, builds the host and serves it in the background; the
// test's cleanup stops it and checks that no plugin process is left.
func runHost(t *testing.T, body string) *running {
	t.Helper()
	app, err := config.Load(writeConfig(t, body))
	if err != nil {
		t.Fatalf("config: %s", config.Format(err))
	}
	ev := plugintest.NewRecorder[sdk.Event]()
	tw := plugintest.Output(t) // silenced after the stop below
	logger := hclog.New(&hclog.LoggerOptions{Name: "vigil", Level: hclog.Debug, Output: tw})
	h, err := New(app, Options{Logger: logger, EventHook: ev.Add, TempDir: shortTempDir(t), MemoryCheckInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	r := &running{h: h, ev: ev, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- h.Serve(ctx) }()
	t.Cleanup(func() {
		r.stop(t)
		noPluginProcsLeft(t)
	})
	return r
}

// vigil runs the vigil binary with args; stderr and stdout go to a buffer.
type vigilCmd struct {
	cmd *exec.Cmd
	out *syncBuffer
}

func startVigil(t *testing.T, args ...string) *vigilCmd {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(filepath.Join(binDir, "vigil"), args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	v := &vigilCmd{cmd: cmd, out: out}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		t.Logf("vigil output:\n%s", out.String())
		noPluginProcsLeft(t)
	})
	return v
}

// wait waits up to d for vigil to exit and returns its exit status.
func (v *vigilCmd) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- v.cmd.Wait() }()
	select {
	case <-done:
		return v.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		_ = v.cmd.Process.Kill()
		<-done
		t.Fatalf("vigil did not exit within %v", d)
		return -1
	}
}

// syncBuffer collects a process's output; safe for concurrent use.
type syncBuffer = plugintest.Log

// shortTempDir returns a fresh directory with a short path, removed after
// the test (t.TempDir's names are too long for unix socket paths).
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
