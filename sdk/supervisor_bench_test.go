package sdk

import (
	"context"
	"testing"
	"time"
)

// BenchmarkRestartLatency measures, in-process, the time from a child's
// failure (its function returns an error) to its replacement running (the
// new incarnation's function has been entered), one_for_one, no backoff.
func BenchmarkRestartLatency(b *testing.B) {
	fail := make(chan struct{})
	running := make(chan struct{})
	s := NewSupervisor(SupervisorOptions{Name: "bench", MaxRestarts: b.N + 10, MaxSeconds: 3600, Backoff: NoBackoff})
	err := s.AddChild(ChildSpec{ID: "w", Start: func(ctx context.Context) error {
		select {
		case running <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		select {
		case <-fail:
			return errBoom
		case <-ctx.Done():
			return nil
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	<-running
	b.ResetTimer()
	for range b.N {
		fail <- struct{}{}
		<-running
	}
	b.StopTimer()
	if err := s.Shutdown(time.Second); err != nil {
		b.Fatal(err)
	}
	if got := s.Stats().TotalRestarts; got != b.N {
		b.Fatalf("%d restarts, want %d", got, b.N)
	}
}
