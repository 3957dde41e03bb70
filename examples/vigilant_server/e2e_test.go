package vigilantserver_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/examples/vigilant_server/loadgen"
	"github.com/vigil-run/vigil/sdk/plugintest"
)

// binDir holds vigil, server and handler, built once by TestMain (without
// -race: they are the system under test, not the test).
var binDir string

func TestMain(m *testing.M) {
	plugintest.MainWithBinaries(m, &binDir,
		plugintest.Build{Pkgs: []string{"./server", "./handler"}},
		plugintest.Build{Out: "vigil", Pkgs: []string{"../../host/cmd/vigil"}})
}

// procsOf lists live (non-zombie) processes running one of the named
// binaries of binDir.
func procsOf(names ...string) []int {
	var pids []int
	for _, pid := range plugintest.Procs(binDir) {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err == nil && slices.Contains(names, filepath.Base(exe)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	plugintest.Eventually(t, d, what, cond)
}

// app is a running vigil with the example's workers.
type app struct {
	cmd      *exec.Cmd
	out      *syncBuffer
	addr     string
	addrFile string // rewritten by every server incarnation
}

// startApp writes an app definition (server config attributes from
// serverConfig, handler pool of size pool), runs vigil on it and waits
// until the server listens. Cleanup kills whatever is left.
func startApp(t *testing.T, pool int, serverConfig string) *app {
	t.Helper()
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "addr")
	cfg := fmt.Sprintf(`
app "vs" {
  preset = "production"
  worker "handlers" {
    plugin           = %q
    pool             = %d
    shutdown_timeout = "5s"
    backoff {
      min = "10ms"
      max = "100ms"
    }
  }
  worker "server" {
    plugin           = %q
    shutdown_timeout = "10s"
    health_check {
      interval = "500ms"
    }
    config {
      addr      = "127.0.0.1:0"
      addr_file = %q
%s
    }
  }
}
`, filepath.Join(binDir, "handler"), pool, filepath.Join(binDir, "server"), addrFile, serverConfig)
	path := filepath.Join(dir, "app.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd := exec.Command(filepath.Join(binDir, "vigil"), "run", path)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &app{cmd: cmd, out: out, addrFile: addrFile}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("vigil output:\n%s", out.String())
		}
		eventually(t, 5*time.Second, "no example process left", func() bool { return len(procsOf("server", "handler")) == 0 })
	})
	eventually(t, 15*time.Second, "the server's address file", func() bool {
		b, err := os.ReadFile(addrFile)
		a.addr = strings.TrimSpace(string(b))
		return err == nil && a.addr != ""
	})
	eventually(t, 15*time.Second, fmt.Sprintf("%d handlers running", pool), func() bool { return len(procsOf("handler")) == pool })
	return a
}

// wait waits up to d for vigil to exit and returns its exit status.
func (a *app) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	done := make(chan struct{})
	go func() {
		_ = a.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
		return a.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		_ = a.cmd.Process.Kill()
		<-done
		t.Fatalf("vigil did not exit within %v", d)
		return -1
	}
}

// client is one line-protocol connection.
type client struct {
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{nc: nc, r: bufio.NewReader(nc)}
}

func (c *client) send(t *testing.T, line string) {
	t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write([]byte(line + "\n")); err != nil {
		t.Fatalf("sending %q: %v", line, err)
	}
}

// read returns the next line (without newline) or the read error, waiting
// at most d.
func (c *client) read(d time.Duration) (string, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	line, err := c.r.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func (c *client) do(t *testing.T, line string) string {
	t.Helper()
	c.send(t, line)
	got, err := c.read(10 * time.Second)
	if err != nil {
		t.Fatalf("answer to %q: %v", line, err)
	}
	return got
}

// metric returns the value of name in a METRICS answer.
func metric(t *testing.T, line, name string) int64 {
	t.Helper()
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok && k == name {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("metric %s in %q: %v", name, line, err)
			}
			return n
		}
	}
	t.Fatalf("no metric %s in %q", name, line)
	return 0
}

