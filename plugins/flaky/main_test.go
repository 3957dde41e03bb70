package main

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/plugintest"
	"github.com/vigil-run/vigil/sdk/protocol"
)

func TestMain(m *testing.M) { plugintest.Main(m, main) }

func TestFlakyModesEndAsConfigured(t *testing.T) {
	tests := map[string]struct {
		config   string
		wantErr  string // substring of Run.Err(); "" = nil
		wantIs   error
		wantExit int
	}{
		"ok_exit":  {config: `{"mode":"ok_exit","after":"20ms"}`, wantExit: 0},
		"fail":     {config: `{"mode":"fail","after":"20ms"}`, wantErr: "flaky: failing after 20ms as configured", wantExit: 1},
		"panic":    {config: `{"mode":"panic","after":"20ms"}`, wantErr: "flaky: panicking after 20ms", wantIs: sdk.ErrPanic, wantExit: 2},
		"exit":     {config: `{"mode":"exit","after":"20ms","code":7}`, wantIs: protocol.ErrConnectionLost, wantErr: "connection", wantExit: 7},
		"segfault": {config: `{"mode":"segfault","after":"20ms"}`, wantIs: protocol.ErrConnectionLost, wantErr: "connection", wantExit: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := plugintest.Launch(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := p.Client.Run(ctx, protocol.RunRequest{WorkerID: "flaky", Incarnation: 1, Config: []byte(tc.config)})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			select {
			case <-r.Done():
			case <-ctx.Done():
				t.Fatal("run did not end")
			}
			err = r.Err()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Err = %v, want %q", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("Err = %v, want errors.Is %v", err, tc.wantIs)
			}
			if code := p.ExitCode(t); code != tc.wantExit {
				t.Errorf("exit status %d, want %d", code, tc.wantExit)
			}
		})
	}
}

func TestFlakyStartModes(t *testing.T) {
	t.Run("fail_start fails the start", func(t *testing.T) {
		t.Parallel()
		p := plugintest.Launch(t)
		_, err := p.Client.Run(context.Background(), protocol.RunRequest{WorkerID: "flaky", Config: []byte(`{"mode":"fail_start"}`)})
		if err == nil || !strings.Contains(err.Error(), "failing the start") {
			t.Errorf("Run = %v, want the start to fail", err)
		}
	})
	t.Run("start_delay delays ready past a start timeout", func(t *testing.T) {
		t.Parallel()
		p := plugintest.Launch(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := p.Client.Run(ctx, protocol.RunRequest{WorkerID: "flaky", Config: []byte(`{"start_delay":"5s"}`)})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("unknown mode is an invalid spec", func(t *testing.T) {
		t.Parallel()
		p := plugintest.Launch(t)
		_, err := p.Client.Run(context.Background(), protocol.RunRequest{WorkerID: "flaky", Config: []byte(`{"mode":"dance"}`)})
		if !errors.Is(err, sdk.ErrInvalidSpec) {
			t.Errorf("Run = %v, want ErrInvalidSpec", err)
		}
	})
}

func TestFlakyHangOnStopIgnoresStop(t *testing.T) {
	p := plugintest.Launch(t)
	r, err := p.Client.Run(context.Background(), protocol.RunRequest{WorkerID: "flaky", Config: []byte(`{"mode":"hang_on_stop"}`)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Client.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop = %v, want DeadlineExceeded", err)
	}
	if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-r.Done()
	if !errors.Is(r.Err(), protocol.ErrConnectionLost) {
		t.Errorf("Err = %v, want ErrConnectionLost", r.Err())
	}
}

func TestFlakyUnhealthyFailsHealthChecksAfterDelay(t *testing.T) {
	p := plugintest.Launch(t)
	if _, err := p.Client.Run(context.Background(), protocol.RunRequest{WorkerID: "flaky", Config: []byte(`{"mode":"unhealthy","after":"100ms"}`)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Client.HealthCheck(ctx); err != nil {
		t.Fatalf("first health check = %v, want healthy", err)
	}
	for {
		err := p.Client.HealthCheck(ctx)
		if errors.Is(err, sdk.ErrHealthCheckFailed) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("still healthy after 5s (last: %v)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFlakyLeakGrowsRSS(t *testing.T) {
	p := plugintest.Launch(t)
	if _, err := p.Client.Run(context.Background(), protocol.RunRequest{WorkerID: "flaky", Config: []byte(`{"mode":"leak","leak_mb_per_sec":200,"leak_max_mb":128}`)}); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	start := rssMB(t, pid)
	deadline := time.Now().Add(5 * time.Second)
	for rssMB(t, pid) < start+60 {
		if time.Now().After(deadline) {
			t.Fatalf("RSS %d MiB did not grow by 60 MiB from %d within 5s", rssMB(t, pid), start)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rssMB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb >> 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func TestFlakyFloodLogFloodsUntilStopped(t *testing.T) {
	tests := map[string]struct {
		config string
		line   []string // parts of a flood line as the host re-emits it
	}{
		"hclog lines": {config: `{"mode":"flood_log"}`, line: []string{"flood", "n="}},
		"raw lines":   {config: `{"mode":"flood_log","line_bytes":200}`, line: []string{strings.Repeat("x", 199)}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := plugintest.Launch(t)
			r, err := p.Client.Run(context.Background(), protocol.RunRequest{WorkerID: "flaky", Config: []byte(tc.config)})
			if err != nil {
				t.Fatal(err)
			}
			if !p.Log.WaitLine(5*time.Second, tc.line...) {
				t.Fatalf("no flood line %q in the log:\n%.2000s", tc.line, p.Log.String())
			}
			deadline := time.Now().Add(5 * time.Second)
			for strings.Count(p.Log.String(), "\n") < 1000 {
				if time.Now().After(deadline) {
					t.Fatalf("only %d lines after 5s: not a flood", strings.Count(p.Log.String(), "\n"))
				}
				time.Sleep(5 * time.Millisecond) // polling with a deadline
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.Client.Stop(ctx); err != nil {
				t.Fatalf("Stop = %v, want a prompt stop while flooding", err)
			}
			<-r.Done()
			if err := r.Err(); err != nil {
				t.Errorf("Err = %v, want nil", err)
			}
		})
	}
}

func TestFlakyOversizeNeedsADestination(t *testing.T) {
	p := plugintest.Launch(t)
	r, err := p.Client.Run(context.Background(), protocol.RunRequest{WorkerID: "flaky", Config: []byte(`{"mode":"oversize","sizes":[10]}`)})
	if err == nil {
		<-r.Done()
		err = r.Err()
	}
	if !errors.Is(err, sdk.ErrInvalidSpec) || !strings.Contains(err.Error(), "needs to and report_to") {
		t.Errorf("Run = %v, want ErrInvalidSpec naming to and report_to", err)
	}
}

func TestFlakyIgnoreSIGTERM(t *testing.T) {
	p := plugintest.Launch(t)
	if _, err := p.Client.Run(context.Background(), protocol.RunRequest{WorkerID: "flaky", Config: []byte(`{"mode":"hang_on_stop","ignore_sigterm":true}`)}); err != nil {
		t.Fatal(err)
	}
	// Init has run: SIGTERM is in the process's ignored set.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID()) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if hexMask, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(hexMask), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			if mask&(1<<(syscall.SIGTERM-1)) == 0 {
				t.Fatalf("SigIgn %s: SIGTERM not ignored", strings.TrimSpace(hexMask))
			}
			return
		}
	}
	t.Fatal("no SigIgn line")
}
