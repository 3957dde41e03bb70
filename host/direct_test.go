package host

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/sdk"
)

// TestWorkerCallRepliesDirectly checks, with real plugin processes, that
// the replies of worker→worker calls skip the host while the caller's
// reply socket works, and come through the host when it does not: the
// caller's socket file is removed and the callee is killed, so that its
// successor cannot dial the caller and falls back. No call fails either
// way.
func TestWorkerCallRepliesDirectly(t *testing.T) {
	r := serveHost(t, `
app "d" {
  worker "echo" {
    plugin = "{P}/echo"
    config { interval = "1h" }
  }
  worker "caller" {
    plugin = "{P}/producer"
    config {
      mode = "bench"
      to   = "echo"
    }
  }
}`, Options{}, nil)
	ctx := context.Background()
	calls := func(n int) {
		t.Helper()
		// The caller makes n calls to echo and answers with their times.
		rep, err := r.h.Call(ctx, "caller", sdk.Msg(fmt.Sprintf("go:%d", n)).MustBuild(), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rtts []int64
		if err := json.Unmarshal(rep.Payload(), &rtts); err != nil || len(rtts) != n {
			t.Fatalf("caller answered %q (%v)", rep.Payload(), err)
		}
	}
	routed := func() uint64 { return r.h.bridge.repliesRouted.Load() }

	calls(20)
	if got := routed(); got != 0 {
		t.Fatalf("%d of 20 replies came through the host, want 0 (direct)", got)
	}
	addr := r.h.bridge.replyAddrOf("caller")
	if addr == "" {
		t.Fatal("the caller announced no reply address")
	}

	// Break the direct path for a new callee: no socket to dial. (Echo
	// must have acked the last request first: a direct reply carries no
	// ack, and an unacked request would be delivered again, and answered
	// again, by echo's next incarnation.)
	echo := mustMailbox(t, r.h, "echo")
	eventually(t, 5*time.Second, "echo acked every request", func() bool { return echo.InFlight() == 0 })
	if err := os.Remove(addr); err != nil {
		t.Fatal(err)
	}
	pid := pids(r, "echo")["echo"]
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.ev.Wait(t, 10*time.Second, "echo restarted", started("echo", 2))
	calls(20)
	if got := routed(); got != 20 {
		t.Fatalf("%d of 20 replies came through the host after the direct path broke, want 20", got)
	}
}
