package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/host/process"
	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/plugintest"
)

// badInputRow is one row of the runtime bad-input matrix: an app
// definition using the real plugins, what the test does with it, and what
// must come out.
type badInputRow struct {
	// config is the app definition: {P} stands for the plugin dir, {D} for
	// the row's own (short) directory, where the config file is written.
	config string
	// prepare creates files in the row's directory before the run.
	prepare func(t *testing.T, dir string)
	// vigil: run `vigil run` on the config; it must exit with status 1 and
	// its output must contain every want phrase.
	vigil bool
	// act drives a host serving the config (rows without vigil) and returns
	// the text (errors, reports) the want phrases are looked for in. It
	// asserts the row's behaviour itself.
	act func(t *testing.T, x *matrixHost) string
	// want are exact phrases ({P} and {D} substituted) of the expected
	// error or output.
	want []string
	// anyOf: at least one of these phrases must be in the output too. It
	// lists the wordings of one cause that the host currently picks from
	// by a race (see exitedEarly and startTimedOut).
	anyOf []string
	// window is the host's Options.MailboxWindow (0: the default).
	window int
	// up: after act, the host must still serve (Serve has not returned,
	// the "echo" worker answers a call) and then stop cleanly (Serve
	// returns nil). Rows without up are fatal by design.
	up bool
}

// echoWorker is the healthy worker whose answers show the host still serves.
const echoWorker = `
  worker "echo" {
    plugin = "{P}/echo"
    config { interval = "1h" }
  }`

