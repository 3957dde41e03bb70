package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitLimit = 5 * time.Second

var errBoom = errors.New("boom")

// errPanic makes a scripted worker panic instead of returning.
var errPanic = errors.New("please panic")

// recorder collects a supervisor's events.
type recorder struct {
	mu     sync.Mutex
	events []Event
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) hook(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *recorder) since(i int) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events[i:]...)
}

// wait blocks until pred holds for the events recorded since index from.
func (r *recorder) wait(t *testing.T, from int, what string, pred func([]Event) bool) []Event {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		evs := r.since(from)
		if pred(evs) {
			return evs
		}
		select {
		case <-r.notify:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; events since %d:\n%s", what, from, render(evs))
		}
	}
}

// waitFor waits until n events of kind for child were recorded since from.
func (r *recorder) waitFor(t *testing.T, from int, kind EventKind, child string, n int) []Event {
	t.Helper()
	return r.wait(t, from, fmt.Sprintf("%d× %v %s", n, kind, child), func(evs []Event) bool {
		return count(evs, kind, child) >= n
	})
}

func count(evs []Event, kind EventKind, child string) int {
	n := 0
	for _, e := range evs {
		if e.Kind == kind && (child == "" || e.Child == child) {
			n++
		}
	}
	return n
}

// seq renders the events of the given kinds as "kind:child" in order.
func seq(evs []Event, kinds ...EventKind) string {
	var out []string
	for _, e := range evs {
		for _, k := range kinds {
			if e.Kind == k {
				out = append(out, e.Kind.String()+":"+e.Child)
			}
		}
	}
	return strings.Join(out, " ")
}

func render(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %v\n", e)
	}
	return b.String()
}

// fakeClock is a manually advanced Clock.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at   time.Time
	f    func()
	done bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.done {
			return false
		}
		t.done = true
		return true
	}
}

