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
)

// swapLog records what the versioned children of a test did, in order.
type swapLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *swapLog) add(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *swapLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, ", ")
}

// versioned is a goroutine child labelled with a version. It implements
// StandbyStarter and its incarnations Activator and HealthChecker, and logs
// every step, so a test sees the swap's order.
type versioned struct {
	v         string
	log       *swapLog
	startErr  error
	unhealthy bool
	gate      chan struct{} // when set, StartStandby waits for it…
	entered   chan struct{} // …after closing this
}

type versionedInc struct {
	Incarnation
	c *versioned
}

func (c *versioned) Start(ctx context.Context) (Incarnation, error) { return c.start(ctx, "start") }

func (c *versioned) StartStandby(ctx context.Context) (Incarnation, error) {
	if c.gate != nil {
		close(c.entered)
		select {
		case <-c.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.start(ctx, "standby")
}

func (c *versioned) start(ctx context.Context, how string) (Incarnation, error) {
	if c.startErr != nil {
		c.log.add("%s %s failed", how, c.v)
		return nil, c.startErr
	}
	inc, err := FuncChild(func(ctx context.Context) error {
		<-ctx.Done()
		c.log.add("stop %s", c.v)
		return nil
	}).Start(ctx)
	if err != nil {
		return nil, err
	}
	c.log.add("%s %s", how, c.v)
	return versionedInc{inc, c}, nil
}

func (i versionedInc) Activate() { i.c.log.add("activate %s", i.c.v) }

func (i versionedInc) HealthCheck(context.Context) error {
	i.c.log.add("check %s", i.c.v)
	if i.c.unhealthy {
		return errors.New("not today")
	}
	return nil
}

func TestSwapChild(t *testing.T) {
	tests := []struct {
		name    string
		next    func(l *swapLog) *versioned
		wantErr []error
		wantLog string
		serving string // the version a restart starts afterwards
	}{
		{
			name:    "commits: standby, check, activate, then the old stops",
			next:    func(l *swapLog) *versioned { return &versioned{v: "v2", log: l} },
			wantLog: "start v1, standby v2, check v2, activate v2, stop v1",
			serving: "v2",
		},
		{
			name:    "start failure rolls back",
			next:    func(l *swapLog) *versioned { return &versioned{v: "v2", log: l, startErr: errors.New("bad binary")} },
			wantErr: []error{ErrSwapFailed, ErrStartFailed},
			wantLog: "start v1, standby v2 failed",
			serving: "v1",
		},
		{
			name:    "failed health check rolls back",
			next:    func(l *swapLog) *versioned { return &versioned{v: "v2", log: l, unhealthy: true} },
			wantErr: []error{ErrSwapFailed, ErrHealthCheckFailed},
			wantLog: "start v1, standby v2, check v2, stop v2",
			serving: "v1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rec := newTestSup(t, SupervisorOptions{})
			l := &swapLog{}
			if err := s.AddChild(ChildSpec{ID: "w", Child: &versioned{v: "v1", log: l}}); err != nil {
				t.Fatal(err)
			}
			mustStart(t, s)
			err := s.SwapChild(context.Background(), "w", tt.next(l))
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Fatalf("SwapChild = %v, want an error wrapping %v", err, want)
				}
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("SwapChild = %v", err)
			}
			if got := l.String(); got != tt.wantLog {
				t.Fatalf("log = %q, want %q", got, tt.wantLog)
			}
			st, err := s.FindChild("w")
			if err != nil || st.State != ChildRunning || st.Restarts != 0 {
				t.Fatalf("after the swap: %+v, %v; want running, 0 restarts", st, err)
			}
			kind := EventChildSwapped
			if len(tt.wantErr) > 0 {
				kind = EventSwapFailed
			}
			evs := rec.since(0)
			if count(evs, kind, "w") != 1 || count(evs, EventChildExited, "w") != 0 || count(evs, EventChildRestarting, "w") != 0 {
				t.Fatalf("events:\n%s", render(evs))
			}
			// A restart afterwards starts the version now in place.
			mark := len(l.lines)
			if err := s.RestartChild("w"); err != nil {
				t.Fatal(err)
			}
			l.mu.Lock()
			got := strings.Join(l.lines[mark:], ", ")
			l.mu.Unlock()
			if want := "stop " + tt.serving + ", start " + tt.serving; got != want {
				t.Fatalf("restart after the swap: %q, want %q", got, want)
			}
		})
	}
}

func TestSwapChildOfAStoppedChildReplacesItsChild(t *testing.T) {
	s, _ := newTestSup(t, SupervisorOptions{})
	l := &swapLog{}
	if err := s.AddChild(ChildSpec{ID: "w", Child: &versioned{v: "v1", log: l}}); err != nil {
		t.Fatal(err)
	}
	// Not running yet: the swap only replaces the Child.
	if err := s.SwapChild(context.Background(), "w", &versioned{v: "v2", log: l}); err != nil {
		t.Fatal(err)
	}
	mustStart(t, s)
	if err := s.TerminateChild("w"); err != nil {
		t.Fatal(err)
	}
	if err := s.SwapChild(context.Background(), "w", &versioned{v: "v3", log: l}); err != nil {
		t.Fatal(err)
	}
	if err := s.RestartChild("w"); err != nil {
		t.Fatal(err)
	}
	if got, want := l.String(), "start v2, stop v2, start v3"; got != want {
		t.Fatalf("log = %q, want %q", got, want)
	}
	if err := s.SwapChild(context.Background(), "nope", nil); !errors.Is(err, ErrChildNotFound) {
		t.Fatalf("SwapChild(nope) = %v, want ErrChildNotFound", err)
	}
}

