package sdk

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// killedChild is a child whose Stop behaves like a process that ignored its
// stop request and had to be killed: the incarnation ends, but Stop reports
// the shutdown timeout.
type killedChild struct{}

type killedInc struct{ done chan struct{} }

func (killedChild) Start(context.Context) (Incarnation, error) {
	return &killedInc{done: make(chan struct{})}, nil
}
func (i *killedInc) Done() <-chan struct{} { return i.done }
func (i *killedInc) Err() error            { return nil }
func (i *killedInc) Stop(context.Context) error {
	close(i.done)
	return errors.New("killed after its shutdown timeout")
}

func TestShutdownReportsAChildThatHadToBeKilled(t *testing.T) {
	s, _ := newTestSup(t, SupervisorOptions{})
	addWorkers(t, s, "a")
	if err := s.AddChild(ChildSpec{ID: "hard", Child: killedChild{}, ShutdownTimeout: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	mustStart(t, s)
	err := s.Shutdown(time.Second)
	if !errors.Is(err, ErrShutdownTimeout) || !strings.Contains(err.Error(), `"hard"`) {
		t.Fatalf("Shutdown = %v, want ErrShutdownTimeout naming \"hard\"", err)
	}
	if cs, _ := s.FindChild("hard"); cs.State != ChildStopped {
		t.Fatalf("killed child state = %v, want stopped (it is gone)", cs.State)
	}
	if st := s.Stats(); st.StuckChildren != 0 || st.ActiveChildren != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestNestedShutdownTimeoutReachesTheRoot(t *testing.T) {
	inner := NewSupervisor(SupervisorOptions{Name: "inner"})
	st := newStubborn()
	if err := inner.AddChild(ChildSpec{ID: "stuck", Start: st.run, ShutdownTimeout: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	outer, _ := newTestSup(t, SupervisorOptions{Name: "outer"})
	if err := outer.AddChild(ChildSpec{ID: "inner", Child: inner.AsChild(), ShutdownTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	mustStart(t, outer)
	<-st.started
	err := outer.Shutdown(2 * time.Second)
	if !errors.Is(err, ErrShutdownTimeout) || !strings.Contains(err.Error(), `"stuck"`) {
		t.Fatalf("outer Shutdown = %v, want ErrShutdownTimeout naming \"stuck\"", err)
	}
	close(st.release)
	<-st.finished
}

// flipChild starts once, then fails every later start.
type flipChild struct {
	first *worker
	n     int
}

func (c *flipChild) Start(ctx context.Context) (Incarnation, error) {
	c.n++
	if c.n == 1 {
		return FuncChild(c.first.run).Start(ctx)
	}
	return nil, errors.New("binary gone")
}

func TestBackoffKeepsGrowingWhileStartsFail(t *testing.T) {
	clock := newFakeClock()
	bo := Backoff{Min: 10 * time.Millisecond, Max: time.Second, Multiplier: 2, ResetAfter: 5 * time.Millisecond}
	s, rec := newTestSup(t, SupervisorOptions{MaxRestarts: 100, MaxSeconds: 3600, Backoff: bo, Clock: clock})
	fc := &flipChild{first: newWorker()}
	if err := s.AddChild(ChildSpec{ID: "a", Child: fc}); err != nil {
		t.Fatal(err)
	}
	mustStart(t, s)
	clock.Advance(time.Second) // a long, stable first run
	fc.first.end(t, errBoom)
	for i, want := range []time.Duration{10, 20, 40, 80} {
		want *= time.Millisecond
		evs := rec.waitFor(t, 0, EventChildRestarting, "a", i+1)
		if d := evs[len(evs)-1].Delay; d != want {
			t.Fatalf("restart %d: delay %v, want %v", i, d, want)
		}
		clock.Advance(want) // fires the plan: the start fails, the next delay is armed
	}
}
