package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/vigil-run/vigil/sdk"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakePool answers calls with fn.
type fakePool struct {
	calls atomic.Int64
	fn    func(ctx context.Context, n int64, m *sdk.Message) (*sdk.Message, error)
}

func (p *fakePool) Call(ctx context.Context, _ string, m *sdk.Message, _ time.Duration) (*sdk.Message, error) {
	return p.fn(ctx, p.calls.Add(1), m)
}

// echoAfter answers "OK <payload>"; fail says which call numbers fail.
func echoAfter(fail func(n int64) bool) func(context.Context, int64, *sdk.Message) (*sdk.Message, error) {
	return func(_ context.Context, n int64, m *sdk.Message) (*sdk.Message, error) {
		if fail(n) {
			return nil, fmt.Errorf("%w: no reply", sdk.ErrTimeout)
		}
		return sdk.Msg("OK " + m.PayloadString()).MustBuild(), nil
	}
}

// startServer serves s in the background on a loopback port; the returned
// stop cancels it and waits for serve's result.
func startServer(t *testing.T, pool caller, edit func(*config)) (*server, func() error) {
	t.Helper()
	cfg := defaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DrainTimeout = sdk.Duration(2 * time.Second)
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(cfg, pool, hclog.NewNullLogger(), ln, 1)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.serve(ctx) }()
	var result error
	stopped := false
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-errc:
			case <-time.After(10 * time.Second):
				t.Fatal("serve did not return within 10s")
			}
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return s, stop
}

type client struct {
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, s *server) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", s.ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{nc: nc, r: bufio.NewReader(nc)}
}

func (c *client) do(t *testing.T, line string) (string, error) {
	t.Helper()
	_ = c.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	got, err := c.r.ReadString('\n')
	return strings.TrimRight(got, "\n"), err
}

func TestRequests(t *testing.T) {
	pool := &fakePool{fn: echoAfter(func(n int64) bool { return n%2 == 1 })} // every first attempt fails
	s, _ := startServer(t, pool, nil)
	c := dial(t, s)
	for name, tc := range map[string]struct{ in, prefix string }{
		"pool request, retried": {"ECHO x", "OK ECHO x"},
		"status":                {"STATUS", "OK state=serving addr=127.0.0.1:"},
		"health":                {"HEALTH", "OK healthy"},
		"metrics":               {"metrics", "OK conns_active=1 conns_total=1 conns_rejected=0 "},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := c.do(t, tc.in)
			if err != nil || !strings.HasPrefix(got, tc.prefix) {
				t.Errorf("%q answered %q, %v; want prefix %q", tc.in, got, err, tc.prefix)
			}
		})
	}
	if n := s.m.retries.Load(); n != 1 {
		t.Errorf("retries = %d, want 1", n)
	}
	if got, err := c.do(t, "QUIT"); got != "OK bye" || err != nil {
		t.Errorf("QUIT answered %q, %v", got, err)
	}
	if _, err := c.r.ReadString('\n'); err == nil {
		t.Error("connection open after QUIT")
	}
}

func TestPoolDownMakesUnhealthy(t *testing.T) {
	pool := &fakePool{fn: echoAfter(func(int64) bool { return true })}
	s, _ := startServer(t, pool, func(c *config) { c.Retries = 1 })
	c := dial(t, s)
	for i := range unhealthyAfter {
		got, err := c.do(t, "ECHO x")
		if err != nil || !strings.HasPrefix(got, "ERR unavailable: ") || !strings.Contains(got, "timeout") {
			t.Fatalf("request %d answered %q, %v; want ERR unavailable", i, got, err)
		}
	}
	if n := pool.calls.Load(); n != 2*unhealthyAfter {
		t.Errorf("pool called %d times, want %d (one retry each)", n, 2*unhealthyAfter)
	}
	if err := s.health(); !errors.Is(err, sdk.ErrHealthCheckFailed) {
		t.Errorf("health = %v, want ErrHealthCheckFailed", err)
	}
	if got, _ := c.do(t, "HEALTH"); !strings.HasPrefix(got, "ERR unhealthy: ") {
		t.Errorf("HEALTH = %q", got)
	}
	if got, _ := c.do(t, "METRICS"); !strings.Contains(got, fmt.Sprintf(" errors=%d ", unhealthyAfter+1)) || !strings.Contains(got, fmt.Sprintf(" failures=%d ", unhealthyAfter)) {
		t.Errorf("METRICS = %q", got)
	}
}

