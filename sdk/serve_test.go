package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigil-run/vigil/sdk/plugintest"
	"github.com/vigil-run/vigil/sdk/protocol"
)

// The test binary re-executed by plugintest.Launch serves serveTestWorker.
// It is checked in init, before the package's TestMain (owned by
// supervisor_test.go), so no test machinery runs in the plugin.
func init() {
	if plugintest.Serving() {
		err := Serve(&serveTestWorker{})
		fmt.Fprintln(os.Stderr, "Serve returned:", err)
		os.Exit(99)
	}
}

// serveTestWorker is the Worker the plugin process runs; its config
// picks its behaviour. Init decodes the config, so it is in place before
// the host learns the worker started (and may health-check it).
type serveTestWorker struct {
	mu  sync.Mutex
	cfg serveTestConfig
}

type serveTestConfig struct {
	Mode      string   `json:"mode"`
	Unhealthy bool     `json:"unhealthy"`
	Every     Duration `json:"every"`
}

func (w *serveTestWorker) Init(_ context.Context, rt *Runtime) error {
	cfg := serveTestConfig{Every: Duration(time.Hour)}
	if err := rt.DecodeConfig(&cfg); err != nil {
		return err
	}
	w.mu.Lock()
	w.cfg = cfg
	w.mu.Unlock()
	return nil
}

func (w *serveTestWorker) Run(ctx context.Context, rt *Runtime) error {
	w.mu.Lock()
	cfg := w.cfg
	w.mu.Unlock()
	rt.Logger().Info("hello from the worker", "mode", cfg.Mode)
	switch cfg.Mode {
	case "identity":
		return fmt.Errorf("id=%s incarnation=%d every=%v: %w", rt.ID(), rt.Incarnation(), cfg.Every, ErrMailboxFull)
	case "panic":
		panic("kaboom")
	}
	<-ctx.Done()
	return ctx.Err() // counts as a normal exit
}

func (w *serveTestWorker) HealthCheck(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cfg.Unhealthy {
		return fmt.Errorf("queue stuck: %w", ErrHealthCheckFailed)
	}
	return nil
}

// servePlugin is one plugin process running serveTestWorker.
type servePlugin struct{ *plugintest.Plugin }

func launchServePlugin(t *testing.T) servePlugin {
	t.Helper()
	return servePlugin{plugintest.Launch(t, protocol.EnvLogLevel+"=debug")}
}

func (p servePlugin) start(t *testing.T, config string) *protocol.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := p.Client.Run(ctx, protocol.RunRequest{WorkerID: "handlers_2", Incarnation: 3, Config: []byte(config)})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r
}

// finish waits for the run and the process to end and returns the run's
// error and the exit status.
func (p servePlugin) finish(t *testing.T, r *protocol.Run) (int, error) {
	t.Helper()
	select {
	case <-r.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("run did not end within 5s")
	}
	return p.ExitCode(t), r.Err()
}

func TestServeRunsTheWorkerInAPluginProcess(t *testing.T) {
	tests := map[string]struct {
		config   string
		stop     bool
		wantErr  string // "" = nil
		wantIs   error
		wantExit int
	}{
		"identity, config and sentinel reach the host": {
			config:   `{"mode":"identity","every":"250ms"}`,
			wantErr:  "id=handlers_2 incarnation=3 every=250ms: vigil: mailbox full",
			wantIs:   ErrMailboxFull,
			wantExit: 1,
		},
		"stop: returning ctx.Err() is a normal exit": {
			config: `{"mode":"run"}`, stop: true, wantExit: 0,
		},
		"panic is reported as ErrPanic and exits 2": {
			config: `{"mode":"panic"}`, wantErr: "vigil: child panicked: kaboom", wantIs: ErrPanic, wantExit: 2,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := launchServePlugin(t)
			r := p.start(t, tc.config)
			if tc.stop {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := p.Client.Stop(ctx); err != nil {
					t.Fatalf("Stop: %v", err)
				}
			}
			code, err := p.finish(t, r)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Err = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Errorf("Err = %v, want %q", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.wantIs)
			}
			if code != tc.wantExit {
				t.Errorf("exit status = %d, want %d", code, tc.wantExit)
			}
		})
	}
}

