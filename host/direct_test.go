package host

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigil-run/vigil/sdk"
)

// TestWorkerCallRepliesDirectly checks, with real plugin processes, that
// the replies of worker→worker calls skip the host while the caller's
// reply socket works, and come through the host when it does not: the
// caller's socket file is removed and the callee is killed, so that its
// successor cannot dial the caller and falls back. No call fails either
// way.
func TestWorkerCallRepliesDirectly(t *testing.T) {
	r := serveHost(t, profiled(callBenchApp), Options{}, nil) // echo, and a caller in bench mode
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
	routed := r.h.RepliesRouted

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

// TestReplyAddresses checks what the host passes on as a caller's direct
// reply address: only a socket named as the SDK names it, inside the
// host's socket directories, announced by the caller's only live
// incarnation (during a hot swap, two are live, and replies go through the
// host to both).
func TestReplyAddresses(t *testing.T) {
	base := shortTempDir(t)
	b := newBridge(hclog.NewNullLogger(), 8, 2)
	b.socketBase = base
	mkdir := func(parts ...string) string {
		t.Helper()
		dir := filepath.Join(append([]string{base}, parts...)...)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	sock := filepath.Join(mkdir("v1", "plugin-dir1"), "vigil-reply")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	link := filepath.Join(mkdir("v2"), "vigil-reply")
	if err := os.Symlink(sock, link); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(mkdir("v3"), "vigil-reply")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	outsideDir := shortTempDir(t)
	outside := filepath.Join(outsideDir, "vigil-reply")
	oln, err := net.Listen("unix", outside)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { oln.Close() })

	live := func(n uint64) *session {
		s := &session{b: b, id: "caller", n: n, live: make(chan struct{})}
		close(s.live)
		return s
	}
	tests := map[string]struct {
		addr string
		want string
	}{
		"the caller's socket":            {sock, sock},
		"a symlink to it":                {link, ""},
		"not a socket":                   {plain, ""},
		"outside the socket directories": {outside, ""},
		"missing":                        {filepath.Join(base, "v9", "vigil-reply"), ""},
		"wrong name":                     {filepath.Join(base, "v1", "plugin-dir1"), ""},
		"NUL":                            {sock + "\x00/vigil-reply", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := live(1)
			b.mu.Lock()
			b.sessions["caller"] = []*session{s}
			b.mu.Unlock()
			s.setReplyAddr(tc.addr)
			if got := b.replyAddrOf("caller"); got != tc.want {
				t.Fatalf("replyAddrOf = %q, want %q", got, tc.want)
			}
		})
	}

	one := live(1)
	one.setReplyAddr(sock)
	req := sdk.Msg("q").MustBuild()
	req.SetCorrelationID("c1")
	req.SetReplyTo("caller")
	toHost := sdk.Msg("q").MustBuild()
	toHost.SetCorrelationID("c2")
	toHost.SetReplyTo(sdk.ReplyAddressHost)
	plainMsg := sdk.Msg("p").MustBuild()
	batch := []*sdk.Message{req, toHost, plainMsg}
	b.mu.Lock()
	b.sessions["caller"] = []*session{one}
	b.mu.Unlock()
	if got := b.replyVias(batch, nil); !slices.Equal(got, []string{sock, "", ""}) {
		t.Fatalf("one live incarnation: vias %q", got)
	}
	b.mu.Lock()
	b.sessions["caller"] = []*session{one, live(2)} // a hot swap under way
	b.mu.Unlock()
	if got := b.replyVias(batch, nil); !slices.Equal(got, []string{"", "", ""}) {
		t.Fatalf("two live incarnations: vias %q", got)
	}
}