func TestLineTooLong(t *testing.T) {
	s, _ := startServer(t, &fakePool{fn: echoAfter(func(int64) bool { return false })}, func(c *config) { c.MaxLine = 64 })
	c := dial(t, s)
	got, err := c.do(t, strings.Repeat("x", 100))
	if err != nil || got != "ERR line too long: the limit is 64 bytes" {
		t.Errorf("answered %q, %v", got, err)
	}
}

// TestDrainDeadline: a request still in flight at the drain deadline has
// its call cancelled; the client gets an ERR line, serve returns.
func TestDrainDeadline(t *testing.T) {
	entered := make(chan struct{})
	pool := &fakePool{fn: func(ctx context.Context, _ int64, _ *sdk.Message) (*sdk.Message, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	s, stop := startServer(t, pool, func(c *config) { c.DrainTimeout = sdk.Duration(200 * time.Millisecond) })
	c := dial(t, s)
	idle := dial(t, s)
	if got, _ := idle.do(t, "STATUS"); !strings.HasPrefix(got, "OK ") {
		t.Fatalf("STATUS = %q", got)
	}
	answer := make(chan string, 1)
	go func() {
		got, err := c.do(t, "SLEEP 100000")
		answer <- fmt.Sprint(got, err)
	}()
	<-entered
	start := time.Now()
	if err := stop(); err != nil {
		t.Errorf("serve = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("serve took %v to return, want about the 200ms drain deadline", d)
	}
	if got := <-answer; !strings.HasPrefix(got, "ERR unavailable: server shutting down") {
		t.Errorf("in-flight request answered %q", got)
	}
	if _, err := idle.r.ReadString('\n'); err == nil {
		t.Error("idle connection open after shutdown")
	}
	if _, err := net.DialTimeout("tcp", s.ln.Addr().String(), time.Second); err == nil {
		t.Error("still accepting after shutdown")
	}
}

func TestConfigValidate(t *testing.T) {
	for name, edit := range map[string]func(*config){
		"no addr":        func(c *config) { c.Addr = "" },
		"no pool":        func(c *config) { c.Pool = "" },
		"zero conns":     func(c *config) { c.MaxConns = 0 },
		"zero idle":      func(c *config) { c.IdleTimeout = 0 },
		"retries":        func(c *config) { c.Retries = 11 },
		"short max_line": func(c *config) { c.MaxLine = 10 },
	} {
		t.Run(name, func(t *testing.T) {
			c := defaultConfig()
			edit(&c)
			if err := c.validate(); !errors.Is(err, sdk.ErrInvalidSpec) {
				t.Errorf("validate = %v, want ErrInvalidSpec", err)
			}
		})
	}
	if err := defaultConfig().validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

func TestPercentiles(t *testing.T) {
	var m metrics
	if p50, p99 := m.percentiles(); p50 != 0 || p99 != 0 {
		t.Errorf("empty: %v %v", p50, p99)
	}
	for i := 1; i <= 100; i++ {
		m.observe(time.Duration(i) * time.Millisecond)
	}
	if p50, p99 := m.percentiles(); p50 != 50*time.Millisecond || p99 != 99*time.Millisecond {
		t.Errorf("p50, p99 = %v, %v; want 50ms, 99ms", p50, p99)
	}
	for range latencyWindow { // the window forgets the old ones
		m.observe(time.Millisecond)
	}
	if p50, p99 := m.percentiles(); p50 != time.Millisecond || p99 != time.Millisecond {
		t.Errorf("after the window: %v, %v", p50, p99)
	}
}