// TestLoadWithHandlerKilled runs the load generator for 3 s on a pool of
// persistent connections, SIGKILLs one handler mid-run, and checks that
// every request was answered correctly and the handler came back.
func TestLoadWithHandlerKilled(t *testing.T) {
	a := startApp(t, 3, `      max_conns = 16
      call_timeout = "2s"`)
	before := procsOf("handler")
	ctl := dial(t, a.addr)

	type outcome struct {
		res loadgen.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := loadgen.Run(context.Background(), loadgen.Options{Addr: a.addr, Conns: 6, Duration: 3 * time.Second, Timeout: 10 * time.Second})
		done <- outcome{res, err}
	}()
	eventually(t, 10*time.Second, "the load to reach 200 requests", func() bool {
		return metric(t, ctl.do(t, "METRICS"), "requests") >= 200
	})
	victim := before[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatalf("killing handler %d: %v", victim, err)
	}
	t.Logf("killed handler %d", victim)
	var o outcome
	select {
	case o = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the load generator did not finish within 20s")
	}
	if o.err != nil {
		t.Fatal(o.err)
	}
	t.Log(o.res)
	r := o.res
	if r.Answered < 300 || r.Sent != r.Answered || r.Failed != 0 || r.ConnErrors != 0 {
		t.Errorf("want every request answered correctly (and at least 300): %v", r)
	}
	eventually(t, 10*time.Second, "the killed handler replaced", func() bool {
		now := procsOf("handler")
		return len(now) == len(before) && !slices.Contains(now, victim)
	})
	m := ctl.do(t, "METRICS")
	t.Log(m)
	if metric(t, m, "failures") != 0 || metric(t, m, "errors") != 0 {
		t.Errorf("server counted failed requests: %s", m)
	}
	if got := ctl.do(t, "HEALTH"); got != "OK healthy" {
		t.Errorf("HEALTH = %q after the load", got)
	}
	ctl.nc.Close()
	if err := a.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := a.wait(t, 20*time.Second); code != 0 {
		t.Errorf("vigil exited with %d, want 0", code)
	}
}

// TestGracefulShutdown: on SIGINT an idle client is disconnected at once,
// a busy client's slow request is answered, and vigil exits 0.
func TestGracefulShutdown(t *testing.T) {
	a := startApp(t, 2, `      drain_timeout = "5s"`)
	idle := dial(t, a.addr)
	if got := idle.do(t, "STATUS"); !strings.HasPrefix(got, "OK state=serving ") {
		t.Fatalf("STATUS = %q", got)
	}
	busy := dial(t, a.addr)
	busy.send(t, "SLEEP 1500")
	eventually(t, 10*time.Second, "the slow request in flight", func() bool {
		return metric(t, idle.do(t, "METRICS"), "inflight") == 1
	})

	sent := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	type read struct {
		line string
		err  error
		at   time.Time
	}
	idleDone, busyDone := make(chan read, 1), make(chan read, 1)
	go func() {
		line, err := idle.read(10 * time.Second)
		idleDone <- read{line, err, time.Now()}
	}()
	go func() {
		line, err := busy.read(10 * time.Second)
		busyDone <- read{line, err, time.Now()}
	}()
	ir, br := <-idleDone, <-busyDone
	if ir.err == nil || ir.line != "" {
		t.Errorf("idle client read %q, %v; want the connection closed", ir.line, ir.err)
	}
	if d := ir.at.Sub(sent); d > time.Second || !ir.at.Before(br.at) {
		t.Errorf("idle connection closed %v after SIGINT (busy answered %v after); want at once, before the busy answer", d, br.at.Sub(sent))
	}
	if br.err != nil || br.line != "OK slept 1500ms" {
		t.Errorf("busy client got %q, %v; want its answer", br.line, br.err)
	}
	if line, err := busy.read(5 * time.Second); err == nil {
		t.Errorf("busy connection still open after its answer: read %q", line)
	}
	if code := a.wait(t, 15*time.Second); code != 0 {
		t.Errorf("vigil exited with %d, want 0", code)
	}
	if !strings.Contains(a.out.String(), "draining") {
		t.Errorf("no draining line in the log:\n%s", a.out.String())
	}
}