// TestBadInputMatrix is the runtime half of the bad-input matrix (issue 8):
// every row runs the real host (the vigil binary, or a Host serving in this
// process) with the real plugin processes, and checks the exact error or
// behaviour, that the host stays up unless the case is fatal by design,
// that nothing queued is lost, and that no process of the row is left.
// Pure config rows are host/config's TestLoadRejectsBadInput.
func TestBadInputMatrix(t *testing.T) {
	// w is an app with one worker "w" whose attributes are attrs: the
	// worker block starts on line 2, its plugin attribute is on line 3.
	w := func(attrs string) string {
		return "app \"bad\" {\n  worker \"w\" {\n    " + attrs + "\n  }\n}\n"
	}
	copyFile := func(from, to string, mode os.FileMode) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			t.Helper()
			raw, err := os.ReadFile(strings.ReplaceAll(from, "{P}", pluginDir()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, to), raw, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The handshake failure and the advice every non-plugin row must give.
	const (
		handshake  = "did not complete the Vigil plugin handshake ("
		notAPlugin = "): is it a Vigil plugin whose main calls sdk.Serve, built for this OS and architecture?"
		vigilHint  = "a worker could not be started; check its plugin path and build (`make plugins`), then run `vigil validate {D}/app.hcl`"
	)
	// exitedEarly and startTimedOut are the wordings of a plugin that
	// exited before its handshake, and of a handshake that did not come
	// within start_timeout: which one the host reports depends on a race
	// (go-plugin's stdout EOF against its exit watch; go-plugin's own start
	// timer against the host's). Only the first of each is right.
	exitedEarly := []string{handshake + "plugin exited before we could connect" + notAPlugin, handshake + "Unrecognized remote plugin message: " + notAPlugin}
	startTimedOut := func(d string) []string {
		return []string{"plugin {P}/badplugin: not ready within " + d + " (start_timeout): context deadline exceeded",
			"plugin {P}/badplugin " + handshake + "timeout while waiting for plugin to start" + notAPlugin}
	}

	tests := map[string]badInputRow{
		// Config rows that need a real file: `vigil run` refuses them.
		"config: missing plugin file": {
			config: w(`plugin = "{D}/nope"`), vigil: true,
			want: []string{"app.hcl:3", "Plugin binary not found", "The file {D}/nope does not exist: build it with `make plugins` or fix the path."},
		},
		"config: directory instead of file": {
			config: w(`plugin = "{P}"`), vigil: true,
			want: []string{"app.hcl:3", "Plugin path is a directory", "{P} is a directory, not a plugin binary: point plugin at the executable file inside it."},
		},
		"config: non-executable file": {
			config: w(`plugin = "{D}/echo"`), prepare: copyFile("{P}/echo", "echo", 0o644), vigil: true,
			want: []string{"app.hcl:3", "Plugin binary is not executable", "{D}/echo is not executable (mode -rw-r--r--): run `chmod +x {D}/echo`"},
		},
		"config: not a Vigil plugin (/bin/true)": {
			config: w(`plugin = "{D}/true"`), prepare: copyFile("/bin/true", "true", 0o755), vigil: true,
			want:  []string{`worker w (defined at {D}/app.hcl:2,`, "failed to start: plugin {D}/true " + handshake, vigilHint},
			anyOf: exitedEarly,
		},
		"config: not a Vigil plugin (script printing text)": {
			config: w(`plugin = "{D}/script"`), vigil: true,
			prepare: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, "script"), []byte("#!/bin/sh\necho 'hello from a script'\nexec sleep 30\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{`worker w (defined at {D}/app.hcl:2,`, "plugin {D}/script " + handshake + "Unrecognized remote plugin message: hello from a script" + notAPlugin, vigilHint},
		},
		"config: wrong magic cookie": {
			config: w(`plugin = "{P}/badplugin"` + "\n    args = [\"cookie\"]"), vigil: true,
			want: []string{`worker w (defined at {D}/app.hcl:2,`, "plugin {P}/badplugin " + handshake,
				"last stderr lines:\n    This binary is a plugin. These are not meant to be executed directly.", vigilHint},
			anyOf: exitedEarly,
		},
		"config: wrong protocol version": {
			config: w(`plugin = "{P}/badplugin"` + "\n    args = [\"version\"]"), vigil: true,
			want: []string{`worker w (defined at {D}/app.hcl:2,`, "plugin {P}/badplugin " + handshake + "incompatible API version with plugin. Plugin version: 99, Client versions: [1]" + notAPlugin, vigilHint},
		},
		"config: checksum mismatch": {
			config: w(`plugin = "{P}/echo"` + "\n    sha256 = \"" + strings.Repeat("ab", 32) + `"`), vigil: true,
			want: []string{"{D}/app.hcl:2", `worker "w": vigil: plugin checksum mismatch: {P}/echo has sha256 `,
				", the config pins " + strings.Repeat("ab", 32) + "; refusing to start it (rebuild the binary or update the pin)"},
		},

		// Start-up: a first start that fails ends Serve (fatal by design),
		// after stopping the workers started before.
		"start: crashes before the handshake": {
			config: `app "bad" {` + echoWorker + `
  worker "bad" {
    plugin = "{P}/badplugin"
    args   = ["crash"]
  }
}`,
			act: failedFirstStart,
			want: []string{`vigil: child failed to start: child "bad": worker bad (defined at {D}/app.hcl:6,`,
				"plugin {P}/badplugin " + handshake,
				"last stderr lines:\n    badplugin: crashing before the handshake as configured"},
			anyOf: exitedEarly,
		},
		"start: hangs in the handshake": {
			config: `app "bad" {` + echoWorker + `
  worker "bad" {
    plugin        = "{P}/badplugin"
    args          = ["hang"]
    start_timeout = "500ms"
  }
}`,
			act: failedFirstStart,
			want: []string{`vigil: child failed to start: child "bad": worker bad (defined at {D}/app.hcl:6,`,
				"last stderr lines:\n    badplugin: hanging before the handshake as configured"},
			anyOf: startTimedOut("500ms"),
		},

		// Restarts: a restart that fails is retried by the supervisor; the
		// host and the other workers carry on, and the mailbox keeps what
		// was sent meanwhile.
		"restart: crashes before the handshake": {
			config: restartingBadPlugin("crash", ""),
			act:    failingRestarts,
			want: []string{`vigil: child failed to start: child "bad": worker bad (defined at {D}/app.hcl:8,`,
				"plugin {P}/badplugin " + handshake,
				"last stderr lines:\n    badplugin: crashing before the handshake as configured"},
			anyOf: exitedEarly,
			up:    true,
		},
		"restart: hangs in the handshake": {
			config: restartingBadPlugin("hang", `start_timeout = "300ms"`),
			act:    failingRestarts,
			want: []string{`vigil: child failed to start: child "bad": worker bad (defined at {D}/app.hcl:8,`,
				"last stderr lines:\n    badplugin: hanging before the handshake as configured"},
			anyOf: startTimedOut("300ms"),
			up:    true,
		},

		// Stopping: a worker that ignores its stop is terminated (SIGTERM
		// a fifth of its shutdown_timeout, at most 1 s, before the end;
		// SIGKILL at the end), and Serve names it.
		"stop: hangs on stop": {
			config: `app "bad" {` + echoWorker + `
  worker "stubborn" {
    plugin           = "{P}/flaky"
    shutdown_timeout = "1s"
    config { mode = "hang_on_stop" }
  }
}`,
			act:  hangOnStop(syscall.SIGTERM, time.Second),
			want: []string{`supervisor "bad": vigil: shutdown timeout: children did not stop in time: stubborn: child "stubborn": vigil: shutdown timeout: worker stubborn (pid `},
			// The wording depends on how fast the host cleans up after
			// the SIGTERM, not on the signal that ended the worker (which
			// hangOnStop checks): only the first is right.
			anyOf: []string{") ignored the stop request and was terminated by SIGTERM", ") did not stop in time and was killed"},
		},
		"stop: hangs on stop, ignoring SIGTERM": {
			config: `app "bad" {` + echoWorker + `
  worker "stubborn" {
    plugin           = "{P}/flaky"
    shutdown_timeout = "400ms"
    config {
      mode           = "hang_on_stop"
      ignore_sigterm = true
    }
  }
}`,
			act: hangOnStop(syscall.SIGKILL, 400*time.Millisecond),
			want: []string{`supervisor "bad": vigil: shutdown timeout: children did not stop in time: stubborn: child "stubborn": vigil: shutdown timeout: worker stubborn (pid `,
				") did not stop in time and was killed"},
		},

		// Running: misbehaving workers do not disturb the host.
		"run: floods its own log": {
			config: `app "bad" {` + echoWorker + `
  worker "flooder" {
    plugin = "{P}/flaky"
    config { mode = "flood_log" }
  }
  worker "rawflood" {
    plugin = "{P}/flaky"
    config {
      mode       = "flood_log"
      line_bytes = 100000
    }
  }
}`,
			act: floodLog,
			up:  true,
		},
		"run: sends messages over the size limit": {
			config: `app "bad" {` + echoWorker + collectorWorker + `
  worker "sink" {
    plugin = "{P}/counter"
    config { forward_to = "collector" }
    mailbox { max_message_size = "64KiB" }
  }
  worker "sender" {
    plugin = "{P}/flaky"
    config {
      mode      = "oversize"
      to        = "sink"
      sizes     = [100000, 70000000]
      report_to = "collector"
    }
  }
}`,
			act: oversize,
			want: []string{"size=100000 too_large=true err=vigil: send ", ` to "sink": vigil: message too large: message `, " bytes (max 65536)",
				"size=70000000 too_large=true err=vigil: message too large: message ", " bytes (the wire carries at most 67043328)"},
			up: true,
		},
		"run: sends to unknown workers": {
			config: `app "bad" {` + echoWorker + collectorWorker + `
  worker "lost" {
    plugin = "{P}/producer"
    config {
      mode      = "fill"
      to        = "nobody"
      report_to = "collector"
    }
  }
  worker "caller" {
    plugin = "{P}/producer"
    config {
      mode      = "call"
      to        = "nobody"
      payloads  = ["hello"]
      report_to = "collector"
    }
  }
}`,
			act: unknownWorkers,
			want: []string{"sent=0 full=false notfound=true err=vigil: send ", "error:vigil: call call-",
				`to "nobody": vigil: worker not found: no worker or pool named "nobody"`},
			up: true,
		},
		"run: floods a full mailbox": {
			config: `app "bad" {` + echoWorker + collectorWorker + `
  worker "sink" {
    plugin = "{P}/counter"
    config {
      delay      = "10ms"
      forward_to = "collector"
    }
    mailbox { capacity = 20 }
  }
  worker "filler" {
    plugin = "{P}/producer"
    config {
      mode      = "fill"
      to        = "sink"
      report_to = "collector"
    }
  }
}`,
			// In-flight messages do not count against the capacity: with
			// window 8 the sink holds up to 20 queued + 8 in flight.
			window: 8,
			act:    fullMailbox,
			want:   []string{" full=true notfound=false err=vigil: send ", ` to "sink": vigil: mailbox full (capacity 20): message `, " not sent"},
			up:     true,
		},
	}
	for name, row := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			row.run(t)
		})
	}
}