// Advance moves time on and runs the timers that became due, synchronously.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for _, t := range c.timers {
		if !t.done && !t.at.After(c.now) {
			t.done = true
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

// worker is a scripted goroutine child: it runs until its ctx is cancelled
// or the test sends it an exit reason (nil, an error, or errPanic).
type worker struct {
	exit       chan error
	running    atomic.Int32
	maxRunning atomic.Int32
}

func newWorker() *worker { return &worker{exit: make(chan error)} }

func (w *worker) run(ctx context.Context) error {
	n := w.running.Add(1)
	defer w.running.Add(-1)
	for {
		m := w.maxRunning.Load()
		if n <= m || w.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-w.exit:
		if errors.Is(err, errPanic) {
			panic("worker asked to panic")
		}
		return err
	}
}

// end makes the running incarnation end with err.
func (w *worker) end(t *testing.T, err error) {
	t.Helper()
	select {
	case w.exit <- err:
	case <-time.After(waitLimit):
		t.Fatal("worker is not running")
	}
}

// newTestSup returns a supervisor recording its events, with no backoff
// unless opts says otherwise, shut down at cleanup.
func newTestSup(t *testing.T, opts SupervisorOptions) (*Supervisor, *recorder) {
	t.Helper()
	rec := newRecorder()
	opts.EventHook = rec.hook
	if opts.Backoff.IsZero() {
		opts.Backoff = NoBackoff
	}
	if opts.Name == "" {
		opts.Name = "test"
	}
	s := NewSupervisor(opts)
	t.Cleanup(func() { _ = s.Shutdown(waitLimit) })
	return s, rec
}

// addWorkers adds one scripted worker per id and returns them by id.
func addWorkers(t *testing.T, s *Supervisor, ids ...string) map[string]*worker {
	t.Helper()
	ws := map[string]*worker{}
	for _, id := range ids {
		w := newWorker()
		ws[id] = w
		if err := s.AddChild(ChildSpec{ID: id, Start: w.run}); err != nil {
			t.Fatalf("AddChild(%s): %v", id, err)
		}
	}
	return ws
}

func mustStart(t *testing.T, s *Supervisor) {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func TestStrategiesRestartTheRightChildrenInOrder(t *testing.T) {
	tests := map[string]struct {
		strategy RestartStrategy
		children []string
		fail     string
		want     string // stop, restarting and start events after the failure
		last     string // the last child started
		starts   int
	}{
		"one_for_one restarts only the failed child": {
			strategy: OneForOne, children: []string{"a", "b", "c"}, fail: "b",
			want: "child_stopped: child_restarting:b child_started:b",
			last: "b", starts: 1,
		},
		"one_for_all stops the others in reverse and restarts all in order": {
			strategy: OneForAll, children: []string{"a", "b", "c"}, fail: "b",
			want: "child_stopped:c child_stopped:a child_restarting:a child_restarting:b child_restarting:c " +
				"child_started:a child_started:b child_started:c",
			last: "c", starts: 3,
		},
		"rest_for_one restarts the failed child and those started after it": {
			strategy: RestForOne, children: []string{"a", "b", "c", "d"}, fail: "b",
			want: "child_stopped:d child_stopped:c child_restarting:b child_restarting:c child_restarting:d " +
				"child_started:b child_started:c child_started:d",
			last: "d", starts: 3,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s, rec := newTestSup(t, SupervisorOptions{Strategy: tt.strategy, MaxRestarts: 10})
			ws := addWorkers(t, s, tt.children...)
			mustStart(t, s)
			mark := rec.len()
			ws[tt.fail].end(t, errBoom)
			evs := rec.wait(t, mark, "restarts", func(evs []Event) bool {
				return count(evs, EventChildStarted, "") >= tt.starts && count(evs, EventChildStarted, tt.last) == 1
			})
			got := seq(evs, EventChildStopped, EventChildRestarting, EventChildStarted)
			want := strings.Replace(tt.want, "child_stopped: ", "", 1)
			if got != want {
				t.Fatalf("events after %s failed:\n got %s\nwant %s", tt.fail, got, want)
			}
			if e := evs[0]; e.Kind != EventChildExited || e.Child != tt.fail || !errors.Is(e.Err, errBoom) {
				t.Fatalf("first event = %v, want %s exited with boom", e, tt.fail)
			}
			for id, w := range ws {
				if m := w.maxRunning.Load(); m > 1 {
					t.Errorf("child %s ran %d copies at once", id, m)
				}
			}
			if st := s.Stats(); st.ActiveChildren != len(tt.children) || st.TotalRestarts != tt.starts {
				t.Fatalf("stats = %+v, want %d active, %d restarts", st, len(tt.children), tt.starts)
			}
		})
	}
}

func TestRestartTypes(t *testing.T) {
	tests := map[string]struct {
		restart     RestartType
		exit        error
		restarted   bool
		stillListed bool
	}{
		"permanent is restarted after a normal exit":   {Permanent, nil, true, true},
		"permanent is restarted after a failure":       {Permanent, errBoom, true, true},
		"transient is not restarted after normal exit": {Transient, nil, false, true},
		"transient is restarted after a failure":       {Transient, errBoom, true, true},
		"transient is restarted after a panic":         {Transient, errPanic, true, true},
		"temporary is not restarted after a failure":   {Temporary, errBoom, false, false},
		"temporary is removed after a normal exit":     {Temporary, nil, false, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s, rec := newTestSup(t, SupervisorOptions{})
			w := newWorker()
			if err := s.AddChild(ChildSpec{ID: "w", Start: w.run, Restart: tt.restart}); err != nil {
				t.Fatal(err)
			}
			mustStart(t, s)
			mark := rec.len()
			w.end(t, tt.exit)
			evs := rec.waitFor(t, mark, EventChildExited, "w", 1)
			if tt.restarted {
				rec.waitFor(t, mark, EventChildStarted, "w", 1)
			} else {
				// Prove no restart follows: a request round-trips through
				// the run loop after the exit was handled.
				_ = s.StartMonitoring()
				evs = rec.since(mark)
				if n := count(evs, EventChildStarted, "w") + count(evs, EventChildRestarting, "w"); n != 0 {
					t.Fatalf("restarted:\n%s", render(evs))
				}
			}
			_, err := s.FindChild("w")
			if listed := err == nil; listed != tt.stillListed {
				t.Fatalf("FindChild err = %v, want listed=%v", err, tt.stillListed)
			}
			if tt.exit != nil && !errors.Is(evs[0].Err, tt.exit) && !errors.Is(evs[0].Err, ErrPanic) {
				t.Fatalf("exit reason = %v", evs[0].Err)
			}
		})
	}
}

func TestTemporaryChildIsNotRestartedAfterSiblingFailureUnderOneForAll(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{Strategy: OneForAll})
	ws := addWorkers(t, s, "a")
	tmp := newWorker()
	if err := s.AddChild(ChildSpec{ID: "tmp", Start: tmp.run, Restart: Temporary}); err != nil {
		t.Fatal(err)
	}
	ws["c"] = newWorker()
	if err := s.AddChild(ChildSpec{ID: "c", Start: ws["c"].run}); err != nil {
		t.Fatal(err)
	}
	mustStart(t, s)
	mark := rec.len()
	ws["a"].end(t, errBoom)
	evs := rec.waitFor(t, mark, EventChildStarted, "c", 1)
	if got, want := seq(evs, EventChildStopped, EventChildStarted), "child_stopped:c child_stopped:tmp child_started:a child_started:c"; got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if _, err := s.FindChild("tmp"); !errors.Is(err, ErrChildNotFound) {
		t.Fatalf("temporary child still listed: %v", err)
	}
}

func TestPanicIsRecoveredWithStackAndRestarted(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{})
	ws := addWorkers(t, s, "p")
	mustStart(t, s)
	mark := rec.len()
	ws["p"].end(t, errPanic)
	evs := rec.waitFor(t, mark, EventChildStarted, "p", 1)
	var pe *PanicError
	if !errors.As(evs[0].Err, &pe) || !errors.Is(evs[0].Err, ErrPanic) {
		t.Fatalf("exit error = %v, want *PanicError", evs[0].Err)
	}
	if !strings.Contains(string(pe.Stack), "(*worker).run") || pe.Value != "worker asked to panic" {
		t.Fatalf("panic value %v, stack:\n%s", pe.Value, pe.Stack)
	}
	if st, _ := s.FindChild("p"); !errors.Is(st.LastError, ErrPanic) || st.Restarts != 1 {
		t.Fatalf("child stats = %+v", st)
	}
}