// TestConnectionLimitAndIdleTimeout: a connection over max_conns gets
// "ERR busy" and is closed; an idle connection is closed after
// idle_timeout; a freed slot is reusable.
func TestConnectionLimitAndIdleTimeout(t *testing.T) {
	a := startApp(t, 1, `      max_conns = 2
      idle_timeout = "1500ms"`)
	c1, c2 := dial(t, a.addr), dial(t, a.addr)
	if got := c1.do(t, "HEALTH"); got != "OK healthy" {
		t.Errorf("HEALTH = %q", got)
	}
	if got := c2.do(t, "ECHO hi"); got != "OK hi" {
		t.Errorf("ECHO = %q", got)
	}
	c3 := dial(t, a.addr)
	line, err := c3.read(5 * time.Second)
	if err != nil || !strings.HasPrefix(line, "ERR busy: ") {
		t.Fatalf("third connection read %q, %v; want ERR busy", line, err)
	}
	if line, err := c3.read(5 * time.Second); err == nil {
		t.Errorf("refused connection still open: read %q", line)
	}
	// c1 stays idle: closed after idle_timeout with a last line.
	start := time.Now()
	line, err = c1.read(10 * time.Second)
	if err != nil || !strings.HasPrefix(line, "ERR idle timeout") {
		t.Errorf("idle connection read %q, %v; want ERR idle timeout", line, err)
	}
	if _, err := c1.read(5 * time.Second); err == nil {
		t.Error("idle connection still open after its timeout line")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle connection closed after %v, want about 1.5s", d)
	}
	// c1's slot is free again (c2 may have timed out too by now). A probe
	// that arrives before the server has released c1's slot is refused
	// too: count those.
	var m string
	probesRefused := 0
	eventually(t, 5*time.Second, "a free slot", func() bool {
		c := dial(t, a.addr)
		m = c.do(t, "METRICS")
		c.nc.Close()
		if strings.HasPrefix(m, "ERR busy: ") {
			probesRefused++
		}
		return strings.HasPrefix(m, "OK ")
	})
	if got, want := metric(t, m, "conns_rejected"), int64(1+probesRefused); got != want {
		t.Errorf("METRICS = %q, want conns_rejected=%d (c3 and %d refused probes)", m, want, probesRefused)
	}
	if err := a.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := a.wait(t, 15*time.Second); code != 0 {
		t.Errorf("vigil exited with %d, want 0", code)
	}
}

// TestHealthWiredToHost: when the pool stops answering, the server's
// health check fails, HEALTH says so, and the host's health checks (every
// 500 ms, 3 failures) restart the server: a new incarnation serves.
func TestHealthWiredToHost(t *testing.T) {
	a := startApp(t, 1, `      pool = "nobody"
      retries = 0`)
	c := dial(t, a.addr)
	for i := range 5 {
		if got := c.do(t, "ECHO x"); !strings.HasPrefix(got, "ERR unavailable: ") {
			t.Fatalf("request %d to a missing pool answered %q, want ERR unavailable", i, got)
		}
	}
	if got := c.do(t, "HEALTH"); !strings.HasPrefix(got, "ERR unhealthy: ") {
		t.Fatalf("HEALTH = %q, want ERR unhealthy", got)
	}
	var status string
	eventually(t, 15*time.Second, "the host restarting the unhealthy server", func() bool {
		addr, err := os.ReadFile(a.addrFile) // port 0: each incarnation has its own port
		if err != nil {
			return false
		}
		nc, err := net.DialTimeout("tcp", strings.TrimSpace(string(addr)), time.Second)
		if err != nil {
			return false // between incarnations
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write([]byte("STATUS\n")); err != nil {
			return false
		}
		status, _ = bufio.NewReader(nc).ReadString('\n')
		return strings.Contains(status, " incarnation=2 ")
	})
	if !strings.Contains(a.out.String(), "health check failed") {
		t.Errorf("no health-check line in the host log:\n%s", a.out.String())
	}
	if err := a.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := a.wait(t, 15*time.Second); code != 0 {
		t.Errorf("vigil exited with %d, want 0", code)
	}
}

// syncBuffer collects a process's output; safe for concurrent use.
type syncBuffer = plugintest.Log
