package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vigil-run/vigil/sdk/plugintest"
)

// syncBuffer is a buffer safe for concurrent use.
type syncBuffer = plugintest.Log

func msg(t *testing.T, payload string) *Message {
	t.Helper()
	m, err := Msg(payload).Build()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newTestApp(t *testing.T, p Preset) (*App, *recorder, *syncBuffer) {
	t.Helper()
	rec, logs := newRecorder(), &syncBuffer{}
	a := NewAppWithPreset(p).OnEvent(rec.hook).LogOutput(logs)
	t.Cleanup(func() { _ = a.Shutdown() })
	return a, rec, logs
}

func TestAppWorkerIsRestartedAndKeepsItsInbox(t *testing.T) {
	a, rec, _ := newTestApp(t, PresetTesting)
	got := make(chan string, 4)
	var runs atomic.Int32
	a.Worker("echo", func(ctx context.Context) error {
		runs.Add(1)
		in := InboxFromContext(ctx)
		for {
			m, err := in.RecvContext(ctx)
			if err != nil {
				return nil
			}
			got <- fmt.Sprintf("%s@%d", m.PayloadString(), runs.Load())
			if m.PayloadString() == "crash" {
				return errBoom
			}
		}
	})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"crash", "after"} {
		if err := a.Send("echo", msg(t, p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"crash@1", "after@2"} {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("got %q, want %q", g, want)
			}
		case <-time.After(waitLimit):
			t.Fatalf("no %q", want)
		}
	}
	if n := count(rec.since(0), EventChildRestarting, "echo"); n != 1 {
		t.Fatalf("%d restarts", n)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestAppWorkerPoolSharesOneInbox(t *testing.T) {
	a, _, _ := newTestApp(t, PresetTesting)
	seen := make(chan *Inbox, 3)
	handled := make(chan string, 6)
	a.WorkerPool("h", func(ctx context.Context) error {
		in := InboxFromContext(ctx)
		seen <- in
		for {
			m, err := in.RecvContext(ctx)
			if err != nil {
				return nil
			}
			handled <- m.PayloadString()
		}
	}, 3)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range a.Supervisor().Stats().Children {
		ids = append(ids, c.ID)
	}
	if got := strings.Join(ids, ","); got != "h_0,h_1,h_2" {
		t.Fatalf("pool IDs = %s", got)
	}
	pool, err := a.Inbox("h")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if in := <-seen; in != pool {
			t.Fatal("a pool member got another inbox")
		}
	}
	if in, _ := a.Inbox("h_2"); in != pool {
		t.Fatal("a member's name does not reach the pool inbox")
	}
	for i := range 6 {
		if err := a.Send("h_1", msg(t, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for range 6 {
		select {
		case <-handled:
		case <-time.After(waitLimit):
			t.Fatal("pool did not handle every message")
		}
	}
}

func TestAppSendErrors(t *testing.T) {
	a, _, _ := newTestApp(t, PresetTesting)
	a.Worker("idle", func(ctx context.Context) error { <-ctx.Done(); return nil })
	if err := a.Send("idle", msg(t, "x")); !errors.Is(err, ErrWorkerNotFound) {
		t.Fatalf("Send before Build = %v", err)
	}
	if err := a.Build(); err != nil {
		t.Fatal(err)
	}
	if err := a.Send("nobody", msg(t, "x")); !errors.Is(err, ErrWorkerNotFound) {
		t.Fatalf("Send(nobody) = %v", err)
	}
	if _, err := a.Inbox("nobody"); !errors.Is(err, ErrWorkerNotFound) {
		t.Fatalf("Inbox(nobody) = %v", err)
	}
	// The testing preset's mailbox capacity (50) sizes the inbox.
	capacity := PresetTesting.Values().MailboxCapacity
	for i := range capacity {
		if err := a.Send("idle", msg(t, fmt.Sprint(i))); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := a.Send("idle", msg(t, "one too many")); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("send beyond capacity = %v", err)
	}
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := a.Send("idle", msg(t, "late")); !errors.Is(err, ErrInboxClosed) {
		t.Fatalf("send after Shutdown = %v", err)
	}
	if err := a.Start(); !errors.Is(err, ErrAppShutdown) {
		t.Fatalf("Start after Shutdown = %v", err)
	}
}

func TestAppBuildErrors(t *testing.T) {
	fn := func(ctx context.Context) error { <-ctx.Done(); return nil }
	tests := map[string]struct {
		app  *App
		want error
	}{
		"duplicate worker":       {NewApp().Worker("a", fn).Worker("a", fn), ErrDuplicateChild},
		"worker named as a pool": {NewApp().WorkerPool("p", fn, 2).Worker("p", fn), ErrDuplicateChild},
		"pool member clash":      {NewApp().Worker("p_1", fn).WorkerPool("p", fn, 2), ErrDuplicateChild},
		"empty pool":             {NewApp().WorkerPool("p", fn, 0), ErrInvalidSpec},
		"nil function":           {NewApp().Worker("a", nil), ErrInvalidSpec},
		"empty id":               {NewApp().Worker("", fn), ErrInvalidSpec},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if err := tt.app.Build(); !errors.Is(err, tt.want) {
				t.Fatalf("Build = %v, want %v", err, tt.want)
			}
			if tt.app.Supervisor() != nil {
				t.Fatal("a failed Build left a supervisor")
			}
		})
	}
	a := NewApp().Worker("a", fn)
	if err := a.Build(); err != nil {
		t.Fatal(err)
	}
	if err := a.Worker("late", fn).Build(); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("Worker after Build = %v", err)
	}
}

func TestAppUsesEveryPresetValue(t *testing.T) {
	for _, p := range []Preset{PresetProduction, PresetDevelopment, PresetHighAvailability, PresetTesting} {
		t.Run(p.String(), func(t *testing.T) {
			a := NewAppWithPreset(p).Worker("w", func(ctx context.Context) error { return nil })
			if err := a.Build(); err != nil {
				t.Fatal(err)
			}
			v, o := p.Values(), a.Supervisor().opts
			if o.MaxRestarts != v.MaxRestarts || o.MaxSeconds != v.MaxSeconds || o.ShutdownTimeout != v.ShutdownTimeout ||
				o.HealthCheckInterval != v.HealthCheckInterval || o.Backoff.Min != v.BackoffMin || o.Strategy != OneForOne {
				t.Fatalf("options = %+v, preset = %+v", o, v)
			}
			if v.BackoffMin > 0 && o.Backoff.Max != v.BackoffMax {
				t.Fatalf("backoff = %+v", o.Backoff)
			}
			if in, _ := a.Inbox("w"); in.mb.Stats().Capacity != v.MailboxCapacity {
				t.Fatalf("inbox capacity = %d, want %d", in.mb.Stats().Capacity, v.MailboxCapacity)
			}
			if lvl := o.Logger.GetLevel().String(); lvl != v.LogLevel {
				t.Fatalf("log level %s, want %s", lvl, v.LogLevel)
			}
		})
	}
}

func TestAppDevelopmentPresetLogsLifecycleEvents(t *testing.T) {
	for _, tt := range []struct {
		preset  Preset
		verbose bool
	}{{PresetDevelopment, true}, {PresetProduction, false}} {
		t.Run(tt.preset.String(), func(t *testing.T) {
			a, _, logs := newTestApp(t, tt.preset)
			a.Worker("w", func(ctx context.Context) error { <-ctx.Done(); return nil })
			if err := a.Start(); err != nil {
				t.Fatal(err)
			}
			if err := a.Stop(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(logs.String(), `child "w" started`); got != tt.verbose {
				t.Fatalf("start logged = %v, want %v; logs:\n%s", got, tt.verbose, logs)
			}
		})
	}
}

func TestAppRun(t *testing.T) {
	t.Run("stops gracefully when ctx is cancelled", func(t *testing.T) {
		a, rec, _ := newTestApp(t, PresetTesting)
		a.WorkerPool("p", func(ctx context.Context) error { <-ctx.Done(); return nil }, 2)
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- a.Run(ctx) }()
		rec.waitFor(t, 0, EventChildStarted, "p_1", 1)
		cancel()
		if err := <-ran; err != nil {
			t.Fatalf("Run = %v", err)
		}
		if got := seq(rec.since(0), EventChildStopped); got != "child_stopped:p_1 child_stopped:p_0" {
			t.Fatalf("stops: %s", got)
		}
		if in, _ := a.Inbox("p"); !in.IsClosed() {
			t.Fatal("Run left the inbox open")
		}
	})
	t.Run("returns the restart limit when the supervisor gives up", func(t *testing.T) {
		a, _, _ := newTestApp(t, PresetTesting) // MaxRestarts 1
		a.Worker("crasher", func(ctx context.Context) error { return errBoom })
		err := a.Run(context.Background())
		var rl *RestartLimitError
		if !errors.As(err, &rl) || rl.Child != "crasher" || !errors.Is(err, errBoom) {
			t.Fatalf("Run = %v", err)
		}
	})
}

func TestAppStrategyAndLogger(t *testing.T) {
	rec, logs := newRecorder(), &syncBuffer{}
	ws := map[string]*worker{"a": newWorker(), "b": newWorker()}
	a := NewApp().Strategy(OneForAll).OnEvent(rec.hook).
		Worker("a", ws["a"].run).Worker("b", ws["b"].run)
	a.Logger(hclogFor(logs))
	t.Cleanup(func() { _ = a.Shutdown() })
	if a.Preset() != PresetProduction {
		t.Fatalf("NewApp preset = %v", a.Preset())
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("second Start = %v", err)
	}
	mark := rec.len()
	ws["b"].end(t, errBoom)
	evs := rec.waitFor(t, mark, EventChildStarted, "b", 1)
	if got := seq(evs, EventChildStopped, EventChildStarted); got != "child_stopped:a child_started:a child_started:b" {
		t.Fatalf("one_for_all app: %s", got)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `child "b" restarting`) {
		t.Fatalf("custom logger unused:\n%s", logs)
	}
}

func hclogFor(w *syncBuffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "t", Level: hclog.Info, Output: w})
}