func TestIntensity(t *testing.T) {
	t.Run("N restarts within the window are tolerated and N+1 gives up", func(t *testing.T) {
		clock := newFakeClock()
		s, rec := newTestSup(t, SupervisorOptions{MaxRestarts: 2, MaxSeconds: 10, Clock: clock})
		ws := addWorkers(t, s, "a", "b", "c")
		mustStart(t, s)
		for i := 1; i <= 2; i++ {
			mark := rec.len()
			ws["b"].end(t, errBoom)
			rec.waitFor(t, mark, EventChildStarted, "b", 1)
			clock.Advance(time.Second)
		}
		mark := rec.len()
		ws["b"].end(t, fmt.Errorf("third: %w", errBoom))
		err := s.Wait()
		var rl *RestartLimitError
		if !errors.As(err, &rl) || !errors.Is(err, ErrTooManyRestarts) || !errors.Is(err, errBoom) {
			t.Fatalf("Wait = %v, want *RestartLimitError", err)
		}
		if rl.Child != "b" || rl.Supervisor != "test" || !strings.Contains(rl.Last.Error(), "third") {
			t.Fatalf("RestartLimitError = %+v", rl)
		}
		evs := rec.since(mark)
		if got, want := seq(evs, EventSupervisorGaveUp, EventChildStopped, EventChildStarted), "supervisor_gave_up:b child_stopped:c child_stopped:a"; got != want {
			t.Fatalf("got %s\nwant %s", got, want)
		}
		if err := s.Shutdown(time.Second); !errors.Is(err, ErrTooManyRestarts) {
			t.Fatalf("Shutdown after giving up = %v", err)
		}
		if st := s.Stats(); st.ActiveChildren != 0 {
			t.Fatalf("active children after giving up: %+v", st)
		}
	})
	t.Run("spaced restarts never give up", func(t *testing.T) {
		clock := newFakeClock()
		s, rec := newTestSup(t, SupervisorOptions{MaxRestarts: 2, MaxSeconds: 10, Clock: clock})
		ws := addWorkers(t, s, "a")
		mustStart(t, s)
		for range 6 {
			mark := rec.len()
			ws["a"].end(t, errBoom)
			rec.waitFor(t, mark, EventChildStarted, "a", 1)
			clock.Advance(6 * time.Second) // ≤ 2 restarts in any 10 s
		}
		select {
		case <-s.Done():
			t.Fatalf("gave up: %v", s.Err())
		default:
		}
		if st := s.Stats(); st.TotalRestarts != 6 {
			t.Fatalf("TotalRestarts = %d, want 6", st.TotalRestarts)
		}
	})
	t.Run("NoRestarts gives up on the first failure", func(t *testing.T) {
		s, _ := newTestSup(t, SupervisorOptions{MaxRestarts: NoRestarts})
		ws := addWorkers(t, s, "a")
		mustStart(t, s)
		ws["a"].end(t, errBoom)
		if err := s.Wait(); !errors.Is(err, ErrTooManyRestarts) {
			t.Fatalf("Wait = %v", err)
		}
	})
}

func TestNestedSupervisorEscalatesToItsParent(t *testing.T) {
	inner, irec := newTestSup(t, SupervisorOptions{Name: "inner", MaxRestarts: NoRestarts})
	iw := addWorkers(t, inner, "leaf")
	parent, prec := newTestSup(t, SupervisorOptions{Name: "parent", MaxRestarts: 1})
	pw := addWorkers(t, parent, "sibling")
	if err := parent.AddChild(ChildSpec{ID: "inner", Child: inner.AsChild()}); err != nil {
		t.Fatal(err)
	}
	mustStart(t, parent)
	irec.waitFor(t, 0, EventChildStarted, "leaf", 1)

	// The leaf fails; the inner supervisor gives up; the parent restarts it.
	mark := prec.len()
	iw["leaf"].end(t, errBoom)
	evs := prec.waitFor(t, mark, EventChildStarted, "inner", 1)
	var rl *RestartLimitError
	if e := evs[0]; e.Kind != EventChildExited || e.Child != "inner" || !errors.As(e.Err, &rl) || rl.Child != "leaf" {
		t.Fatalf("parent saw %v, want inner exited with the restart limit", e)
	}
	irec.waitFor(t, 0, EventChildStarted, "leaf", 2)
	if n := pw["sibling"].maxRunning.Load(); n > 1 {
		t.Fatalf("sibling ran %d copies", n)
	}

	// Again: now the parent exceeds its own intensity and gives up too.
	iw["leaf"].end(t, errBoom)
	err := parent.Wait()
	if !errors.As(err, &rl) || rl.Supervisor != "parent" || rl.Child != "inner" {
		t.Fatalf("parent Wait = %v", err)
	}
	var innerErr *RestartLimitError
	if !errors.As(rl.Last, &innerErr) || innerErr.Supervisor != "inner" {
		t.Fatalf("last error = %v, want the inner supervisor's limit", rl.Last)
	}
	if st := parent.Stats(); st.ActiveChildren != 0 {
		t.Fatalf("parent still has active children: %+v", st)
	}
}