// run runs one row.
func (row badInputRow) run(t *testing.T) {
	dir := shortTempDir(t)
	subst := strings.NewReplacer("{P}", pluginDir(), "{D}", dir)
	if row.prepare != nil {
		row.prepare(t, dir)
	}
	cfg := filepath.Join(dir, "app.hcl")
	if err := os.WriteFile(cfg, []byte(subst.Replace(row.config)), 0o644); err != nil {
		t.Fatal(err)
	}
	var got string
	if row.vigil {
		code, out := runVigilIn(t, dir, "run", cfg)
		if code != 1 {
			t.Errorf("vigil run exited with status %d, want 1", code)
		}
		got = out
	} else {
		x := serveMatrixHost(t, dir, cfg, Options{MailboxWindow: row.window})
		got = row.act(t, x)
		if row.up {
			x.mustServe(t)
			if err := x.stop(t); err != nil {
				t.Errorf("Serve = %v after the bad input, want a clean stop", err)
			}
		}
	}
	for _, w := range row.want {
		if w := subst.Replace(w); !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
	if len(row.anyOf) > 0 && !slices.ContainsFunc(row.anyOf, func(w string) bool { return strings.Contains(got, subst.Replace(w)) }) {
		t.Errorf("none of %q in:\n%s", row.anyOf, got)
	}
}

// matrixHost is a Host serving one row's config in the background.
type matrixHost struct {
	h      *Host
	ev     *events
	log    *logTail
	dir    string
	cancel context.CancelFunc
	done   chan struct{} // closed when Serve returned
	err    error         // Serve's result, set before done is closed
}

// serveMatrixHost loads cfg, builds the host (socket dirs under dir) and
// serves it until the test ends; the cleanup checks that none of the row's
// processes is left.
func serveMatrixHost(t *testing.T, dir, cfg string, opts Options) *matrixHost {
	t.Helper()
	app, err := config.Load(cfg)
	if err != nil {
		t.Fatalf("config: %s", config.Format(err))
	}
	x := &matrixHost{ev: plugintest.NewRecorder[sdk.Event](), log: &logTail{}, dir: dir, done: make(chan struct{})}
	logger := hclog.New(&hclog.LoggerOptions{Name: "vigil", Level: hclog.Debug, Output: x.log})
	opts.Logger, opts.EventHook, opts.TempDir = logger, x.ev.Add, dir
	x.h, err = New(app, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	x.cancel = cancel
	go func() {
		x.err = x.h.Serve(ctx)
		close(x.done)
	}()
	t.Cleanup(func() {
		x.stop(t)
		noRowProcsLeft(t, dir)
		if t.Failed() {
			t.Logf("host log, last lines:\n%s", x.log.tail())
		}
	})
	return x
}

// wait blocks until Serve returned (at most d) and returns its result.
func (x *matrixHost) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-x.done:
		return x.err
	case <-time.After(d):
		t.Fatalf("Serve did not return within %v", d)
		return nil
	}
}

