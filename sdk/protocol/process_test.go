package protocol

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
)

// envHelper makes the test binary act as a plugin (or as a fake host)
// instead of running tests: go-plugin's TestHelperProcess pattern, done in
// TestMain so that no test machinery runs in the child.
const envHelper = "VIGIL_PROTOCOL_TEST_HELPER"

// noRaceExitSleep stops a -race child from sleeping 1s in os.Exit.
const noRaceExitSleep = "GORACE=atexit_sleep_ms=0"

func TestMain(m *testing.M) {
	switch os.Getenv(envHelper) {
	case "":
		goleak.VerifyTestMain(m)
	case "worker":
		if err := Serve(&testWorker{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(99) // Serve must not return
	case "bare":
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  Handshake,
			VersionedPlugins: map[int]plugin.PluginSet{ProtocolVersion: {"bare": &barePlugin{}}},
			GRPCServer:       plugin.DefaultGRPCServer,
			Logger:           hclog.NewNullLogger(),
		})
		os.Exit(0)
	case "middle":
		runMiddle()
	default:
		os.Exit(98)
	}
}

// testWorker is the plugin-side Server of these tests; its config picks
// its behaviour.
type testWorker struct {
	mu  sync.Mutex
	cfg testConfig
}

type testConfig struct {
	Mode      string `json:"mode"`
	Unhealthy bool   `json:"unhealthy"`
	Pad       string `json:"pad"`
}

