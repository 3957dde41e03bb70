package process

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestRSS(t *testing.T) {
	got := RSS(os.Getpid())
	// The same figure as VmRSS in /proc/self/status.
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var vmRSS uint64
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
			vmRSS = kb << 10
		}
	}
	// Both are read at slightly different moments: allow 25 % drift.
	if got == 0 || vmRSS == 0 || got < vmRSS*3/4 || got > vmRSS*5/4 {
		t.Fatalf("RSS(self) = %d, VmRSS = %d", got, vmRSS)
	}
	for _, pid := range []int{0, -1, 1 << 30} {
		if got := RSS(pid); got != 0 {
			t.Errorf("RSS(%d) = %d, want 0", pid, got)
		}
	}
}
