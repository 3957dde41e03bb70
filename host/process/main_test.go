package process

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
)

// pluginDir holds the real plugins, built once by TestMain.
var pluginDir string

func TestMain(m *testing.M) {
	code, err := testMain(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func testMain(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "vpt-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	pluginDir = dir
	cmd := exec.Command("go", "build", "-o", dir+"/", "../../plugins/echo", "../../plugins/ticker", "../../plugins/flaky")
	if out, err := cmd.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("building the plugins: %v\n%s", err, out)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			return 1, fmt.Errorf("goroutine leak: %v", err)
		}
		if pids := pluginProcs(dir); len(pids) > 0 {
			return 1, fmt.Errorf("plugin processes left behind: %v", pids)
		}
	}
	return code, nil
}

// plugin returns the path of a built plugin.
func pluginPath(name string) string { return filepath.Join(pluginDir, name) }

// pluginProcs lists live (non-zombie) processes whose executable lies under dir.
func pluginProcs(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.HasPrefix(string(cmdline), dir) {
			continue
		}
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i > 0 && !strings.HasPrefix(string(stat[i+1:]), " Z")
}

// testLogger logs to the test.
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start starts a child and registers a cleanup that stops it.
func start(t *testing.T, spec Spec) (*Child, *Incarnation) {
	t.Helper()
	if spec.TempDir == "" {
		spec.TempDir = shortTempDir(t)
	}
	c := New(spec, testLogger(t).Named(spec.ID))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	inc, err := c.Start(ctx)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	i := asIncarnation(t, inc)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = i.Stop(ctx)
	})
	return c, i
}

func asIncarnation(t *testing.T, inc any) *Incarnation {
	t.Helper()
	switch v := inc.(type) {
	case *Incarnation:
		return v
	case unchecked:
		return v.i
	}
	t.Fatalf("unexpected incarnation type %T", inc)
	return nil
}

// waitDone waits for the incarnation to end within d.
func waitDone(t *testing.T, i *Incarnation, d time.Duration) {
	t.Helper()
	select {
	case <-i.Done():
	case <-time.After(d):
		t.Fatalf("incarnation (pid %d) did not end within %v", i.PID(), d)
	}
}

// flaky returns a spec for the flaky plugin with the given JSON config.
func flaky(id, config string) Spec {
	return Spec{ID: id, Path: pluginPath("flaky"), Config: []byte(config)}
}

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