// stop cancels Serve and returns its result (within 15 s).
func (x *matrixHost) stop(t *testing.T) error {
	t.Helper()
	x.cancel()
	return x.wait(t, 15*time.Second)
}

// mustServe checks that Serve still runs and the echo worker answers a call.
func (x *matrixHost) mustServe(t *testing.T) {
	t.Helper()
	select {
	case <-x.done:
		t.Fatalf("the host stopped: Serve = %v", x.err)
	default:
	}
	x.callEcho(t, 5*time.Second)
}

// callEcho calls the echo worker and returns how long it took to answer.
func (x *matrixHost) callEcho(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	rep, err := x.h.Call(context.Background(), "echo", msg(t, sdk.Msg("are you there?")), timeout)
	if err != nil || rep.PayloadString() != "are you there?" {
		t.Fatalf("echo call: %v, %v", rep, err)
	}
	return time.Since(begin)
}

// pid returns the PID of the current incarnation of worker id.
func (x *matrixHost) pid(t *testing.T, id string) int {
	t.Helper()
	inc := x.h.Worker(id).Current()
	if inc == nil {
		t.Fatalf("worker %s never started", id)
	}
	return inc.PID()
}

// noExit fails if worker id exited or was restarted (it must not have been
// disturbed by its own bad input).
func (x *matrixHost) noExit(t *testing.T, ids ...string) {
	t.Helper()
	for _, e := range x.ev.Snapshot() {
		if slices.Contains(ids, e.Child) && (e.Kind == sdk.EventChildExited || e.Kind == sdk.EventChildRestarting) {
			t.Errorf("worker %s was disturbed: %v", e.Child, e)
		}
	}
}

