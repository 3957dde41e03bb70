package process

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigil-run/vigil/sdk/plugintest"
)

// pluginDir holds the real plugins, built once by TestMain.
var pluginDir string

func TestMain(m *testing.M) {
	plugintest.MainWithBinaries(m, &pluginDir,
		plugintest.Build{Pkgs: []string{"../../plugins/echo", "../../plugins/ticker", "../../plugins/flaky"}})
}

// pluginPath returns the path of a built plugin.
func pluginPath(name string) string { return filepath.Join(pluginDir, name) }

func alive(pid int) bool { return plugintest.Alive(pid) }

// testLogger logs to the test.
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: plugintest.Output(t)})
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
