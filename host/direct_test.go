package host

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/protocol"
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
	b := r.h.bridge
	b.mu.Lock()
	var addr string
	for _, s := range b.sessions["caller"] {
		addr = s.replyVia()
	}
	b.mu.Unlock()
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

// TestReplyAddresses checks which reply addresses the host accepts from an
// incarnation (only a socket named as the SDK names it, inside the host's
// socket directories), and that it stamps each request with the address of
// the incarnation that sent it — so during a hot swap each incarnation's
// calls are answered straight back to it — and nothing else: not a message
// whose reply-to names another worker, not a reply, and not an address a
// plugin put in its own send.
func TestReplyAddresses(t *testing.T) {
	base := shortTempDir(t)
	b := newBridge(hclog.NewNullLogger(), 8, 2)
	b.socketBase = base
	b.setWorkers([]*config.Worker{{Name: "caller", IDs: []string{"caller"}}, {Name: "echo", IDs: []string{"echo"}}})
	socket := func(parts ...string) string {
		t.Helper()
		dir := filepath.Join(append([]string{base}, parts...)...)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "vigil-reply")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return path
	}
	sock1, sock2 := socket("v1", "plugin-dir1"), socket("v2", "plugin-dir2")
	link := filepath.Join(base, "v3", "vigil-reply")
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sock1, link); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(base, "v4", "vigil-reply")
	if err := os.MkdirAll(filepath.Dir(plain), 0o700); err != nil {
		t.Fatal(err)
	}
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

	accepted := map[string]struct {
		addr string
		want string
	}{
		"the incarnation's socket":       {sock1, sock1},
		"a symlink to it":                {link, ""},
		"not a socket":                   {plain, ""},
		"outside the socket directories": {outside, ""},
		"missing":                        {filepath.Join(base, "v9", "vigil-reply"), ""},
		"wrong name":                     {filepath.Join(base, "v1", "plugin-dir1"), ""},
		"NUL":                            {sock1 + "\x00/vigil-reply", ""},
	}
	for name, tc := range accepted {
		t.Run(name, func(t *testing.T) {
			s := &session{b: b, id: "caller", n: 1}
			s.setReplyAddr(tc.addr)
			if got := s.replyVia(); got != tc.want {
				t.Fatalf("recorded %q, want %q", got, tc.want)
			}
		})
	}

	// Two incarnations of caller (a hot swap), each with its socket.
	old, next := &session{b: b, id: "caller", n: 1}, &session{b: b, id: "caller", n: 2}
	old.setReplyAddr(sock1)
	next.setReplyAddr(sock2)
	echo := b.box("echo")
	send := func(s *session, kind protocol.SendKind, to, replyTo, corr, claimed string) string {
		t.Helper()
		req := &protocol.SendRequest{To: to, Kind: kind, Msg: protocol.Envelope{
			ID: sdk.NewMessageID(), Payload: []byte("q"), ReplyTo: replyTo, CorrelationID: corr, ReplyVia: claimed}}
		if err := b.route(s.id, s.replyVia(), req); err != nil {
			t.Fatal(err)
		}
		m, err := echo.Receive()
		if err != nil {
			t.Fatal(err)
		}
		return sdk.EnvelopeFromMessage(m, "").ReplyVia
	}
	for name, tc := range map[string]struct {
		from                   *session
		replyTo, corr, claimed string
		want                   string
	}{
		"a call of the old incarnation": {old, "caller", "c1", "", sock1},
		"a call of the new one":         {next, "caller", "c2", "", sock2},
		"an address the plugin claims":  {old, "caller", "c3", "/tmp/x/vigil-reply", sock1},
		"reply-to another worker":       {old, "echo", "c4", sock1, ""},
		"no correlation ID":             {old, "caller", "", "", ""},
		"no reply-to":                   {next, "", "c5", sock2, ""},
	} {
		t.Run(name, func(t *testing.T) {
			if got := send(tc.from, protocol.SendPlain, "echo", tc.replyTo, tc.corr, tc.claimed); got != tc.want {
				t.Fatalf("delivered with reply address %q, want %q", got, tc.want)
			}
		})
	}
}