// failedFirstStart: the bad worker's first start fails, so Serve returns
// an error wrapping sdk.ErrStartFailed after stopping the echo worker
// started before it.
func failedFirstStart(t *testing.T, x *matrixHost) string {
	x.ev.Wait(t, 10*time.Second, "echo started", started("echo", 1))
	echoPID := x.pid(t, "echo")
	err := x.wait(t, 15*time.Second)
	if !errors.Is(err, sdk.ErrStartFailed) {
		t.Fatalf("Serve = %v, want ErrStartFailed", err)
	}
	x.ev.Wait(t, time.Second, "echo stopped", func(e sdk.Event) bool { return e.Kind == sdk.EventChildStopped && e.Child == "echo" })
	if alive(echoPID) {
		t.Errorf("echo (pid %d) still runs after the failed start", echoPID)
	}
	return err.Error()
}

// restartingBadPlugin is an app whose worker "bad" (line 6) is badplugin in
// mode, misbehaving only while {D}/flag exists, restarted quickly.
func restartingBadPlugin(mode, attrs string) string {
	return `app "bad" {
  max_restarts = 100
  max_seconds  = 10` + echoWorker + `
  worker "bad" {
    plugin = "{P}/badplugin"
    args   = ["` + mode + `", "{D}/flag"]
    ` + attrs + `
    backoff {
      min    = "20ms"
      max    = "20ms"
      jitter = 0
    }
  }
}`
}

