package process

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/protocol"
)

// bare is a plugin run by a bare go-plugin client: no supervisor, no
// process group, no checksum, nothing but NewClient → Client() → Dispense →
// Run until the stream says ready.
type bare struct {
	client *goplugin.Client
	run    *protocol.Run
}

func launchBare(b *testing.B) *bare {
	b.Helper()
	cfg := protocol.NewClientConfig(exec.Command(pluginPath("echo")), hclog.NewNullLogger())
	client := goplugin.NewClient(cfg)
	rpc, err := client.Client()
	if err != nil {
		b.Fatal(err)
	}
	raw, err := rpc.Dispense(protocol.PluginName)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	run, err := raw.(*protocol.Client).Run(ctx, protocol.RunRequest{WorkerID: "bare", Incarnation: 1})
	if err != nil {
		b.Fatal(err)
	}
	return &bare{client: client, run: run}
}

func (p *bare) pid() int {
	id, _ := strconv.Atoi(p.client.ID())
	return id
}

// bareRelaunch SIGKILLs p, waits for its open Run stream to break (the
// fastest crash signal) and launches a replacement up to its first answered
// RPC; it returns the replacement and the time from the kill. The old
// client's cleanup is not timed.
func bareRelaunch(b *testing.B, p *bare) (*bare, time.Duration) {
	b.Helper()
	began := time.Now()
	syscall.Kill(p.pid(), syscall.SIGKILL)
	<-p.run.Done()
	np := launchBare(b)
	took := time.Since(began)
	p.client.Kill()
	return np, took
}

// percentiles reports p50 and p99 of samples under the given name prefix.
func percentiles(b *testing.B, prefix string, samples []time.Duration) (p50 time.Duration) {
	b.Helper()
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	p50 = samples[len(samples)/2]
	p99 := samples[min(len(samples)-1, len(samples)*99/100)]
	b.ReportMetric(float64(p50.Microseconds())/1000, prefix+"p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, prefix+"p99-ms")
	return p50
}

// BenchmarkBareRelaunch is the baseline: SIGKILL of a plugin run by a bare
// go-plugin client → its stream breaks → a fresh bare client's plugin
// answers its first RPC.
func BenchmarkBareRelaunch(b *testing.B) {
	var samples []time.Duration
	p := launchBare(b)
	for b.Loop() {
		var d time.Duration
		p, d = bareRelaunch(b, p)
		samples = append(samples, d)
	}
	syscall.Kill(p.pid(), syscall.SIGKILL)
	p.client.Kill()
	percentiles(b, "", samples)
}

// BenchmarkCrashToServing SIGKILLs a supervised echo worker and measures
// until the supervisor's replacement has answered its first RPC (its Start
// returned: the Run stream said ready). Each iteration also runs one bare
// launch, so the ratio is taken in the same run under the same load.
func BenchmarkCrashToServing(b *testing.B) {
	events := make(chan sdk.Event, 1024)
	sup := sdk.NewSupervisor(sdk.SupervisorOptions{
		Name: "bench", MaxRestarts: 1 << 30, MaxSeconds: 1, Backoff: sdk.NoBackoff,
		EventHook: func(e sdk.Event) {
			if e.Kind == sdk.EventChildStarted {
				select {
				case events <- e:
				default:
				}
			}
		},
	})
	child := New(Spec{ID: "echo", Path: pluginPath("echo"), TempDir: shortTempDir(b)}, nil)
	if err := sup.AddChild(sdk.ChildSpec{ID: "echo", Child: child, Backoff: sdk.NoBackoff, ShutdownTimeout: 5 * time.Second}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- sup.Serve(ctx) }()
	defer func() {
		cancel()
		<-served
	}()
	next := func() sdk.Event {
		select {
		case e := <-events:
			return e
		case <-time.After(10 * time.Second):
			b.Fatal("no start within 10s")
			return sdk.Event{}
		}
	}
	next()
	bp := launchBare(b)
	var crash, bare []time.Duration
	for b.Loop() {
		pid := child.Current().PID()
		began := time.Now()
		syscall.Kill(pid, syscall.SIGKILL)
		e := next()
		crash = append(crash, time.Since(began))
		if e.PID == pid {
			b.Fatalf("restarted incarnation has the old pid %d", pid)
		}
		b.StopTimer()
		var d time.Duration
		bp, d = bareRelaunch(b, bp)
		bare = append(bare, d)
		b.StartTimer()
	}
	syscall.Kill(bp.pid(), syscall.SIGKILL)
	bp.client.Kill()
	p50 := percentiles(b, "", crash)
	if bare50 := percentiles(b, "bare-", bare); bare50 > 0 {
		b.ReportMetric(float64(p50)/float64(bare50), "x-bare-p50")
	}
}

// rssKB returns this process's resident set size in KiB.
func rssKB(b *testing.B) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkHostMemoryPerWorker starts N supervised echo workers and reports
// the host's RSS growth per worker (KiB) and goroutines per worker.
func BenchmarkHostMemoryPerWorker(b *testing.B) {
	// Warm up once (gRPC, go-plugin and protobuf initialise lazily) so that
	// the 1-worker case measures a worker, not package initialisation.
	warm := New(Spec{ID: "warm", Path: pluginPath("echo"), TempDir: shortTempDir(b)}, nil)
	inc, err := warm.Start(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	inc.Stop(ctx)
	cancel()
	for _, n := range []int{1, 50, 200} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			var kb, gor float64
			for b.Loop() {
				runtime.GC()
				debug.FreeOSMemory()
				before, g0 := rssKB(b), runtime.NumGoroutine()
				sup := sdk.NewSupervisor(sdk.SupervisorOptions{Name: "mem", Backoff: sdk.NoBackoff})
				dir := shortTempDir(b)
				for i := range n {
					id := fmt.Sprintf("echo_%d", i)
					c := New(Spec{ID: id, Path: pluginPath("echo"), TempDir: dir}, nil)
					if err := sup.AddChild(sdk.ChildSpec{ID: id, Child: c, ShutdownTimeout: 5 * time.Second}); err != nil {
						b.Fatal(err)
					}
				}
				if err := sup.Start(); err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				kb = float64(rssKB(b)-before) / float64(n)
				gor = float64(runtime.NumGoroutine()-g0) / float64(n)
				if err := sup.Shutdown(30 * time.Second); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(kb, "host-KiB/worker")
			b.ReportMetric(gor, "goroutines/worker")
		})
	}
}
