package process

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/sdk"
)

func TestExitIsReportedWhileAnOrphanHoldsStderr(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "orphan.pid")
	_, i := start(t, flaky("orphaned", `{"mode":"orphan","after":"50ms","orphan_pid_file":"`+pidFile+`"}`))
	t.Cleanup(func() {
		// The orphan left the worker's process group on purpose: end it.
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	// The worker exits 1 while a process outside its group still holds its
	// stderr open: the exit must still be reported (within the pipe grace),
	// not wait for the orphan's 60 s.
	waitDone(t, i, 10*time.Second)
	if i.Err() == nil {
		t.Fatalf("Err = nil, want the exit status 1")
	}
	if _, err := os.Stat(pidFile); err != nil {
		t.Fatalf("the orphan was never started: %v", err)
	}
}

func TestKillIsFinal(t *testing.T) {
	c, i := start(t, flaky("doomed", `{"mode":"hang_on_stop"}`))
	c.Kill()
	waitDone(t, i, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if inc, err := c.Start(ctx); err == nil {
		_ = inc.Stop(ctx)
		t.Fatal("Start after Kill succeeded; the host is going down and must not start workers")
	} else if !errors.Is(err, sdk.ErrStartFailed) || !strings.Contains(err.Error(), "killing") {
		t.Fatalf("Start after Kill = %v", err)
	}
}

func TestPinIsCheckedAgainWhenTheBinaryIsReplaced(t *testing.T) {
	raw, err := os.ReadFile(pluginPath("echo"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "echo")
	if err := os.WriteFile(bin, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	c, i := start(t, Spec{ID: "pinned", Path: bin, SHA256: sum[:]})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := i.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// An unchanged file starts again (from the cached verification).
	inc, err := c.Start(ctx)
	if err != nil {
		t.Fatalf("second start of the unchanged pinned binary: %v", err)
	}
	if err := inc.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Deploy another binary by write-then-rename: the pin must refuse it.
	other := filepath.Join(dir, "echo.new")
	if err := os.WriteFile(other, append(raw, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, bin); err != nil {
		t.Fatal(err)
	}
	if inc, err := c.Start(ctx); err == nil {
		_ = inc.Stop(ctx)
		t.Fatal("a replaced binary started despite the sha256 pin")
	} else if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("Start of a replaced binary = %v, want ErrChecksumMismatch", err)
	}
}