func TestNestedSupervisorIsStoppedWithItsParent(t *testing.T) {
	inner, irec := newTestSup(t, SupervisorOptions{Name: "inner"})
	addWorkers(t, inner, "x", "y")
	parent, _ := newTestSup(t, SupervisorOptions{Name: "parent"})
	if err := parent.AddChild(ChildSpec{ID: "inner", Child: inner.AsChild()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- parent.Serve(ctx) }()
	irec.waitFor(t, 0, EventChildStarted, "y", 1)
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if got := seq(irec.since(0), EventChildStopped); got != "child_stopped:y child_stopped:x" {
		t.Fatalf("inner stops: %s", got)
	}
	if err := inner.Err(); err != nil {
		t.Fatalf("inner Err = %v", err)
	}
}

// failingChild fails every Start.
type failingChild struct{}

func (failingChild) Start(context.Context) (Incarnation, error) { return nil, errors.New("no way") }

func TestStartFailureRollsBackAndNamesTheChild(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{})
	addWorkers(t, s, "a", "b")
	if err := s.AddChild(ChildSpec{ID: "broken", Child: failingChild{}}); err != nil {
		t.Fatal(err)
	}
	addWorkers(t, s, "d")
	err := s.Start()
	if !errors.Is(err, ErrStartFailed) || !strings.Contains(err.Error(), `"broken"`) || !strings.Contains(err.Error(), "no way") {
		t.Fatalf("Start = %v", err)
	}
	got := seq(rec.since(0), EventChildStarted, EventChildStartFailed, EventChildStopped)
	if want := "child_started:a child_started:b child_start_failed:broken child_stopped:b child_stopped:a"; got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if st := s.Stats(); st.ActiveChildren != 0 || st.Uptime != 0 {
		t.Fatalf("stats after failed start: %+v", st)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after a failed start")
	}
	// The supervisor can be started again once the child is fixed.
	if err := s.DeleteChild("broken"); err != nil {
		t.Fatal(err)
	}
	mustStart(t, s)
}

func TestShutdownStopsChildrenInReverseOrder(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{})
	addWorkers(t, s, "a", "b", "c")
	mustStart(t, s)
	if err := s.AddChild(ChildSpec{ID: "d", Start: newWorker().run}); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	if got, want := seq(rec.since(0), EventChildStopped), "child_stopped:d child_stopped:c child_stopped:b child_stopped:a"; got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err after a clean stop = %v", err)
	}
	if err := s.Shutdown(time.Second); err != nil {
		t.Fatalf("second Shutdown = %v", err)
	}
}

// stubborn is a goroutine child that ignores cancellation until released.
type stubborn struct {
	release  chan struct{}
	starts   atomic.Int32
	running  atomic.Int32
	maxCopy  atomic.Int32
	started  chan struct{}
	finished chan struct{}
}

func newStubborn() *stubborn {
	return &stubborn{release: make(chan struct{}), started: make(chan struct{}, 10), finished: make(chan struct{}, 10)}
}

func (s *stubborn) run(ctx context.Context) error {
	s.starts.Add(1)
	if n := s.running.Add(1); n > s.maxCopy.Load() {
		s.maxCopy.Store(n)
	}
	defer func() { s.running.Add(-1); s.finished <- struct{}{} }()
	s.started <- struct{}{}
	<-s.release // deliberately ignores ctx
	<-ctx.Done()
	return nil
}

func TestShutdownTimeoutNamesTheStuckChild(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{})
	st := newStubborn()
	addWorkers(t, s, "a")
	if err := s.AddChild(ChildSpec{ID: "stuck", Start: st.run, ShutdownTimeout: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	addWorkers(t, s, "c")
	mustStart(t, s)
	err := s.Shutdown(time.Second)
	if !errors.Is(err, ErrShutdownTimeout) || !strings.Contains(err.Error(), `"stuck"`) || strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("Shutdown = %v", err)
	}
	if got, want := seq(rec.since(0), EventChildStopped), "child_stopped:c child_stopped:stuck child_stopped:a"; got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if cs, _ := s.FindChild("stuck"); cs.State != ChildStuck {
		t.Fatalf("stuck child state = %v", cs.State)
	}
	if stats := s.Stats(); stats.StuckChildren != 1 || stats.ActiveChildren != 1 {
		t.Fatalf("stats = %+v", stats)
	}
	close(st.release)
	<-st.finished
}

