package sdk

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestAppHealthCheckRestartsAnUnhealthyPoolMember(t *testing.T) {
	a, rec, _ := newTestApp(t, PresetTesting) // health checks every 100 ms
	var sick atomic.Bool
	a.WorkerPool("h", func(ctx context.Context) error { <-ctx.Done(); return nil }, 2).
		HealthCheck("h", func(context.Context) error {
			if sick.Load() {
				return errors.New("sick")
			}
			return nil
		})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if cs, _ := a.Supervisor().FindChild("h_1"); cs.State != ChildRunning {
		t.Fatalf("h_1 = %+v", cs)
	}
	mark := rec.len()
	sick.Store(true)
	for _, e := range rec.waitFor(t, mark, EventHealthCheckFailed, "", 1) {
		if e.Kind == EventHealthCheckFailed && !errors.Is(e.Err, ErrHealthCheckFailed) {
			t.Fatalf("event %v does not wrap ErrHealthCheckFailed", e)
		}
	}
	// The failed member is restarted (or, past the testing preset's
	// intensity of 1, the app gives up): either way it was stopped.
	rec.waitFor(t, mark, EventChildStopped, "", 1)
}

func TestAppHealthCheckForAnUnknownWorkerFailsBuild(t *testing.T) {
	a := NewApp().Worker("w", func(ctx context.Context) error { return nil }).
		HealthCheck("nope", func(context.Context) error { return nil })
	if err := a.Build(); !errors.Is(err, ErrChildNotFound) {
		t.Fatalf("Build = %v, want ErrChildNotFound", err)
	}
}
