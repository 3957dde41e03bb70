package process

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/sdk"
)

func TestStartedWorkerIsReadyAndStopsGracefully(t *testing.T) {
	_, i := start(t, Spec{ID: "echo", Path: pluginPath("echo")})
	pid := i.PID()
	if pid <= 0 || !alive(pid) {
		t.Fatalf("PID %d not alive after Start", pid)
	}
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
		t.Errorf("worker's process group = %d, %v; want its own group %d", pgid, err, pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := i.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitDone(t, i, time.Second)
	if err := i.Err(); err != nil {
		t.Errorf("Err after a graceful stop = %v, want nil", err)
	}
	if alive(pid) {
		t.Errorf("process %d still alive after Stop", pid)
	}
	if ents, _ := os.ReadDir(i.dir); len(ents) > 0 {
		t.Errorf("socket dir %s not removed: %v", i.dir, ents)
	}
}

func TestExplicitEnvironmentAndPriority(t *testing.T) {
	t.Setenv("VIGIL_HOST_ONLY", "secret")
	t.Setenv("SHARED", "from-host")
	_, i := start(t, Spec{ID: "echo", Path: pluginPath("echo"), Priority: sdk.ProcessBatch,
		Env: map[string]string{"SHARED": "from-worker", "WORKER_ONLY": "yes"}})
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", i.PID()))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(raw), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	if env["SHARED"] != "from-worker" || env["WORKER_ONLY"] != "yes" {
		t.Errorf("worker env SHARED=%q WORKER_ONLY=%q; want the worker's values", env["SHARED"], env["WORKER_ONLY"])
	}
	if _, ok := env["VIGIL_HOST_ONLY"]; ok {
		t.Errorf("host-only variable leaked into the worker's env")
	}
	if env["VIGIL_HOST_PID"] != strconv.Itoa(os.Getpid()) {
		t.Errorf("worker env VIGIL_HOST_PID=%q, want the host's pid %d", env["VIGIL_HOST_PID"], os.Getpid())
	}
	if env["PATH"] == "" {
		t.Errorf("PATH missing from the worker's env")
	}
	if got := nice(t, i.PID()); got != sdk.ProcessBatch.Nice() {
		t.Errorf("nice = %d, want %d", got, sdk.ProcessBatch.Nice())
	}
}

// nice reads a process's nice value (field 19 of /proc/PID/stat).
func nice(t *testing.T, pid int) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	var n int
	fmt.Sscan(f[19-3], &n)
	return n
}

func TestHowAnIncarnationEnds(t *testing.T) {
	tests := map[string]struct {
		config     string
		wantNil    bool
		wantIs     error
		wantCode   int
		reason     string
		wantStderr bool
	}{
		"returns nil": {config: `{"mode":"ok_exit","after":"50ms"}`, wantNil: true},
		"exit 0":      {config: `{"mode":"exit","after":"50ms","code":0}`, wantNil: true},
		"returns an error": {config: `{"mode":"fail","after":"50ms"}`,
			wantIs: nil, reason: "worker error"},
		"panics":   {config: `{"mode":"panic","after":"50ms"}`, reason: "worker error"},
		"exit 3":   {config: `{"mode":"exit","after":"50ms","code":3}`, wantIs: ErrProcessExited, wantCode: 3, reason: "crashed"},
		"segfault": {config: `{"mode":"segfault","after":"50ms"}`, wantIs: ErrProcessExited, reason: "crashed", wantStderr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, i := start(t, flaky("flaky", tc.config))
			waitDone(t, i, 10*time.Second)
			err := i.Err()
			if tc.wantNil {
				if err != nil {
					t.Fatalf("Err = %v, want nil", err)
				}
				return
			}
			var ee *ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("Err = %v (%T), want an *ExitError", err, err)
			}
			if ee.Reason != tc.reason || ee.PID != i.PID() || ee.Worker != "flaky" {
				t.Errorf("ExitError = %+v; want reason %q, pid %d", ee, tc.reason, i.PID())
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("Err = %v, want errors.Is %v", err, tc.wantIs)
			}
			if tc.wantCode != 0 && ee.Code != tc.wantCode {
				t.Errorf("exit code = %d, want %d", ee.Code, tc.wantCode)
			}
			if tc.wantStderr && len(ee.Stderr) == 0 {
				t.Errorf("want the crash's stderr (stack trace) in the error; got %v", err)
			}
			t.Logf("Err: %v", err)
		})
	}
}