func TestStuckChildIsNeverStartedTwice(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{Strategy: OneForAll})
	st := newStubborn()
	if err := s.AddChild(ChildSpec{ID: "stuck", Start: st.run, ShutdownTimeout: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	ws := addWorkers(t, s, "b")
	mustStart(t, s)
	<-st.started
	mark := rec.len()
	ws["b"].end(t, errBoom)
	rec.waitFor(t, mark, EventChildStarted, "b", 1)
	// "stuck" did not stop: it is reported and not started again…
	if cs, _ := s.FindChild("stuck"); cs.State != ChildStuck || st.starts.Load() != 1 {
		t.Fatalf("state %v, starts %d", cs.State, st.starts.Load())
	}
	if err := s.DeleteChild("stuck"); !errors.Is(err, ErrChildRunning) {
		t.Fatalf("DeleteChild(stuck) = %v", err)
	}
	// …until the first copy ends; then it is started again.
	close(st.release)
	rec.waitFor(t, mark, EventChildStarted, "stuck", 1)
	if m := st.maxCopy.Load(); m != 1 {
		t.Fatalf("%d copies ran at once", m)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	<-st.finished
	<-st.finished
}

func TestHealthCheckFailureRestartsTheChild(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{})
	var sick atomic.Int32 // failures to report
	w := newWorker()
	err := s.AddChild(ChildSpec{ID: "h", Start: w.run, HealthCheckInterval: time.Millisecond,
		HealthCheck: func(ctx context.Context) error {
			if sick.Add(-1) >= 0 {
				return errors.New("sick")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	mustStart(t, s)
	if err := s.StartMonitoring(); err != nil {
		t.Fatal(err)
	}
	if err := s.StartMonitoring(); !errors.Is(err, ErrAlreadyMonitoring) {
		t.Fatalf("second StartMonitoring = %v", err)
	}
	mark := rec.len()
	sick.Store(1)
	evs := rec.waitFor(t, mark, EventChildStarted, "h", 1)
	if got, want := seq(evs, EventHealthCheckFailed, EventChildStopped, EventChildRestarting, EventChildStarted),
		"health_check_failed:h child_stopped:h child_restarting:h child_started:h"; !strings.HasPrefix(got, want) {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if !errors.Is(evs[0].Err, ErrHealthCheckFailed) {
		t.Fatalf("health event error = %v", evs[0].Err)
	}
	if cs, _ := s.FindChild("h"); !errors.Is(cs.LastError, ErrHealthCheckFailed) || cs.Restarts != 1 {
		t.Fatalf("child stats = %+v", cs)
	}
	s.StopMonitoring()
	if err := s.StartMonitoring(); err != nil {
		t.Fatalf("StartMonitoring after StopMonitoring = %v", err)
	}
}

// checkedChild's incarnations implement HealthChecker.
type checkedChild struct{ healthy chan error }

type checkedInc struct {
	Incarnation
	c *checkedChild
}

func (c *checkedChild) Start(ctx context.Context) (Incarnation, error) {
	inc, err := FuncChild(func(ctx context.Context) error { <-ctx.Done(); return nil }).Start(ctx)
	return checkedInc{inc, c}, err
}

func (i checkedInc) HealthCheck(ctx context.Context) error {
	select {
	case err := <-i.c.healthy:
		return err
	default:
		return nil
	}
}

func TestHealthCheckerIncarnationIsChecked(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{HealthCheckInterval: time.Millisecond})
	if err := s.StartMonitoring(); err != nil { // before Start: applies once running
		t.Fatal(err)
	}
	cc := &checkedChild{healthy: make(chan error, 1)}
	if err := s.AddChild(ChildSpec{ID: "proc", Child: cc}); err != nil {
		t.Fatal(err)
	}
	mustStart(t, s)
	mark := rec.len()
	cc.healthy <- errors.New("unhealthy")
	rec.waitFor(t, mark, EventChildStarted, "proc", 1)
	if n := count(rec.since(mark), EventHealthCheckFailed, "proc"); n != 1 {
		t.Fatalf("%d health failures", n)
	}
}

func TestDynamicChildren(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{})
	addWorkers(t, s, "a")
	mustStart(t, s)
	if err := s.AddChild(ChildSpec{ID: "a", Start: newWorker().run}); !errors.Is(err, ErrDuplicateChild) {
		t.Fatalf("duplicate AddChild = %v", err)
	}
	if err := s.AddChild(ChildSpec{ID: "broken", Child: failingChild{}}); !errors.Is(err, ErrStartFailed) {
		t.Fatalf("AddChild(broken) = %v", err)
	}
	if _, err := s.FindChild("broken"); !errors.Is(err, ErrChildNotFound) {
		t.Fatalf("a child that failed to start was kept: %v", err)
	}
	b := newWorker()
	if err := s.AddChild(ChildSpec{ID: "b", Start: b.run}); err != nil {
		t.Fatal(err)
	}
	if cs, _ := s.FindChild("b"); cs.State != ChildRunning {
		t.Fatalf("added child state %v", cs.State)
	}
	if err := s.DeleteChild("b"); !errors.Is(err, ErrChildRunning) {
		t.Fatalf("DeleteChild(running) = %v", err)
	}
	if err := s.TerminateChild("b"); err != nil {
		t.Fatal(err)
	}
	if cs, _ := s.FindChild("b"); cs.State != ChildStopped || b.running.Load() != 0 {
		t.Fatalf("terminated child state %v", cs.State)
	}
	mark := rec.len()
	if err := s.RestartChild("b"); err != nil {
		t.Fatal(err)
	}
	if got := seq(rec.since(mark), EventChildRestarting, EventChildStarted); got != "child_restarting:b child_started:b" {
		t.Fatalf("RestartChild events: %s", got)
	}
	mark = rec.len()
	if err := s.RestartChild("b"); err != nil { // running: stop, then start
		t.Fatal(err)
	}
	if got := seq(rec.since(mark), EventChildStopped, EventChildStarted); got != "child_stopped:b child_started:b" {
		t.Fatalf("RestartChild(running) events: %s", got)
	}
	if err := s.TerminateChild("b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteChild("b"); err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func(string) error{
		"TerminateChild": s.TerminateChild, "RestartChild": s.RestartChild, "DeleteChild": s.DeleteChild,
		"FindChild": func(id string) error { _, err := s.FindChild(id); return err },
	} {
		if err := op("b"); !errors.Is(err, ErrChildNotFound) {
			t.Errorf("%s(deleted) = %v", name, err)
		}
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.RestartChild("a"); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("RestartChild while stopped = %v", err)
	}
	if err := s.AddChild(ChildSpec{ID: "later", Start: newWorker().run}); err != nil {
		t.Fatal(err)
	}
	if err := s.TerminateChild("later"); err != nil {
		t.Fatalf("TerminateChild while stopped = %v", err)
	}
	if err := s.DeleteChild("later"); err != nil {
		t.Fatalf("DeleteChild while stopped = %v", err)
	}
}

func TestStatsValues(t *testing.T) {
	clock := newFakeClock()
	s, rec := newTestSup(t, SupervisorOptions{Strategy: OneForAll, MaxRestarts: 10, Clock: clock})
	ws := addWorkers(t, s, "a", "b", "c")
	if st := s.Stats(); st.Uptime != 0 || st.ActiveChildren != 0 || len(st.Children) != 3 {
		t.Fatalf("stats before start: %+v", st)
	}
	mustStart(t, s)
	clock.Advance(3 * time.Second)
	failedAt := clock.Now()
	mark := rec.len()
	ws["b"].end(t, errBoom)
	rec.waitFor(t, mark, EventChildStarted, "c", 1)
	clock.Advance(2 * time.Second)
	st := s.Stats()
	// One failure is one restart decision in the intensity window, however
	// many children one_for_all restarts.
	if st.TotalRestarts != 3 || st.ActiveChildren != 3 || st.Uptime != 5*time.Second || !st.LastFailure.Equal(failedAt) ||
		st.Intensity != 1 || st.MaxRestarts != 10 || st.MaxSeconds != PresetProduction.Values().MaxSeconds {
		t.Fatalf("stats = %+v", st)
	}
	for i, id := range []string{"a", "b", "c"} {
		cs := st.Children[i]
		if cs.ID != id || cs.State != ChildRunning || cs.Restarts != 1 || !cs.StartedAt.Equal(failedAt) {
			t.Errorf("child %d = %+v", i, cs)
		}
		if wantErr := id == "b"; errors.Is(cs.LastError, errBoom) != wantErr {
			t.Errorf("child %s LastError = %v", id, cs.LastError)
		}
	}
	// The restart leaves the window.
	clock.Advance(time.Duration(st.MaxSeconds)*time.Second + time.Second)
	if st := s.Stats(); st.Intensity != 0 {
		t.Fatalf("intensity after the window = %d, want 0", st.Intensity)
	}
}

func TestBackoffDelaysRestarts(t *testing.T) {
	clock := newFakeClock()
	bo := Backoff{Min: 10 * time.Millisecond, Max: 40 * time.Millisecond, Multiplier: 2, ResetAfter: time.Minute}
	s, rec := newTestSup(t, SupervisorOptions{MaxRestarts: 100, Backoff: bo, Clock: clock})
	ws := addWorkers(t, s, "a")
	mustStart(t, s)
	for i, want := range []time.Duration{10, 20, 40, 40} {
		want *= time.Millisecond
		mark := rec.len()
		ws["a"].end(t, errBoom)
		evs := rec.waitFor(t, mark, EventChildRestarting, "a", 1)
		if d := evs[len(evs)-1].Delay; d != want {
			t.Fatalf("restart %d: delay %v, want %v", i, d, want)
		}
		if cs, _ := s.FindChild("a"); cs.State != ChildRestarting {
			t.Fatalf("state during backoff = %v", cs.State)
		}
		clock.Advance(want - time.Millisecond)
		if cs, _ := s.FindChild("a"); cs.State != ChildRestarting {
			t.Fatalf("restarted before its delay: %v", cs.State)
		}
		clock.Advance(time.Millisecond)
		rec.waitFor(t, mark, EventChildStarted, "a", 1)
	}
	// A stable run starts a new series.
	clock.Advance(time.Minute)
	mark := rec.len()
	ws["a"].end(t, errBoom)
	evs := rec.waitFor(t, mark, EventChildRestarting, "a", 1)
	if d := evs[len(evs)-1].Delay; d != 10*time.Millisecond {
		t.Fatalf("delay after a stable run = %v", d)
	}
	// Shutdown during a backoff delay cancels the pending restart.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if cs, _ := s.FindChild("a"); cs.State != ChildStopped {
		t.Fatalf("state after stop = %v", cs.State)
	}
}

func TestBackoffDelay(t *testing.T) {
	half := func() float64 { return 0.5 }
	tests := map[string]struct {
		b       Backoff
		attempt int
		want    time.Duration
	}{
		"zero min restarts at once":      {NoBackoff, 5, 0},
		"first attempt is min":           {Backoff{Min: time.Second}, 0, time.Second},
		"default multiplier is 2":        {Backoff{Min: time.Second}, 3, 8 * time.Second},
		"capped at max":                  {Backoff{Min: time.Second, Max: 5 * time.Second}, 10, 5 * time.Second},
		"default max is 64×min":          {Backoff{Min: time.Millisecond}, 60, 64 * time.Millisecond},
		"jitter takes a fraction off":    {Backoff{Min: time.Second, Jitter: 0.2}, 0, 900 * time.Millisecond},
		"custom multiplier":              {Backoff{Min: time.Second, Multiplier: 3}, 2, 9 * time.Second},
		"huge attempt does not overflow": {Backoff{Min: time.Second, Max: time.Hour}, 1 << 20, time.Hour},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tt.b.delay(tt.attempt, half); got != tt.want {
				t.Fatalf("delay(%d) = %v, want %v", tt.attempt, got, tt.want)
			}
		})
	}
	if d := (Backoff{Min: time.Second, Jitter: 1}).Delay(0); d < 0 || d > time.Second {
		t.Fatalf("Delay with full jitter = %v", d)
	}
}

func TestInvalidSpecsAndOptions(t *testing.T) {
	fn := func(context.Context) error { return nil }
	specs := map[string]ChildSpec{
		"empty id":               {Start: fn},
		"no start":               {ID: "x"},
		"both start and child":   {ID: "x", Start: fn, Child: failingChild{}},
		"negative timeout":       {ID: "x", Start: fn, ShutdownTimeout: -1},
		"priority on goroutine":  {ID: "x", Start: fn, Priority: ProcessHigh},
		"memory on goroutine":    {ID: "x", Start: fn, MaxMemoryBytes: 1 << 20},
		"bad restart type":       {ID: "x", Start: fn, Restart: 7},
		"bad backoff multiplier": {ID: "x", Start: fn, Backoff: Backoff{Min: 1, Multiplier: 0.5}},
		"bad jitter":             {ID: "x", Start: fn, Backoff: Backoff{Jitter: 2}},
	}
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			if err := NewSupervisor(SupervisorOptions{}).AddChild(spec); !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("AddChild = %v", err)
			}
		})
	}
	if err := NewSupervisor(SupervisorOptions{}).AddChild(ChildSpec{ID: "p", Child: failingChild{}, Priority: ProcessHigh, MaxMemoryBytes: 1}); err != nil {
		t.Fatalf("priority and memory on a non-goroutine child: %v", err)
	}
	bad := NewSupervisor(SupervisorOptions{MaxSeconds: -1})
	if err := bad.Start(); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("Start with bad options = %v", err)
	}
	if err := bad.Serve(context.Background()); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("Serve with bad options = %v", err)
	}
}

