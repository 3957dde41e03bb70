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

// The test binary re-executes itself as the ticker plugin.
const envPlugin = "VIGIL_TICKER_TEST_PLUGIN"

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

func TestTicker(t *testing.T) {
	tests := map[string]struct {
		config   string
		wantErr  error
		wantLogs []string
	}{
		"ticks then returns": {config: `{"interval":"10ms","ticks":3}`, wantLogs: []string{"tick 1", "tick 2", "tick 3", "done ticking"}},
		"bad interval":       {config: `{"interval":"0s"}`, wantErr: sdk.ErrInvalidSpec},
		"unknown field":      {config: `{"intervall":"1s"}`, wantErr: sdk.ErrInvalidSpec},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0])
			cmd.Env = []string{envPlugin + "=1", "GORACE=atexit_sleep_ms=0", "PLUGIN_UNIX_SOCKET_DIR=" + t.TempDir()}
			log := &lockedBuffer{}
			cfg := protocol.NewClientConfig(cmd, hclog.New(&hclog.LoggerOptions{Output: log, Level: hclog.Info}))
			pc := plugin.NewClient(cfg)
			t.Cleanup(pc.Kill)
			rpc, err := pc.Client()
			if err != nil {
				t.Fatal(err)
			}
			raw, err := rpc.Dispense(protocol.PluginName)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := raw.(*protocol.Client).Run(ctx, protocol.RunRequest{WorkerID: "ticker", Config: []byte(tc.config)})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-r.Done():
			case <-ctx.Done():
				t.Fatal("ticker did not end")
			}
			if tc.wantErr != nil && !errors.Is(r.Err(), tc.wantErr) || tc.wantErr == nil && r.Err() != nil {
				t.Errorf("Err = %v, want %v", r.Err(), tc.wantErr)
			}
			pc.Kill() // waits for the log reader
			for _, want := range tc.wantLogs {
				if !strings.Contains(log.String(), want) {
					t.Errorf("host log lacks %q:\n%s", want, log.String())
				}
			}
		})
	}
}
