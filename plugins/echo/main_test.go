package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/protocol"
)

// The test binary re-executes itself as the echo plugin.
const envPlugin = "VIGIL_ECHO_TEST_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(envPlugin) == "1" {
		main()
		os.Exit(99)
	}
	os.Exit(m.Run())
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func launch(t *testing.T) (*plugin.Client, *protocol.Client, *lockedBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{envPlugin + "=1", "GORACE=atexit_sleep_ms=0", "PLUGIN_UNIX_SOCKET_DIR=" + t.TempDir()}
	log := &lockedBuffer{}
	pc := plugin.NewClient(protocol.NewClientConfig(cmd, hclog.New(&hclog.LoggerOptions{Output: log, Level: hclog.Info})))
	t.Cleanup(pc.Kill)
	rpc, err := pc.Client()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rpc.Dispense(protocol.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return pc, raw.(*protocol.Client), log
}

func TestEchoLogsTicksAnswersHealthAndStops(t *testing.T) {
	pc, c, log := launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Run(ctx, protocol.RunRequest{WorkerID: "echo", Incarnation: 1, Config: []byte(`{"greeting":"hi there","interval":"10ms"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.HealthCheck(ctx); err != nil {
		t.Errorf("HealthCheck = %v, want nil", err)
	}
	for !hasLine(log.String(), "hi there: ", "@module=echo", "tick=2 ") {
		if ctx.Err() != nil {
			t.Fatalf("no second tick in the host log:\n%s", log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	<-r.Done()
	if r.Err() != nil {
		t.Errorf("Err = %v, want nil", r.Err())
	}
	pc.Kill()
	for _, want := range [][]string{
		{"echo started: ", "@module=echo", `greeting="hi there"`, "interval=10ms", "incarnation=1"},
		{"echo stopping: ", "@module=echo"},
	} {
		if !hasLine(log.String(), want...) {
			t.Errorf("host log lacks a line with %q:\n%s", want, log.String())
		}
	}
}

// hasLine reports whether one line of log contains every part (go-plugin
// re-emits a plugin's key/value pairs in random order).
func hasLine(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
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

func TestEchoRejectsBadConfig(t *testing.T) {
	_, c, _ := launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Run(ctx, protocol.RunRequest{WorkerID: "echo", Config: []byte(`{"interval":"-1s"}`)})
	if err != nil {
		t.Fatal(err)
	}
	<-r.Done()
	if !errors.Is(r.Err(), sdk.ErrInvalidSpec) {
		t.Errorf("Err = %v, want ErrInvalidSpec", r.Err())
	}
}
