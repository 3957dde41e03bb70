package protocol

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	plugin "github.com/hashicorp/go-plugin"
)

// socketDir gives the test a short private directory as the plugin's
// socket directory (PLUGIN_UNIX_SOCKET_DIR), as go-plugin would.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv(plugin.EnvUnixSocketDir, dir)
	return dir
}

// replySink collects what a ReplyListener hands out.
type replySink struct {
	mu  sync.Mutex
	got []Envelope
	ch  chan struct{}
}

func newReplySink() *replySink { return &replySink{ch: make(chan struct{}, 100)} }

func (s *replySink) handle(e *Envelope) {
	s.mu.Lock()
	s.got = append(s.got, *e)
	s.mu.Unlock()
	s.ch <- struct{}{}
}

func (s *replySink) wait(t *testing.T, n int) []Envelope {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for range n {
		select {
		case <-s.ch:
		case <-timeout:
			t.Fatalf("waited 5s for %d replies", n)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Envelope(nil), s.got...)
}

func listen(t *testing.T, s *replySink) *ReplyListener {
	t.Helper()
	l, err := ListenReplies(s.handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func TestDirectReplies(t *testing.T) {
	dir := socketDir(t)
	sink := newReplySink()
	l := listen(t, sink)
	if filepath.Dir(l.Addr()) != dir || !ValidReplyAddr(l.Addr()) {
		t.Fatalf("address %q: not a valid reply address in %s", l.Addr(), dir)
	}
	var d ReplyDialer
	defer d.Close()
	want := []Envelope{
		{ID: "r1", Sender: "echo", Payload: []byte("one"), CorrelationID: "call-1", Priority: -1, Remaining: time.Second},
		{ID: "r2", Sender: "echo", Payload: make([]byte, 200_000), CorrelationID: "call-2"},
	}
	for i := range want {
		if err := d.Send(l.Addr(), &want[i]); err != nil {
			t.Fatal(err)
		}
	}
	got := sink.wait(t, 2)
	for i := range want {
		if got[i].ID != want[i].ID || got[i].CorrelationID != want[i].CorrelationID || len(got[i].Payload) != len(want[i].Payload) ||
			got[i].Priority != want[i].Priority || got[i].Remaining != want[i].Remaining {
			t.Errorf("reply %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	d.mu.Lock()
	n := len(d.conns)
	d.mu.Unlock()
	if n != 1 {
		t.Errorf("the dialer holds %d connections for one address, want 1", n)
	}

	// A malformed frame ends its connection, not the listener.
	c, err := net.Dial("unix", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after a malformed frame: %v, want the listener to close the connection", err)
	}
	c.Close()
	if err := d.Send(l.Addr(), &Envelope{ID: "r3", CorrelationID: "call-3"}); err != nil {
		t.Fatal(err)
	}
	if got := sink.wait(t, 1); got[len(got)-1].ID != "r3" {
		t.Fatalf("after a malformed frame: got %+v", got[len(got)-1])
	}

	// A frame cut short by its writer is never handed out.
	c, err = net.Dial("unix", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte{100, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := d.Send(l.Addr(), &Envelope{ID: "r4", CorrelationID: "call-4"}); err != nil {
		t.Fatal(err)
	}
	if got := sink.wait(t, 1); len(got) != 4 || got[3].ID != "r4" {
		t.Fatalf("after a cut frame: got %d replies, last %+v", len(got), got[len(got)-1])
	}

	// The caller goes away: sends fail at once (the connection's peer is
	// closed, and the socket file is gone for a new dial), and the
	// answering side then replies through the host.
	l.Close()
	if err := d.Send(l.Addr(), &Envelope{ID: "r5", CorrelationID: "call-5"}); err == nil {
		t.Fatal("a send to a closed listener succeeded")
	}
	if _, err := os.Stat(l.Addr()); !os.IsNotExist(err) {
		t.Errorf("socket file after Close: %v", err)
	}
}

func TestDirectReplyErrors(t *testing.T) {
	t.Run("no socket", func(t *testing.T) {
		var d ReplyDialer
		defer d.Close()
		if err := d.Send(filepath.Join(t.TempDir(), replySocketName), &Envelope{ID: "x"}); err == nil {
			t.Fatal("a send to a missing socket succeeded")
		}
	})
	t.Run("closed dialer", func(t *testing.T) {
		socketDir(t)
		l := listen(t, newReplySink())
		var d ReplyDialer
		d.Close()
		if err := d.Send(l.Addr(), &Envelope{ID: "x"}); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("send after Close: %v", err)
		}
	})
	t.Run("invalid UTF-8", func(t *testing.T) {
		socketDir(t)
		l := listen(t, newReplySink())
		var d ReplyDialer
		defer d.Close()
		if err := d.Send(l.Addr(), &Envelope{ID: "\xff"}); err == nil {
			t.Fatal("an envelope the generated code refuses was sent")
		}
	})
	t.Run("path too long", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Setenv(plugin.EnvUnixSocketDir, dir)
		if _, err := ListenReplies(func(*Envelope) {}); !errors.Is(err, ErrReplyAddr) {
			t.Fatalf("ListenReplies: %v, want ErrReplyAddr", err)
		}
	})
	t.Run("own directory when go-plugin gives none", func(t *testing.T) {
		t.Setenv(plugin.EnvUnixSocketDir, "")
		l, err := ListenReplies(func(*Envelope) {})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Dir(l.Addr())
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("socket directory %s: %v %v, want a private directory", dir, fi.Mode(), err)
		}
		l.Close()
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("Close left %s: %v", dir, err)
		}
	})
}

func TestValidReplyAddr(t *testing.T) {
	tests := map[string]bool{
		"/tmp/v1/plugin-dir2/vigil-reply":               true,
		"vigil-reply":                                   false, // relative
		"tmp/vigil-reply":                               false,
		"/var/run/docker.sock":                          false, // not an SDK reply socket
		"/tmp/vigil-reply/x":                            false,
		"/var/run/docker.sock\x00/vigil-reply":          false, // the kernel would stop at the NUL
		"/tmp/v1/../../var/vigil-reply":                 false, // not clean
		"/tmp/v1//vigil-reply":                          false,
		"/" + strings.Repeat("d", 100) + "/vigil-reply": false, // too long for a socket
		"": false,
	}
	for addr, want := range tests {
		if got := ValidReplyAddr(addr); got != want {
			t.Errorf("ValidReplyAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestDirectRepliesConcurrent sends from many goroutines at once through
// one dialer: every reply arrives whole, and the dialer keeps one
// connection per caller (a connection dialled by a losing race is closed).
func TestDirectRepliesConcurrent(t *testing.T) {
	socketDir(t)
	sink := newReplySink()
	l := listen(t, sink)
	var d ReplyDialer
	defer d.Close()
	const senders, each = 8, 10
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				e := Envelope{ID: fmt.Sprintf("r%d-%d", g, i), CorrelationID: "c", Payload: make([]byte, 1000*g)}
				if err := d.Send(l.Addr(), &e); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got := sink.wait(t, senders*each)
	seen := map[string]bool{}
	for _, e := range got {
		seen[e.ID] = true
	}
	if len(seen) != senders*each {
		t.Fatalf("%d distinct replies of %d", len(seen), senders*each)
	}
	d.mu.Lock()
	n := len(d.conns)
	d.mu.Unlock()
	if n != 1 {
		t.Fatalf("the dialer holds %d connections to one caller, want 1", n)
	}
}

// TestDirectReplyToACallerThatDoesNotRead: a caller that stops reading
// makes a send fail within the write timeout, not block; the connection
// is then closed (no frame may follow a partial one) and dropped, and the
// next send dials afresh.
func TestDirectReplyToACallerThatDoesNotRead(t *testing.T) {
	dir := socketDir(t)
	addr := filepath.Join(dir, replySocketName)
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // held open, never read
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	})
	var d ReplyDialer
	defer d.Close()
	big := &Envelope{ID: "big", CorrelationID: "c", Payload: make([]byte, 4<<20)}
	begin := time.Now()
	var sendErr error
	for range 16 { // 64 MiB at most: far beyond any socket buffer
		if sendErr = d.Send(addr, big); sendErr != nil {
			break
		}
	}
	if sendErr == nil {
		t.Fatal("16 sends of 4 MiB to a caller that never reads all succeeded")
	}
	if took := time.Since(begin); took > 3*replyWriteTimeout {
		t.Fatalf("the failing send took %v (write timeout %v)", took, replyWriteTimeout)
	}
	d.mu.Lock()
	n := len(d.conns)
	d.mu.Unlock()
	if n != 0 {
		t.Fatalf("the dialer kept %d broken connections", n)
	}
	if err := d.Send(addr, &Envelope{ID: "small", CorrelationID: "c"}); err != nil {
		t.Fatalf("a new send after a broken connection: %v", err)
	}
}