func TestKill9IsDetectedFromTheExit(t *testing.T) {
	_, i := start(t, Spec{ID: "echo", Path: pluginPath("echo")})
	if err := syscall.Kill(i.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	waitDone(t, i, 5*time.Second)
	var ee *ExitError
	if !errors.As(i.Err(), &ee) || ee.Signal != syscall.SIGKILL || !errors.Is(i.Err(), ErrProcessExited) {
		t.Fatalf("Err = %v, want an ExitError for SIGKILL", i.Err())
	}
	t.Logf("detected and cleaned up in %v: %v", time.Since(began), i.Err())
}

func TestStopOfAWorkerThatIgnoresItKillsTheGroup(t *testing.T) {
	_, i := start(t, flaky("hang", `{"mode":"hang_on_stop"}`))
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := i.Stop(ctx)
	took := time.Since(began)
	if !errors.Is(err, sdk.ErrShutdownTimeout) || !strings.Contains(err.Error(), "hang") {
		t.Fatalf("Stop = %v, want ErrShutdownTimeout naming the worker", err)
	}
	if took > 2*time.Second {
		t.Errorf("Stop took %v with a 600ms timeout", took)
	}
	waitDone(t, i, time.Second)
	if alive(i.PID()) {
		t.Errorf("process %d survived", i.PID())
	}
}

func TestMemoryLimitKillsTheWorker(t *testing.T) {
	spec := flaky("leaky", `{"mode":"leak","leak_mb_per_sec":200}`)
	spec.MaxMemory = 64 << 20
	spec.MemoryCheckInterval = 50 * time.Millisecond
	_, i := start(t, spec)
	waitDone(t, i, 10*time.Second)
	if err := i.Err(); !errors.Is(err, ErrMemoryLimit) || !strings.Contains(err.Error(), "memory limit") {
		t.Fatalf("Err = %v, want the memory limit", err)
	}
}

func TestHealthCheckFailsAfterTheThreshold(t *testing.T) {
	spec := flaky("sick", `{"mode":"unhealthy","after":"1ms"}`)
	spec.HealthCheckFailures = 2
	_, i := start(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Wait (bounded) until the worker has turned unhealthy, asking it directly.
	for n := 0; i.pc.HealthCheck(ctx) == nil; n++ {
		if n == 200 {
			t.Fatal("worker never became unhealthy")
		}
		time.Sleep(5 * time.Millisecond) // polling with a bound, not synchronisation
	}
	if err := i.HealthCheck(ctx); err != nil {
		t.Fatalf("first failed check reported %v; the threshold is 2", err)
	}
	if err := i.HealthCheck(ctx); !errors.Is(err, sdk.ErrHealthCheckFailed) {
		t.Fatalf("second failed check = %v, want ErrHealthCheckFailed", err)
	}
}

func TestHealthyWorkerPassesAndUncheckedHidesHealthCheck(t *testing.T) {
	c := New(Spec{ID: "echo", Path: pluginPath("echo"), TempDir: shortTempDir(t)}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inc, err := c.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer inc.Stop(ctx)
	if _, ok := inc.(sdk.HealthChecker); ok {
		t.Errorf("incarnation without health checks implements sdk.HealthChecker")
	}
	i := c.Current()
	if err := i.HealthCheck(ctx); err != nil {
		t.Errorf("healthy check = %v", err)
	}
}

func TestStartRefusals(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "notexec")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	notPlugin := filepath.Join(dir, "true")
	raw, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(notPlugin, raw, 0o755)
	sum := sha256.Sum256([]byte("something else"))
	tests := map[string]struct {
		spec Spec
		is   error
		want string
	}{
		"missing binary":     {Spec{ID: "w", Path: filepath.Join(dir, "nope")}, ErrBadPlugin, "does not exist"},
		"directory":          {Spec{ID: "w", Path: dir}, ErrBadPlugin, "is a directory"},
		"not executable":     {Spec{ID: "w", Path: notExec}, ErrBadPlugin, "not executable"},
		"not a vigil plugin": {Spec{ID: "w", Path: notPlugin}, sdk.ErrStartFailed, "handshake"},
		"checksum mismatch":  {Spec{ID: "w", Path: pluginPath("echo"), SHA256: sum[:]}, ErrChecksumMismatch, "refusing to start"},
		"start timeout": {Spec{ID: "w", Path: pluginPath("flaky"), Config: []byte(`{"mode":"run","start_delay":"10s"}`),
			StartTimeout: 500 * time.Millisecond}, sdk.ErrStartFailed, "not ready within"},
		"socket dir too long": {Spec{ID: "w", Path: pluginPath("echo"), TempDir: filepath.Join(dir, strings.Repeat("d", 60))},
			ErrBadTempDir, "limited to 107 bytes"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.spec.TempDir == "" {
				tc.spec.TempDir = shortTempDir(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			inc, err := New(tc.spec, testLogger(t)).Start(ctx)
			if err == nil {
				inc.Stop(ctx)
				t.Fatal("Start succeeded")
			}
			if !errors.Is(err, tc.is) || !errors.Is(err, sdk.ErrStartFailed) || !strings.Contains(err.Error(), tc.want) ||
				(!strings.Contains(err.Error(), tc.spec.Path) && !errors.Is(err, ErrBadTempDir)) {
				t.Errorf("Start = %v; want errors.Is %v, naming %s and saying %q", err, tc.is, tc.spec.Path, tc.want)
			}
			if ents, _ := os.ReadDir(tc.spec.TempDir); len(ents) > 0 {
				t.Errorf("socket dirs left: %v", ents)
			}
			t.Logf("%v", err)
		})
	}
}

func TestChecksumPinAccepted(t *testing.T) {
	raw, err := os.ReadFile(pluginPath("echo"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	start(t, Spec{ID: "echo", Path: pluginPath("echo"), SHA256: sum[:]})
}

func TestStopOfAFrozenWorkerEndsInSIGKILL(t *testing.T) {
	_, i := start(t, Spec{ID: "frozen", Path: pluginPath("echo")})
	// A stopped process answers no RPC and does not act on SIGTERM; only
	// SIGKILL ends it.
	if err := syscall.Kill(i.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// kill(2) only queues the signal: wait until the kernel reports the
	// process stopped (state T), or a busy machine can let it answer the
	// Stop RPC first.
	deadline := time.Now().Add(5 * time.Second)
	for procState(t, i.PID()) != 'T' {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not stopped after SIGSTOP", i.PID())
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := i.Stop(ctx)
	if !errors.Is(err, sdk.ErrShutdownTimeout) || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop = %v, want ErrShutdownTimeout saying it was killed", err)
	}
	var ee *ExitError
	if !errors.As(i.Err(), &ee) || ee.Signal != syscall.SIGKILL {
		t.Errorf("Err = %v, want death by SIGKILL", i.Err())
	}
}

// procState returns the one-letter state of pid from /proc/pid/stat.
func procState(t *testing.T, pid int) byte {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		t.Fatalf("unexpected /proc/%d/stat: %q", pid, b)
	}
	return b[i+2]
}