func TestSupervisorDefaultsComeFromTheProductionPreset(t *testing.T) {
	s := NewSupervisor(SupervisorOptions{})
	p := PresetProduction.Values()
	o := s.opts
	if o.MaxRestarts != p.MaxRestarts || o.MaxSeconds != p.MaxSeconds || o.ShutdownTimeout != p.ShutdownTimeout ||
		o.HealthCheckInterval != p.HealthCheckInterval || o.Backoff.Min != p.BackoffMin || o.Backoff.Max != p.BackoffMax ||
		o.Backoff.ResetAfter != time.Duration(p.MaxSeconds)*time.Second || o.Name != "supervisor" || o.Strategy != OneForOne {
		t.Fatalf("defaults = %+v", o)
	}
}

func TestServeReturnsNilOnCancelAndRefusesASecondRun(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{})
	addWorkers(t, s, "a")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	rec.waitFor(t, 0, EventChildStarted, "a", 1)
	if err := s.Start(); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("Start while serving = %v", err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	// Served again after it returned.
	mustStart(t, s)
	rec.waitFor(t, 0, EventChildStarted, "a", 2)
}

func TestFuncChildStopTimesOutOnAStubbornGoroutine(t *testing.T) {
	st := newStubborn()
	inc, err := FuncChild(st.run).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if err := inc.Stop(ctx); !errors.Is(err, ErrShutdownTimeout) {
		t.Fatalf("Stop = %v", err)
	}
	if inc.Err() != nil {
		t.Fatal("Err before Done must be nil")
	}
	close(st.release)
	<-inc.Done()
	if err := inc.Stop(context.Background()); err != nil {
		t.Fatalf("Stop after the end = %v", err)
	}
}