func TestSwapChildRefusesASecondSwapAndKeepsSupervising(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{})
	l := &swapLog{}
	if err := s.AddChild(ChildSpec{ID: "w", Child: &versioned{v: "v1", log: l}}); err != nil {
		t.Fatal(err)
	}
	ws := addWorkers(t, s, "other")
	mustStart(t, s)
	slow := &versioned{v: "v2", log: l, gate: make(chan struct{}), entered: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- s.SwapChild(context.Background(), "w", slow) }()
	<-slow.entered
	// While the first swap's start is blocked, a second one is refused…
	if err := s.SwapChild(context.Background(), "w", nil); !errors.Is(err, ErrSwapInProgress) {
		t.Fatalf("second SwapChild = %v, want ErrSwapInProgress", err)
	}
	// …and the supervisor still handles its other children.
	mark := rec.len()
	ws["other"].end(t, errBoom)
	rec.waitFor(t, mark, EventChildStarted, "other", 1)
	close(slow.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(l.String(), "standby v2, check v2, activate v2, stop v1") {
		t.Fatalf("log = %q", l.String())
	}
}

func TestSwapChildAbortsWhenTheSupervisorStops(t *testing.T) {
	s, _ := newTestSup(t, SupervisorOptions{})
	l := &swapLog{}
	if err := s.AddChild(ChildSpec{ID: "w", Child: &versioned{v: "v1", log: l}}); err != nil {
		t.Fatal(err)
	}
	mustStart(t, s)
	slow := &versioned{v: "v2", log: l, gate: make(chan struct{}), entered: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- s.SwapChild(context.Background(), "w", slow) }()
	<-slow.entered // the swap holds the child: stop the supervisor
	if err := s.Shutdown(waitLimit); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrSwapFailed) {
		t.Fatalf("SwapChild during shutdown = %v, want ErrSwapFailed", err)
	}
}

// TestSwapChildWhenTheOldIncarnationDiesDuringTheSwap: the old
// incarnation crashes while the new one starts; the supervisor restarts
// it as usual, and the swap then replaces that restarted incarnation.
func TestSwapChildWhenTheOldIncarnationDiesDuringTheSwap(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{})
	ws := addWorkers(t, s, "w")
	mustStart(t, s)
	l := &swapLog{}
	slow := &versioned{v: "v2", log: l, gate: make(chan struct{}), entered: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- s.SwapChild(context.Background(), "w", slow) }()
	<-slow.entered
	mark := rec.len()
	ws["w"].end(t, errBoom)
	rec.waitFor(t, mark, EventChildStarted, "w", 1) // the restart
	close(slow.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := l.String(), "standby v2, check v2, activate v2"; got != want {
		t.Fatalf("log = %q, want %q", got, want)
	}
	st, err := s.FindChild("w")
	if err != nil || st.State != ChildRunning || st.Restarts != 1 {
		t.Fatalf("after the swap: %+v, %v; want running after 1 restart", st, err)
	}
	// The restarted incarnation of the old child was stopped by the swap.
	for deadline := time.Now().Add(waitLimit); ws["w"].running.Load() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the restarted old incarnation still runs")
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}

// TestShutdownWaitsForTheReplacedIncarnation: a supervisor stopped while a
// swap still stops the incarnation it replaced returns only after that
// incarnation ended.
func TestShutdownWaitsForTheReplacedIncarnation(t *testing.T) {
	s, rec := newTestSup(t, SupervisorOptions{})
	release := make(chan struct{})
	var oldEnded atomic.Bool
	first := true
	var mu sync.Mutex
	if err := s.AddChild(ChildSpec{ID: "w", Start: func(ctx context.Context) error {
		mu.Lock()
		slow := first
		first = false
		mu.Unlock()
		<-ctx.Done()
		if slow { // the incarnation the swap replaces takes its time to stop
			<-release
			oldEnded.Store(true)
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	mustStart(t, s)
	done := make(chan error, 1)
	go func() { done <- s.SwapChild(context.Background(), "w", nil) }()
	rec.waitFor(t, 0, EventChildSwapped, "w", 1)
	// The swap now waits for the old incarnation. Let it go a little later
	// (pacing: if Shutdown did not wait, it would return before this).
	time.AfterFunc(100*time.Millisecond, func() { close(release) })
	if err := s.Shutdown(waitLimit); err != nil {
		t.Fatal(err)
	}
	if !oldEnded.Load() {
		t.Fatal("Shutdown returned while the replaced incarnation still ran")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
