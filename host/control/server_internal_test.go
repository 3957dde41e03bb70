package control

import (
	"os"
	"testing"
)

func TestRSSOfThisProcess(t *testing.T) {
	if got := rss(os.Getpid()); got <= 0 {
		t.Fatalf("rss(self) = %d, want > 0", got)
	}
	if got := rss(1 << 30); got != 0 {
		t.Fatalf("rss(no such pid) = %d, want 0", got)
	}
}
