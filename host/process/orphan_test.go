package process

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