func (w *testWorker) Run(ctx context.Context, req RunRequest, ready func()) error {
	var cfg testConfig
	if err := json.Unmarshal(req.Config, &cfg); err != nil {
		return err
	}
	w.mu.Lock()
	w.cfg = cfg
	w.mu.Unlock()
	if cfg.Mode == "slow_start" {
		t := time.NewTimer(time.Minute)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	ready()
	switch cfg.Mode {
	case "fail":
		return fmt.Errorf("worker %s (incarnation %d) gave up: %w", req.WorkerID, req.Incarnation, errTestSentinel)
	case "panic":
		panic("kaboom")
	case "big":
		return fmt.Errorf("got %d bytes: %s", len(req.Config), strings.Repeat("y", len(req.Config)))
	case "ok_exit":
		return nil
	case "ignore_stop":
		select {}
	}
	<-ctx.Done()
	return nil
}

func (w *testWorker) HealthCheck(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cfg.Unhealthy {
		return fmt.Errorf("disk on fire: %w", errTestSentinel)
	}
	return nil
}

// barePlugin is a go-plugin plugin with no service: the baseline of the
// launch benchmark.
type barePlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (*barePlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }
func (*barePlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return c, nil
}

// runMiddle is a fake host: it starts the worker plugin directly (with the
// cookie, without go-plugin's client), prints its PID and waits to be
// killed.
func runMiddle() {
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{
		envHelper + "=worker", "TMPDIR=" + os.Getenv("TMPDIR"), noRaceExitSleep,
		Handshake.MagicCookieKey + "=" + Handshake.MagicCookieValue,
		EnvHostPID + "=" + strconv.Itoa(os.Getpid()),
	}
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Wait for go-plugin's handshake line: the plugin is up and idle.
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(cmd.Process.Pid)
	_ = cmd.Wait()
	os.Exit(0)
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// launched is one plugin process under test.
type launched struct {
	pc     *plugin.Client
	cmd    *exec.Cmd
	client *Client
}

func launch(t testing.TB, mode string, logs bool) *launched {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{envHelper + "=" + mode, "PLUGIN_UNIX_SOCKET_DIR=" + t.TempDir(), noRaceExitSleep}
	out := hclog.NewNullLogger()
	if logs {
		cmd.Env = append(cmd.Env, EnvLogLevel+"=debug")
		out = hclog.New(&hclog.LoggerOptions{Name: "host", Output: testLogWriter{t}, Level: hclog.Debug})
	}
	cfg := NewClientConfig(cmd, out)
	cfg.StartTimeout = 10 * time.Second
	if mode == "bare" {
		cfg.VersionedPlugins = map[int]plugin.PluginSet{ProtocolVersion: {"bare": &barePlugin{}}}
	}
	pc := plugin.NewClient(cfg)
	t.Cleanup(pc.Kill)
	rpc, err := pc.Client()
	if err != nil {
		t.Fatalf("starting plugin: %v", err)
	}
	l := &launched{pc: pc, cmd: cmd}
	if mode == "bare" {
		return l
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	c, ok := raw.(*Client)
	if !ok {
		t.Fatalf("dispensed %T, want *Client", raw)
	}
	l.client = c
	return l
}

// run starts a worker with the given config and fails the test if it does
// not start.
func (l *launched) run(t testing.TB, cfg string) *Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := l.client.Run(ctx, RunRequest{WorkerID: "w", Incarnation: 1, Config: []byte(cfg)})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r
}

// exitCode waits (bounded) for the plugin process to exit and returns its
// exit status.
func (l *launched) exitCode(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !l.pc.Exited() {
		if time.Now().After(deadline) {
			t.Fatal("plugin process did not exit within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	return l.cmd.ProcessState.ExitCode()
}

func waitDone(t *testing.T, r *Run, within time.Duration) {
	t.Helper()
	select {
	case <-r.Done():
	case <-time.After(within):
		t.Fatalf("run not done within %v", within)
	}
}

func TestRunThenStopEndsWithNilAndExitZero(t *testing.T) {
	l := launch(t, "worker", true)
	r := l.run(t, `{"mode":"run"}`)
	select {
	case <-r.Done():
		t.Fatalf("run ended early: %v", r.Err())
	default:
	}
	if _, err := l.client.Run(context.Background(), RunRequest{WorkerID: "w"}); !errors.Is(err, errRunTwice) {
		t.Errorf("second Run = %v, want errRunTwice", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.client.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitDone(t, r, time.Second) // Stop returned, so it must be done already
	if err := r.Err(); err != nil {
		t.Errorf("Err = %v, want nil", err)
	}
	if code := l.exitCode(t); code != ExitOK {
		t.Errorf("exit code = %d, want %d", code, ExitOK)
	}
}

func TestWorkerOutcomeReachesHost(t *testing.T) {
	tests := map[string]struct {
		cfg          string
		wantNil      bool
		wantText     string
		wantPanicked bool
		wantSentinel bool
		wantExit     int
	}{
		"returns nil": {cfg: `{"mode":"ok_exit"}`, wantNil: true, wantExit: ExitOK},
		"returns an error": {
			cfg: `{"mode":"fail"}`, wantText: "worker w (incarnation 1) gave up: vigil: test sentinel",
			wantSentinel: true, wantExit: ExitError,
		},
		"panics": {cfg: `{"mode":"panic"}`, wantText: "panic: kaboom", wantPanicked: true, wantExit: ExitPanic},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := launch(t, "worker", false)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := l.client.Run(ctx, RunRequest{WorkerID: "w", Incarnation: 1, Config: []byte(tc.cfg)})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			waitDone(t, r, 5*time.Second)
			err = r.Err()
			if tc.wantNil {
				if err != nil {
					t.Fatalf("Err = %v, want nil", err)
				}
			} else {
				var we *WorkerError
				if !errors.As(err, &we) {
					t.Fatalf("Err = %T %v, want *WorkerError", err, err)
				}
				if we.Error() != tc.wantText || we.Panicked != tc.wantPanicked || we.ExitCode != tc.wantExit {
					t.Errorf("got %q panicked=%v exit=%d", we.Error(), we.Panicked, we.ExitCode)
				}
				if errors.Is(err, errTestSentinel) != tc.wantSentinel {
					t.Errorf("errors.Is(err, errTestSentinel) = %v, want %v", !tc.wantSentinel, tc.wantSentinel)
				}
			}
			if code := l.exitCode(t); code != tc.wantExit {
				t.Errorf("exit code = %d, want %d", code, tc.wantExit)
			}
		})
	}
}

func TestSIGKILLClosesRunWithConnectionLost(t *testing.T) {
	l := launch(t, "worker", false)
	r := l.run(t, `{"mode":"run"}`)
	start := time.Now()
	if err := l.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, r, 2*time.Second)
	t.Logf("SIGKILL -> Run.Done: %v", time.Since(start))
	if err := r.Err(); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Err = %v, want ErrConnectionLost", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.client.HealthCheck(ctx); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("HealthCheck after kill = %v, want ErrConnectionLost", err)
	}
	if err := l.client.Stop(ctx); err != nil {
		t.Errorf("Stop after kill = %v, want nil", err)
	}
}

func TestHealthCheck(t *testing.T) {
	tests := map[string]struct {
		cfg     string
		wantErr bool
	}{
		"healthy":   {cfg: `{"mode":"run"}`},
		"unhealthy": {cfg: `{"mode":"run","unhealthy":true}`, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := launch(t, "worker", false)
			l.run(t, tc.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := l.client.HealthCheck(ctx)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("HealthCheck = %v, want nil", err)
				}
				return
			}
			var re *RemoteError
			if !errors.As(err, &re) || !errors.Is(err, errTestSentinel) || err.Error() != "disk on fire: vigil: test sentinel" {
				t.Errorf("HealthCheck = %T %v, want a *RemoteError wrapping errTestSentinel", err, err)
			}
		})
	}
}

func TestMessagesLargerThanFourMiBCrossBothWays(t *testing.T) {
	l := launch(t, "worker", false)
	const size = 5 << 20
	cfg, err := json.Marshal(testConfig{Mode: "big", Pad: strings.Repeat("x", size)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := l.client.Run(ctx, RunRequest{WorkerID: "w", Config: cfg})
	if err != nil {
		t.Fatalf("Run with a %d-byte config: %v", len(cfg), err)
	}
	waitDone(t, r, 5*time.Second)
	var we *WorkerError
	if !errors.As(r.Err(), &we) {
		t.Fatalf("Err = %v, want *WorkerError", r.Err())
	}
	if want := fmt.Sprintf("got %d bytes: ", len(cfg)); !strings.HasPrefix(we.Message, want) || len(we.Message) < size {
		t.Errorf("reply: %d bytes starting %.40q, want > %d bytes starting %q", len(we.Message), we.Message, size, want)
	}
}

func TestStopTimesOutWhenWorkerIgnoresIt(t *testing.T) {
	l := launch(t, "worker", false)
	r := l.run(t, `{"mode":"ignore_stop"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := l.client.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want DeadlineExceeded", err)
	}
	select {
	case <-r.Done():
		t.Fatal("run ended although the worker ignores stop")
	default:
	}
	l.pc.Kill() // closes the connection; the plugin gives Run 1s, then exits 1
	waitDone(t, r, 3*time.Second)
	if code := l.exitCode(t); code != ExitError {
		t.Errorf("exit code = %d, want %d", code, ExitError)
	}
}

func TestStartTimeoutCancelsTheWorker(t *testing.T) {
	l := launch(t, "worker", false)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r, err := l.client.Run(ctx, RunRequest{WorkerID: "w", Config: []byte(`{"mode":"slow_start"}`)})
	if !errors.Is(err, context.DeadlineExceeded) || r != nil {
		t.Fatalf("Run = %v, %v; want nil, DeadlineExceeded", r, err)
	}
	// The worker saw its context cancelled and returned ctx.Err(): exit 1.
	if code := l.exitCode(t); code != ExitError {
		t.Errorf("exit code = %d, want %d", code, ExitError)
	}
}

func TestBinaryRefusesToRunWithoutAHost(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{envHelper + "=worker", noRaceExitSleep}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("err = %v, want exit status 1", err)
	}
	if !strings.Contains(string(out), "This binary is a plugin") {
		t.Errorf("output = %q, want go-plugin's message", out)
	}
}

func TestPluginExitsWhenHostDies(t *testing.T) {
	middle := exec.Command(os.Args[0])
	middle.Env = []string{envHelper + "=middle", "TMPDIR=" + t.TempDir(), noRaceExitSleep}
	stdout, err := middle.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := middle.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = middle.Process.Kill(); _ = middle.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading plugin pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if !alive(pid) {
		t.Fatal("plugin not running")
	}

	start := time.Now()
	if err := middle.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = middle.Wait()
	deadline := start.Add(3 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatal("plugin still running 3s after its host was SIGKILLed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("host SIGKILL -> plugin gone: %v", time.Since(start))
}

func TestPluginExitsWhenHostPIDIsAlreadyGone(t *testing.T) {
	dead := exec.Command(os.Args[0])
	dead.Env = []string{envHelper + "=no-such-mode", noRaceExitSleep}
	_ = dead.Run() // exits 98 at once; its PID now names no process
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{
		envHelper + "=worker", noRaceExitSleep, "PLUGIN_UNIX_SOCKET_DIR=" + t.TempDir(),
		Handshake.MagicCookieKey + "=" + Handshake.MagicCookieValue,
		EnvHostPID + "=" + strconv.Itoa(dead.Process.Pid), EnvLogLevel + "=trace",
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	exited := make(chan error, 1)
	start := time.Now()
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Logf("exited after %v", time.Since(start))
		if err != nil {
			t.Errorf("plugin exited with %v, want status 0", err)
		}
	case <-time.After(3 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("plugin kept running although its host PID is gone:\n%s", stderr.String())
	}
}

// alive reports whether pid runs (a zombie has exited).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// BenchmarkLaunchBare is the baseline: a go-plugin client for a plugin with
// no service, up to its first answered RPC (go-plugin's Ping).
func BenchmarkLaunchBare(b *testing.B) {
	for b.Loop() {
		l := launch(b, "bare", false)
		rpc, err := l.pc.Client()
		if err != nil {
			b.Fatal(err)
		}
		if err := rpc.Ping(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		l.pc.Kill()
		b.StartTimer()
	}
}

// BenchmarkLaunchVigilPlugin is the same for a Vigil worker: launch,
// dispense, Run until the worker is READY.
func BenchmarkLaunchVigilPlugin(b *testing.B) {
	for b.Loop() {
		l := launch(b, "worker", false)
		l.run(b, `{"mode":"run"}`)
		b.StopTimer()
		l.pc.Kill()
		b.StartTimer()
	}
}