func TestServeFailedInitFailsTheStart(t *testing.T) {
	p := launchServePlugin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.Client.Run(ctx, protocol.RunRequest{WorkerID: "handlers_2", Config: []byte(`{"mode":"run","every":"soon"}`)})
	want := `vigil: start worker "handlers_2": init: vigil: invalid spec: worker "handlers_2" config: field "every": time: invalid duration "soon"`
	if !errors.Is(err, ErrInvalidSpec) || err.Error() != want {
		t.Errorf("Run = %v\nwant %s", err, want)
	}
	if code := p.ExitCode(t); code != 1 {
		t.Errorf("exit status = %d, want 1", code)
	}
}

func TestServeHealthCheckAndLogsReachTheHost(t *testing.T) {
	p := launchServePlugin(t)
	r := p.start(t, `{"mode":"run","unhealthy":true}`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.Client.HealthCheck(ctx)
	if !errors.Is(err, ErrHealthCheckFailed) || err.Error() != "queue stuck: vigil: health check failed" {
		t.Errorf("HealthCheck = %v, want it to wrap ErrHealthCheckFailed", err)
	}
	if err := p.Client.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if code, err := p.finish(t, r); err != nil || code != 0 {
		t.Errorf("run ended with %v, exit %d; want nil, 0", err, code)
	}
	p.Kill() // waits for the host's stderr reader: the log is complete
	if !p.Log.HasLine("hello from the worker: ", "@module=handlers_2", "mode=run") {
		t.Errorf("the worker's log line did not reach the host log (named after the worker):\n%s", p.Log.String())
	}
}

func TestWorkerServerAdapter(t *testing.T) {
	s := &workerServer{w: noCheckWorker{}, logger: hclog.NewNullLogger()}
	if err := s.HealthCheck(context.Background()); err != nil {
		t.Errorf("HealthCheck of a worker without one = %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	readies := 0
	if err := s.Run(ctx, protocol.RunRequest{WorkerID: "w"}, func() { readies++ }); err != nil {
		t.Errorf("Run returning ctx.Err() after cancel = %v, want nil", err)
	}
	if readies != 1 {
		t.Errorf("ready called %d times, want 1", readies)
	}
	// An error while ctx is live is a failure, even a context error.
	s.w = errWorker{context.Canceled}
	if err := s.Run(context.Background(), protocol.RunRequest{}, func() {}); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled passed through", err)
	}
	func() {
		defer func() {
			pe, ok := recover().(*PanicError)
			if !ok || pe.Value != "boom" || len(pe.Stack) == 0 {
				t.Errorf("recovered %v, want a *PanicError with the value and a stack", pe)
			}
		}()
		s.w = panicWorker{}
		_ = s.Run(context.Background(), protocol.RunRequest{}, func() {})
	}()
}

type noCheckWorker struct{}

func (noCheckWorker) Run(ctx context.Context, _ *Runtime) error { return ctx.Err() }

type errWorker struct{ err error }

func (w errWorker) Run(context.Context, *Runtime) error { return w.err }

type panicWorker struct{}

func (panicWorker) Run(context.Context, *Runtime) error { panic("boom") }

type initWorker struct {
	err   error
	order *[]string
}

func (w initWorker) Init(context.Context, *Runtime) error {
	*w.order = append(*w.order, "init")
	return w.err
}

func (w initWorker) Run(context.Context, *Runtime) error {
	*w.order = append(*w.order, "run")
	return nil
}

func TestWorkerServerRunsInitBeforeReady(t *testing.T) {
	tests := map[string]struct {
		err  error
		want string
	}{
		"init ok":     {want: "init ready run"},
		"init failed": {err: ErrTimeout, want: "init"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var order []string
			s := &workerServer{w: initWorker{err: tc.err, order: &order}, logger: hclog.NewNullLogger()}
			err := s.Run(context.Background(), protocol.RunRequest{}, func() { order = append(order, "ready") })
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("Run = %v, want %v", err, tc.err)
			}
			if got := strings.Join(order, " "); got != tc.want {
				t.Errorf("order = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestServeRejectsBadArguments(t *testing.T) {
	if err := Serve(nil); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("Serve(nil) = %v, want ErrInvalidSpec", err)
	}
	if err := Serve(noCheckWorker{}, WithServeLogger(nil)); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("Serve with a nil logger = %v, want ErrInvalidSpec", err)
	}
}

func TestEverySentinelSurvivesTheWire(t *testing.T) {
	sentinels := []error{
		ErrEmptyMailbox, ErrMailboxFull, ErrMessageExpired, ErrMessageTooLarge,
		ErrDuplicateMessage, ErrInboxClosed, ErrInvalidMessage, ErrDeadLetterNotFound,
		ErrPoisonMessage, ErrNotInFlight,
		ErrTooManyRestarts, ErrShutdownTimeout, ErrAlreadyMonitoring, ErrChildNotFound,
		ErrDuplicateChild, ErrChildRunning, ErrInvalidSpec, ErrAlreadyStarted,
		ErrNotStarted, ErrStartFailed, ErrHealthCheckFailed,
		ErrWorkerNotFound, ErrTimeout,
		ErrPanic, ErrDeadLettersDisabled, ErrAppShutdown,
	}
	for _, s := range sentinels {
		t.Run(s.Error(), func(t *testing.T) {
			for _, err := range []error{s, fmt.Errorf("worker echo: %w", s)} {
				back := protocol.FromStatus(protocol.ToStatus(err))
				if back.Error() != err.Error() {
					t.Errorf("message %q came back as %q", err, back)
				}
				if !errors.Is(back, s) {
					t.Errorf("errors.Is(%v, %v) = false after the round trip", back, s)
				}
				for _, other := range sentinels {
					if other != s && errors.Is(back, other) {
						t.Errorf("%v came back also matching %v", err, other)
					}
				}
			}
		})
	}
}

func TestDecodeConfig(t *testing.T) {
	type nested struct {
		Depth int `json:"depth"`
	}
	type config struct {
		Name     string   `json:"name"`
		Interval Duration `json:"interval"`
		Count    int      `json:"count"`
		Nested   nested   `json:"nested"`
	}
	tests := map[string]struct {
		json    string
		want    config
		wantErr string // substring; "" = no error
	}{
		"empty keeps defaults":  {json: ``, want: config{Name: "dflt", Interval: Duration(time.Second)}},
		"null keeps defaults":   {json: `null`, want: config{Name: "dflt", Interval: Duration(time.Second)}},
		"empty object":          {json: `{}`, want: config{Name: "dflt", Interval: Duration(time.Second)}},
		"all fields":            {json: `{"name":"x","interval":"200ms","count":3,"nested":{"depth":2}}`, want: config{Name: "x", Interval: Duration(200 * time.Millisecond), Count: 3, Nested: nested{2}}},
		"unknown field":         {json: `{"intervl":"1s"}`, wantErr: `config: unknown field "intervl"`},
		"wrong type":            {json: `{"count":"three"}`, wantErr: `field "count": cannot use a JSON string as int`},
		"wrong nested type":     {json: `{"nested":{"depth":"deep"}}`, wantErr: `field "nested.depth"`},
		"bad duration":          {json: `{"name":"x","interval":"soon"}`, wantErr: `field "interval": time: invalid duration "soon"`},
		"duration as a number":  {json: `{"interval":5}`, wantErr: `field "interval": want a duration string such as "200ms", got 5`},
		"not an object":         {json: `[1]`, wantErr: `want a JSON object, got a JSON array`},
		"broken json":           {json: `{"name":`, wantErr: `config:`},
		"names the worker":      {json: `{"x":1}`, wantErr: `worker "w1" config`},
		"sentinel in the chain": {json: `{"x":1}`, wantErr: `vigil: invalid spec`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rt := &Runtime{id: "w1", config: []byte(tc.json), logger: hclog.NewNullLogger()}
			got := config{Name: "dflt", Interval: Duration(time.Second)}
			err := rt.DecodeConfig(&got)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("DecodeConfig: %v", err)
				}
				if got != tc.want {
					t.Errorf("got %+v, want %+v", got, tc.want)
				}
				return
			}
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want ErrInvalidSpec containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestRuntimeAccessors(t *testing.T) {
	rt := newRuntime(protocol.RunRequest{WorkerID: "echo", Incarnation: 7}, hclog.New(&hclog.LoggerOptions{Output: io.Discard}))
	if rt.ID() != "echo" || rt.Incarnation() != 7 || rt.Logger().Name() != "echo" {
		t.Errorf("ID=%q Incarnation=%d Logger=%q", rt.ID(), rt.Incarnation(), rt.Logger().Name())
	}
	d := Duration(1500 * time.Millisecond)
	if b, err := d.MarshalJSON(); err != nil || string(b) != `"1.5s"` || d.String() != "1.5s" {
		t.Errorf("MarshalJSON = %s, %v; String = %s", b, err, d)
	}
}