func TestEventKindsHaveNames(t *testing.T) {
	for k := EventChildStarted; k <= EventSupervisorGaveUp; k++ {
		if s := k.String(); strings.HasPrefix(s, "EventKind(") || (Event{Kind: k}).String() == "" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if s := EventKind(99).String(); s != "EventKind(99)" {
		t.Errorf("unknown kind = %q", s)
	}
	if s := ChildStuck.String(); s != "stuck" {
		t.Errorf("ChildStuck = %q", s)
	}
}

func TestIntensityWindowSlides(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(s ...float64) []time.Time {
		var ts []time.Time
		for _, x := range s {
			ts = append(ts, t0.Add(time.Duration(x*float64(time.Second))))
		}
		return ts
	}
	tests := map[string]struct {
		max      int
		restarts []time.Time
		exceeded int // index of the first restart that exceeds, -1 for none
	}{
		"zero intensity gives up at once":                       {0, at(0), 0},
		"N within the window are tolerated":                     {3, at(0, 1, 2), -1},
		"N+1 within the window give up":                         {3, at(0, 1, 2, 3), 3},
		"a restart leaves the window after period":              {2, at(0, 5, 10.5), -1},
		"a restart exactly period old still counts (as in OTP)": {2, at(0, 5, 10), 2},
		"spaced restarts never give up":                         {1, at(0, 11, 22, 33, 44), -1},
		"a burst after a quiet spell gives up":                  {2, at(0, 30, 31, 32), 3},
		"the window slides instead of resetting":                {2, at(0, 6, 12, 13), 3},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			in := intensity{max: tt.max, period: 10 * time.Second}
			got := -1
			for i, ts := range tt.restarts {
				if in.add(ts) && got < 0 {
					got = i
				}
			}
			if got != tt.exceeded {
				t.Fatalf("first exceeded at %d, want %d", got, tt.exceeded)
			}
			if len(in.times) > tt.max+1 {
				t.Fatalf("kept %d times", len(in.times))
			}
		})
	}
}

