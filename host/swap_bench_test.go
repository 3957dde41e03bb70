package host

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/sdk"
)

// arrivals records when the collector received each forwarded message.
type arrivals struct {
	mu sync.Mutex
	at []time.Time
}

func (a *arrivals) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.at)
}

// maxGap is the longest time between consecutive arrivals from index i on.
func (a *arrivals) maxGap(i int) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var g time.Duration
	for j := max(i, 1); j < len(a.at); j++ {
		g = max(g, a.at[j].Sub(a.at[j-1]))
	}
	return g
}

// BenchmarkSwapPause measures the processing pause a hot swap causes
// under load against the pause of a crash restart, in the same run: the
// host sends the counter worker numbered messages (2 per ms) that it
// forwards to a collector; each iteration hot-swaps the counter's binary
// (Host.Swap, v1 ↔ v2 alternately), then SIGKILLs the counter, and
// measures for each the longest gap between two consecutive completions
// from just before the event until 300 completions after it. The headline
// is the ratio of the medians (target ≤ 2).
//
//	go test -run '^$' -bench SwapPause -benchtime 10x -count 5 ./host/
func BenchmarkSwapPause(b *testing.B) {
	bin := swappable(b)
	r := serveHost(b, `
app "b" {
  max_restarts = 1000
  worker "counter" {
    plugin = "`+bin+`"
    config { forward_to = "collector" }
    mailbox { capacity = 1000000 }
    backoff {
      min = "0s"
      max = "0s"
    }
  }`+collectorWorker+`
}`, Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Wait for both workers.
	if _, err := r.h.Call(ctx, "counter", sdk.Msg("version?").MustBuild(), 30*time.Second); err != nil {
		b.Fatal(err)
	}
	var arr arrivals
	collector := mustMailbox(b, r.h, "collector")
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		for {
			if _, err := collector.ReceiveContext(ctx); err != nil {
				return
			}
			arr.mu.Lock()
			arr.at = append(arr.at, time.Now())
			arr.mu.Unlock()
		}
	})
	var sent atomic.Int64
	wg.Go(func() { _ = numbered(ctx, r.h, "counter", 1<<30, &sent) })

	// measure runs event and returns the longest gap between completions
	// from just before it until 300 completions after it.
	measure := func(event func()) time.Duration {
		for n := arr.len(); arr.len() < n+100; { // steady flow first
			if ctx.Err() != nil {
				b.Fatal("stopped")
			}
			time.Sleep(time.Millisecond) // polling the arrivals, bounded by the flow
		}
		mark := arr.len() - 1
		event()
		deadline := time.Now().Add(20 * time.Second)
		for n := arr.len(); arr.len() < n+300; {
			if time.Now().After(deadline) {
				b.Fatal("processing did not resume within 20s")
			}
			time.Sleep(time.Millisecond)
		}
		return arr.maxGap(mark)
	}
	versions := []string{v2(), pluginDir() + "/counter"}
	var swaps, crashes []time.Duration
	b.ResetTimer()
	for i := range b.N {
		deploy(b, bin, versions[i%2])
		swaps = append(swaps, measure(func() {
			if err := r.h.Swap(ctx, "counter"); err != nil {
				b.Fatal(err)
			}
		}))
		crashes = append(crashes, measure(func() {
			pid := r.h.Worker("counter").Current().PID()
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				b.Fatal(err)
			}
		}))
	}
	b.StopTimer()
	b.Logf("swap gaps %v; crash gaps %v", swaps, crashes)
	med := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(med(swaps)), "swap-gap-p50-ms")
	b.ReportMetric(ms(slices.Max(swaps)), "swap-gap-max-ms")
	b.ReportMetric(ms(med(crashes)), "crash-gap-p50-ms")
	b.ReportMetric(float64(med(swaps))/float64(med(crashes)), "ratio-p50")
}
