// Package plugintest runs a worker plugin as a real OS process from the
// plugin's own tests, the way the vigil host runs it: go-plugin handshake,
// gRPC, its log lines re-emitted by the host side. The test binary
// re-executes itself as the plugin, so there is no build step.
//
// In the plugin's main_test.go:
//
//	func TestMain(m *testing.M) { plugintest.Main(m, main) }
//
//	func TestHello(t *testing.T) {
//		p := plugintest.Launch(t)
//		run, err := p.Client.Run(ctx, protocol.RunRequest{WorkerID: "hello", Config: []byte(`{}`)})
//		…
//	}
//
// Every process Launch starts is killed by t.Cleanup.
package plugintest

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/vigil-run/vigil/sdk/protocol"
)

// envServe tells a re-executed test binary to be the plugin.
const envServe = "VIGIL_PLUGINTEST_SERVE"

// Main is the plugin test binary's TestMain: started by [Launch] it runs
// serve (the plugin's main) and exits; otherwise it runs the tests and
// exits with their status. It does not return.
func Main(m *testing.M, serve func()) {
	if Serving() {
		serve()
		os.Exit(99) // serve is expected to exit the process itself
	}
	os.Exit(m.Run())
}

// Serving reports whether this process is a test binary that [Launch]
// started as the plugin. A package whose TestMain is taken checks it in an
// init function instead of calling [Main]:
//
//	func init() {
//		if plugintest.Serving() {
//			sdk.Serve(worker{})
//			os.Exit(99)
//		}
//	}
func Serving() bool { return os.Getenv(envServe) == "1" }

// Plugin is one running plugin process.
type Plugin struct {
	// Client is the host's handle on the worker (Run, Stop, HealthCheck).
	Client *protocol.Client
	// Log collects what the plugin logged, as the host re-emits it.
	Log *Log

	pc  *plugin.Client
	cmd *exec.Cmd
}

// Launch starts the test binary as the plugin (see [Main]) with env added
// to its environment (e.g. protocol.EnvLogLevel+"=debug") and returns once
// it has completed the go-plugin handshake; it fails t otherwise. The
// process is killed when the test ends. Safe to call from parallel tests.
func Launch(t testing.TB, env ...string) *Plugin {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append([]string{envServe + "=1", "GORACE=atexit_sleep_ms=0", "PLUGIN_UNIX_SOCKET_DIR=" + t.TempDir()}, env...)
	log := &Log{}
	// The host side passes on every line; the plugin's level decides.
	cfg := protocol.NewClientConfig(cmd, hclog.New(&hclog.LoggerOptions{Output: log, Level: hclog.Trace}))
	cfg.StartTimeout = 10 * time.Second
	pc := plugin.NewClient(cfg)
	t.Cleanup(pc.Kill)
	rpc, err := pc.Client()
	if err != nil {
		t.Fatalf("plugintest: starting the plugin: %v", err)
	}
	raw, err := rpc.Dispense(protocol.PluginName)
	if err != nil {
		t.Fatalf("plugintest: dispensing the worker: %v", err)
	}
	return &Plugin{Client: raw.(*protocol.Client), Log: log, pc: pc, cmd: cmd}
}

// Kill ends the process at once (go-plugin's Kill). Idempotent.
func (p *Plugin) Kill() { p.pc.Kill() }

// PID returns the plugin process's ID.
func (p *Plugin) PID() int { return p.cmd.Process.Pid }

// ExitCode blocks until the process has exited (at most 5 s, else it fails
// t) and returns its exit status (-1 if a signal ended it).
func (p *Plugin) ExitCode(t testing.TB) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !p.pc.Exited() {
		if time.Now().After(deadline) {
			t.Fatal("plugintest: plugin did not exit within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	return p.cmd.ProcessState.ExitCode()
}

// Log is an io.Writer that keeps what was written; safe for concurrent use.
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *Log) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

// String returns everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// HasLine reports whether one line contains every part. go-plugin
// re-emits a plugin's key/value pairs in random order, so match the pairs
// separately.
func (l *Log) HasLine(parts ...string) bool {
	for _, line := range strings.Split(l.String(), "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// WaitLine polls until a line has every part or d passes, and reports
// whether it found one.
func (l *Log) WaitLine(d time.Duration, parts ...string) bool {
	deadline := time.Now().Add(d)
	for !l.HasLine(parts...) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