func TestSuperviseBuilder(t *testing.T) {
	fn := func(ctx context.Context) error { <-ctx.Done(); return nil }
	t.Run("order does not matter", func(t *testing.T) {
		a, err := Supervise().Child("x", fn).Strategy(OneForAll).MaxRestarts(5).MaxSeconds(30).Name("n").Build()
		if err != nil {
			t.Fatal(err)
		}
		b, err := Supervise().MaxSeconds(30).Name("n").MaxRestarts(5).Strategy(OneForAll).Child("x", fn).Build()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []*Supervisor{a, b} {
			o := s.opts
			if o.Strategy != OneForAll || o.MaxRestarts != 5 || o.MaxSeconds != 30 || s.Name() != "n" {
				t.Fatalf("options = %+v", o)
			}
			if cs, err := s.FindChild("x"); err != nil || cs.Restart != Permanent {
				t.Fatalf("child = %+v, %v", cs, err)
			}
		}
	})
	t.Run("MaxRestarts(0) means zero restarts", func(t *testing.T) {
		rec := newRecorder()
		w := newWorker()
		s, err := Supervise().MaxRestarts(0).Backoff(NoBackoff).EventHook(rec.hook).
			Logger(nil).Child("w", w.run).Build()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Shutdown(waitLimit) })
		mustStart(t, s)
		w.end(t, errBoom)
		if err := s.Wait(); !errors.Is(err, ErrTooManyRestarts) {
			t.Fatalf("Wait = %v", err)
		}
		if n := count(rec.since(0), EventSupervisorGaveUp, "w"); n != 1 {
			t.Fatalf("%d give-ups", n)
		}
	})
	t.Run("every problem is reported at once", func(t *testing.T) {
		_, err := Supervise().Child("", fn).Child("d", fn).Child("d", fn).MaxRestarts(-2).MaxSeconds(0).Build()
		for _, want := range []error{ErrInvalidSpec, ErrDuplicateChild} {
			if !errors.Is(err, want) {
				t.Errorf("Build = %v, want %v", err, want)
			}
		}
		if n := strings.Count(err.Error(), "\n") + 1; n != 4 {
			t.Errorf("%d problems reported, want 4:\n%v", n, err)
		}
	})
	t.Run("Options and Spec", func(t *testing.T) {
		s, err := Supervise().Options(SupervisorOptions{Name: "o", Strategy: RestForOne}).
			Spec(ChildSpec{ID: "t", Start: fn, Restart: Transient}).Build()
		if err != nil {
			t.Fatal(err)
		}
		if cs, _ := s.FindChild("t"); s.opts.Strategy != RestForOne || cs.Restart != Transient {
			t.Fatalf("options %+v, child %+v", s.opts, cs)
		}
	})
}

func TestRealClockBackoff(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{Backoff: Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}})
	ws := addWorkers(t, s, "a")
	mustStart(t, s)
	for i := 1; i <= 2; i++ {
		ws["a"].end(t, errBoom)
		rec.waitFor(t, 0, EventChildStarted, "a", i+1)
	}
	evs := rec.since(0)
	var delays []time.Duration
	for _, e := range evs {
		if e.Kind == EventChildRestarting {
			delays = append(delays, e.Delay)
		}
	}
	if len(delays) != 2 || delays[0] != time.Millisecond || delays[1] != 2*time.Millisecond {
		t.Fatalf("delays = %v", delays)
	}
}
