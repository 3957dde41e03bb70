package metrics

import (
	"strconv"
	"testing"
	"time"

	"github.com/vigil-run/vigil/sdk"
)

// BenchmarkObserveDelivery is the cost the bridge pays per acknowledgement.
func BenchmarkObserveDelivery(b *testing.B) {
	m := New(nil)
	ids := make([]string, 16)
	for i := range ids {
		ids[i] = "w" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.ObserveDelivery(ids[i%len(ids)], time.Duration(i%5000)*time.Microsecond)
			i++
		}
	})
	if s := m.deliveryLatency.WithLabelValues("w0"); s == nil {
		b.Fatal("no series")
	}
}

// BenchmarkObserve is the cost the event hook pays per lifecycle event (a
// crash-restart cycle of three events per iteration).
func BenchmarkObserve(b *testing.B) {
	m := New(nil)
	t0 := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		m.Observe(sdk.Event{Kind: sdk.EventChildExited, Supervisor: "app", Child: "a", Time: at})
		m.Observe(sdk.Event{Kind: sdk.EventChildRestarting, Supervisor: "app", Child: "a", Time: at})
		m.Observe(sdk.Event{Kind: sdk.EventChildStarted, Supervisor: "app", Child: "a", Time: at.Add(time.Millisecond)})
	}
	if !m.restartOf["a"] {
		b.Fatal("no restart latency recorded")
	}
}