// failingRestarts: "bad" runs; while {D}/flag exists its restarts fail;
// the host, the echo worker and bad's mailbox carry on; once the flag is
// gone "bad" runs again. It returns the first failed start's error.
func failingRestarts(t *testing.T, x *matrixHost) string {
	x.ev.Wait(t, 10*time.Second, "bad started", started("bad", 1))
	flag := filepath.Join(x.dir, "flag")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(x.pid(t, "bad"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	isFailed := func(e sdk.Event) bool { return e.Kind == sdk.EventChildStartFailed && e.Child == "bad" }
	failed := x.ev.Wait(t, 10*time.Second, "a failed restart of bad", isFailed)
	// Meanwhile: the host answers, and bad's mailbox keeps what is sent.
	const queued = 10
	for i := range queued {
		if err := x.h.Send(context.Background(), "bad", msg(t, sdk.Msg("m-"+strconv.Itoa(i)))); err != nil {
			t.Fatalf("send to bad while its restarts fail: %v", err)
		}
	}
	x.mustServe(t)
	x.ev.Wait(t, 10*time.Second, "a second failed restart of bad", func(e sdk.Event) bool { return isFailed(e) && e.Time.After(failed.Time) })
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	x.ev.Wait(t, 10*time.Second, "bad running again", started("bad", 2))
	st := mustMailbox(t, x.h, "bad").Stats()
	if st.Len+st.InFlight != queued || st.DeadLetters != 0 {
		t.Errorf("bad's mailbox after its failed restarts: %d queued + %d in flight, %d dead letters; want %d, 0",
			st.Len, st.InFlight, st.DeadLetters, queued)
	}
	if !errors.Is(failed.Err, sdk.ErrStartFailed) {
		t.Errorf("failed restart error %v, want ErrStartFailed", failed.Err)
	}
	return failed.Err.Error()
}

// hangOnStop: stopping the host ends the stubborn worker with sig within
// its shutdown_timeout and Serve reports it; the echo worker stops
// gracefully after it.
func hangOnStop(sig syscall.Signal, timeout time.Duration) func(t *testing.T, x *matrixHost) string {
	return func(t *testing.T, x *matrixHost) string { return hangOnStopWith(t, x, sig, timeout) }
}

func hangOnStopWith(t *testing.T, x *matrixHost, sig syscall.Signal, timeout time.Duration) string {
	x.ev.Wait(t, 10*time.Second, "stubborn started", started("stubborn", 1))
	pid := x.pid(t, "stubborn")
	begin := time.Now()
	err := x.stop(t)
	took := time.Since(begin)
	if !errors.Is(err, sdk.ErrShutdownTimeout) {
		t.Fatalf("Serve = %v, want ErrShutdownTimeout", err)
	}
	// SIGTERM comes at 4/5 of the timeout, SIGKILL at its end.
	floor := timeout * 4 / 5
	if sig == syscall.SIGKILL {
		floor = timeout
	}
	if took < floor || took > timeout+5*time.Second {
		t.Errorf("the stop took %v with a %v shutdown_timeout", took, timeout)
	}
	var ee *process.ExitError
	if inc := x.h.Worker("stubborn").Current(); !errors.As(inc.Err(), &ee) || ee.Signal != sig {
		t.Errorf("stubborn ended with %v, want killed by %v", inc.Err(), sig)
	}
	if alive(pid) {
		t.Errorf("stubborn (pid %d) survived", pid)
	}
	var stopped []string
	for _, e := range x.ev.Snapshot() {
		if e.Kind == sdk.EventChildStopped {
			stopped = append(stopped, e.Child)
		}
	}
	if !slices.Equal(stopped, []string{"stubborn", "echo"}) {
		t.Errorf("stopped %v, want stubborn then echo", stopped)
	}
	t.Logf("stop took %v", took)
	return err.Error()
}

// floodLog: two workers write their stderr as fast as they can (hclog
// lines, and 100 kB raw lines); the host re-emits them, stays responsive
// (echo answers each call within a bound), its heap stays bounded, and a
// flooder killed mid-flood is restarted promptly.
func floodLog(t *testing.T, x *matrixHost) string {
	for _, id := range []string{"echo", "flooder", "rawflood"} {
		x.ev.Wait(t, 10*time.Second, id+" started", started(id, 1))
	}
	heap0 := heapInUse()
	eventually(t, 10*time.Second, "both floods re-emitted by the host", func() bool {
		return x.log.count("vigil.flooder.") >= 2000 && x.log.count("vigil.rawflood.") >= 200
	})
	// Call echo one call after another for a second of flood.
	const bound = 2 * time.Second
	var slowest time.Duration
	peak := heapInUse()
	calls := 0
	for begin := time.Now(); time.Since(begin) < time.Second && calls < 10000; calls++ {
		slowest = max(slowest, x.callEcho(t, bound))
		peak = max(peak, heapInUse())
	}
	if slowest >= bound {
		t.Errorf("slowest echo call during the flood took %v", slowest)
	}
	// Supervision is not held up by the re-emission: a crash mid-flood is
	// noticed and the worker restarted within a bound; the stderr tail in
	// its exit reason is bounded (the last 20 lines and the unfinished one,
	// at most 512 bytes each).
	killed := time.Now()
	if err := syscall.Kill(x.pid(t, "rawflood"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	exited := x.ev.Wait(t, 5*time.Second, "rawflood exited", func(e sdk.Event) bool { return e.Kind == sdk.EventChildExited && e.Child == "rawflood" })
	restarted := x.ev.Wait(t, 5*time.Second, "rawflood restarted", started("rawflood", 2))
	var ee *process.ExitError
	if !errors.As(exited.Err, &ee) || ee.Signal != syscall.SIGKILL || len(ee.Stderr) == 0 || len(ee.Stderr) > 21 {
		t.Errorf("rawflood's exit: %v; want a SIGKILL with a stderr tail of 1 to 21 lines", exited.Err)
	} else {
		for _, l := range ee.Stderr {
			if len(l) > 512 {
				t.Errorf("stderr tail line of %d bytes kept, want at most 512", len(l))
			}
		}
	}
	peak = max(peak, heapInUse())
	const heapBound = 64 << 20
	if growth := int64(peak) - int64(heap0); growth > heapBound {
		t.Errorf("host heap grew by %d MiB during the flood (bound %d MiB)", growth>>20, heapBound>>20)
	}
	t.Logf("flood: %d hclog lines and %d raw line pieces re-emitted (%d MiB of log); %d echo calls: slowest %v; kill→restarted %v; heap in use %d → peak %d MiB",
		x.log.count("vigil.flooder."), x.log.count("vigil.rawflood."), x.log.bytes()>>20, calls, slowest,
		restarted.Time.Sub(killed).Round(time.Millisecond), heap0>>20, peak>>20)
	return ""
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// oversize: the sender's messages over the sink's max_message_size and
// over the wire limit fail in the sender with ErrMessageTooLarge; the
// messages around them arrive; nobody restarts.
func oversize(t *testing.T, x *matrixHost) string {
	got := collect(t, mustMailbox(t, x.h, "collector"), 20*time.Second, "reports and forwards", atLeast(4))
	slices.Sort(got)
	if got[0] != "sink|after" || got[1] != "sink|before" {
		t.Errorf("the sink processed %q, want before and after", got[:2])
	}
	if st := mustMailbox(t, x.h, "sink").Stats(); st.DeadLetters != 0 {
		t.Errorf("sink dead letters: %d", st.DeadLetters)
	}
	x.noExit(t, "sender", "sink")
	return strings.Join(got, "\n")
}

// unknownWorkers: sends and calls to a name nobody has fail in the plugin
// with ErrWorkerNotFound; the producers go on (no restart).
func unknownWorkers(t *testing.T, x *matrixHost) string {
	got := collect(t, mustMailbox(t, x.h, "collector"), 20*time.Second, "the reports", atLeast(3))
	slices.Sort(got)
	const notFound = `to "nobody": vigil: worker not found: no worker or pool named "nobody"`
	if len(got) != 3 || got[1] != "late=0" || !strings.HasSuffix(got[0], notFound) || !strings.HasSuffix(got[2], notFound) {
		t.Errorf("reports %q: want the call's error, late=0 and the send's error, both ending %q", got, notFound)
	}
	x.noExit(t, "lost", "caller")
	return strings.Join(got, "\n")
}

// fullMailbox: the filler sends to a small, slowly consumed mailbox until
// a send fails with ErrMailboxFull; every message accepted before that
// is processed exactly once, none is dead-lettered.
func fullMailbox(t *testing.T, x *matrixHost) string {
	col := mustMailbox(t, x.h, "collector")
	got := collect(t, col, 20*time.Second, "the filler's report", func(s []string) bool {
		return len(s) > 0 && strings.HasPrefix(s[len(s)-1], "sent=")
	})
	report, forwarded := got[len(got)-1], got[:len(got)-1]
	sent, err := strconv.Atoi(strings.Fields(strings.TrimPrefix(report, "sent="))[0])
	if err != nil || sent < 20 {
		t.Fatalf("report %q: want sent=<at least the capacity>", report)
	}
	forwarded = append(forwarded, collect(t, col, 20*time.Second, "every accepted message processed", func(s []string) bool {
		return len(forwarded)+len(s) >= sent
	})...)
	want := make([]string, sent)
	for i := range want {
		want[i] = "sink|fill-" + strconv.Itoa(i)
	}
	if !slices.Equal(forwarded, want) {
		t.Errorf("processed %d messages (%q…), want fill-0 … fill-%d in order, each once", len(forwarded), tail(forwarded), sent-1)
	}
	sink := mustMailbox(t, x.h, "sink")
	// The counter acknowledges each message when it asks for the next.
	drained := func() bool { st := sink.Stats(); return st.Len == 0 && st.InFlight == 0 }
	for deadline := time.Now().Add(5 * time.Second); !drained() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	if st := sink.Stats(); st.Len != 0 || st.InFlight != 0 || st.DeadLetters != 0 || st.MessagesAcked != uint64(sent) {
		t.Errorf("sink: %d queued, %d in flight, %d dead letters, %d acked; want 0, 0, 0, %d", st.Len, st.InFlight, st.DeadLetters, st.MessagesAcked, sent)
	}
	x.noExit(t, "filler", "sink")
	t.Logf("accepted %d sends into a 20-message mailbox before it was full; %d processed", sent, len(forwarded))
	return report
}

// runVigilIn runs the vigil binary with args, TMPDIR=dir (so that its
// workers' socket directories are under dir), and returns its exit status
// and combined output. It fails after 20 s.
func runVigilIn(t *testing.T, dir string, args ...string) (int, string) {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(filepath.Join(binDir, "vigil"), args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("vigil %s did not exit within 20s:\n%s", strings.Join(args, " "), out)
	}
	noRowProcsLeft(t, dir)
	return cmd.ProcessState.ExitCode(), out.String()
}

// noRowProcsLeft waits until no process built by TestMain runs with dir in
// its environment (TMPDIR, or the plugin socket dir under it).
func noRowProcsLeft(t *testing.T, dir string) {
	t.Helper()
	mine := func() []int {
		var pids []int
		for _, pid := range plugintest.Procs(binDir) {
			env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
			if err == nil && (bytes.Contains(env, []byte("="+dir+"/")) || bytes.Contains(env, []byte("="+dir+"\x00"))) {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	deadline := time.Now().Add(5 * time.Second)
	for pids := mine(); len(pids) > 0; pids = mine() {
		if time.Now().After(deadline) {
			t.Errorf("processes of this row left behind: %v", pids)
			return
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// logTail is the host log of one row: it counts lines and keeps the last
// ones, so that a flood costs no memory. Safe for concurrent use.
type logTail struct {
	mu     sync.Mutex
	lines  []string // ring
	next   int
	n      int
	size   int
	counts map[string]int
}

// counted are the substrings logTail counts lines of.
var counted = []string{"vigil.flooder.", "vigil.rawflood."}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lines == nil {
		l.lines, l.counts = make([]string, 200), map[string]int{}
	}
	for _, c := range counted {
		if bytes.Contains(p, []byte(c)) {
			l.counts[c]++
		}
	}
	line := strings.TrimRight(string(p[:min(len(p), 1000)]), "\n")
	l.lines[l.next] = line
	l.next = (l.next + 1) % len(l.lines)
	l.n++
	l.size += len(p)
	return len(p), nil
}

func (l *logTail) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[sub]
}

func (l *logTail) bytes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

func (l *logTail) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lines == nil {
		return ""
	}
	var b strings.Builder
	for i := range len(l.lines) {
		if s := l.lines[(l.next+i)%len(l.lines)]; s != "" {
			fmt.Fprintln(&b, s)
		}
	}
	return b.String()
}
