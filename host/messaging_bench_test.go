package host

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigil-run/vigil/host/process"
	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/protocol"
)

// Benchmarks of the mailbox bridge against its baseline, a raw stream
// through go-plugin: the rawbench plugin (testdata/rawbench) on the same
// broker connection, the same gRPC stream and the same frames, without
// mailboxes, SDK or acknowledgements. Payloads are 64 bytes. The headline
// is BenchmarkBridgeVsRaw, which alternates ours and the baseline in one
// loop and reports the ratios:
//
//	go test -run '^$' -bench BridgeVsRaw -benchtime 6x -count 5 ./host/
//
// The others measure one side each (use -benchtime 300ms):
//
//	go test -run '^$' -bench 'Bridge(Throughput|CallRoundTrip|HostCallRoundTrip)|Raw' -benchtime 300ms ./host/
//
// Profiles: go test's -cpuprofile covers the host; with
// VIGIL_BENCH_PROFILES=<dir> every plugin of these benchmarks writes its
// own CPU profile to <dir>/<worker>.prof (sink, echo, caller, raw).

var payload64 = make([]byte, 64)

// envBenchProfiles names the environment variable that, set to a
// directory, makes the benchmarks' plugins write CPU profiles there
// (<worker>.prof, see protocol.EnvCPUProfile): the host's own profile
// comes from go test -cpuprofile.
const envBenchProfiles = "VIGIL_BENCH_PROFILES"

// profileEnv is the environment that profiles worker, or nil.
func profileEnv(worker string) map[string]string {
	if dir := os.Getenv(envBenchProfiles); dir != "" {
		return map[string]string{protocol.EnvCPUProfile: filepath.Join(dir, worker+".prof")}
	}
	return nil
}

// profiled replaces every {PROF:<worker>} in an app definition by an env
// block that profiles that worker, or by nothing.
func profiled(app string) string {
	dir := os.Getenv(envBenchProfiles)
	for {
		i := strings.Index(app, "{PROF:")
		if i < 0 {
			return app
		}
		j := i + strings.IndexByte(app[i:], '}')
		env := ""
		if dir != "" {
			env = fmt.Sprintf("env = { %s = %q }", protocol.EnvCPUProfile, filepath.Join(dir, app[i+6:j]+".prof"))
		}
		app = app[:i] + env + app[j+1:]
	}
}

// BenchmarkBridgeThroughput: the host queues b.N messages in a worker's
// mailbox; the worker (counter, no work per message) receives them with
// Inbox().Recv (each acknowledged by the next Recv). Measured until the
// host mailbox counted the last acknowledgement. Sub-benchmarks: the
// default credit window (256) and a window of 64.
func BenchmarkBridgeThroughput(b *testing.B) {
	b.Run("window=256", func(b *testing.B) { benchBridgeThroughput(b, 0) })
	b.Run("window=64", func(b *testing.B) { benchBridgeThroughput(b, 64) })
}

func benchBridgeThroughput(b *testing.B, window int) {
	r := serveHost(b, profiled(`
app "b" {
  worker "sink" {
    plugin = "{P}/counter"
    {PROF:sink}
    mailbox { capacity = 1000000 }
  }
}`), Options{MailboxWindow: window}, nil)
	mb := mustMailbox(b, r.h, "sink")
	ctx := context.Background()
	// Warm the path (and wait for the worker's first receive).
	warm := uint64(1000)
	for range warm {
		if err := mb.SendContext(ctx, sdk.Msg(payload64).MustBuild()); err != nil {
			b.Fatal(err)
		}
	}
	waitAcked(b, mb, warm)
	msgs := make([]*sdk.Message, b.N)
	for i := range msgs {
		msgs[i] = sdk.Msg(payload64).MustBuild()
	}
	b.ResetTimer()
	begin := time.Now()
	for _, m := range msgs {
		if err := mb.SendContext(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	waitAcked(b, mb, warm+uint64(b.N))
	elapsed := time.Since(begin)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// waitAcked spins (with short sleeps) until mb counted n acks, for 30 s at
// most.
func waitAcked(b *testing.B, mb *sdk.Mailbox, n uint64) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for mb.Stats().MessagesAcked < n {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d messages acknowledged after 30s: %+v", mb.Stats().MessagesAcked, n, mb.Stats())
		}
		time.Sleep(50 * time.Microsecond) // polling with a deadline
	}
}

// rawBench is a rawbench plugin process with its host stream.
type rawBench struct {
	s    *protocol.HostStream
	acks chan uint64
	stop func()
}

func startRaw(b *testing.B) *rawBench {
	b.Helper()
	streams := make(chan *protocol.HostStream, 1)
	release := make(chan struct{})
	child := process.New(process.Spec{
		ID: "raw", Path: pluginDir() + "/rawbench", TempDir: shortTempDir(b), Env: profileEnv("raw"),
		Mailbox: process.MailboxFunc(func(uint64) protocol.MailboxHandler {
			return func(ctx context.Context, s *protocol.HostStream) error {
				streams <- s
				select {
				case <-ctx.Done():
				case <-release:
				}
				return nil
			}
		}),
	}, hclog.NewNullLogger())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inc, err := child.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	rb := &rawBench{acks: make(chan uint64, 1024)}
	select {
	case rb.s = <-streams:
	case <-ctx.Done():
		b.Fatal("rawbench did not open its stream")
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			u, err := rb.s.Recv()
			if err != nil {
				return
			}
			for _, a := range u.Acks {
				rb.acks <- a
			}
		}
	}()
	rb.stop = func() {
		close(release)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = inc.Stop(sctx)
		<-readerDone
	}
	return rb
}

func (rb *rawBench) waitAck(b *testing.B, tag uint64) {
	b.Helper()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case a := <-rb.acks:
			if a == tag {
				return
			}
		case <-t.C:
			b.Fatalf("rawbench did not acknowledge %d", tag)
		}
	}
}

func rawDelivery(tag uint64, id string) protocol.Delivery {
	return protocol.Delivery{Tag: tag, Msg: protocol.Envelope{ID: id, Sender: "bench", Payload: payload64}}
}

// benchRawThroughput streams b.N deliveries, perFrame per frame, and
// waits for the plugin to have read the last one.
func benchRawThroughput(b *testing.B, perFrame int) {
	rb := startRaw(b)
	defer rb.stop()
	b.ResetTimer()
	begin := time.Now()
	tag := uint64(0)
	for sent := 0; sent < b.N; {
		n := min(perFrame, b.N-sent)
		d := &protocol.Down{Deliveries: make([]protocol.Delivery, n)}
		for i := range n {
			tag++
			id := strconv.FormatUint(tag, 10) // ids of the bridge's size
			if sent+i == b.N-1 {
				id = "sync"
			}
			d.Deliveries[i] = rawDelivery(tag, id)
		}
		if err := rb.s.Send(d); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	rb.waitAck(b, tag)
	elapsed := time.Since(begin)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkRawStreamThroughput is the baseline of BenchmarkBridgeThroughput:
// one delivery per frame, and 64 per frame.
func BenchmarkRawStreamThroughput(b *testing.B) {
	b.Run("unbatched", func(b *testing.B) { benchRawThroughput(b, 1) })
	b.Run("batched64", func(b *testing.B) { benchRawThroughput(b, 64) })
}

// reportLatency reports p50 and p99 in microseconds.
func reportLatency(b *testing.B, samples []time.Duration) {
	b.Helper()
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	p50 := samples[len(samples)/2]
	p99 := samples[min(len(samples)-1, len(samples)*99/100)]
	b.ReportMetric(float64(p50.Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(p99.Nanoseconds())/1000, "p99-µs")
}

// BenchmarkBridgeCallRoundTrip: worker → worker request/reply. The
// producer (mode bench) makes b.N sdk.Runtime.Call round trips of a
// 64-byte payload to echo, each through the host: caller → host → echo's
// mailbox → echo → Reply → host → the caller's waiting call. The times
// are measured in the caller.
// callBenchApp is the app of the round-trip benchmarks: a caller (producer
// in bench mode) and echo, which answers its calls.
const callBenchApp = `
app "b" {
  worker "echo" {
    plugin = "{P}/echo"
    {PROF:echo}
    config { interval = "1h" }
  }
  worker "caller" {
    plugin = "{P}/producer"
    {PROF:caller}
    config {
      mode = "bench"
      to   = "echo"
    }
  }
}`

func BenchmarkBridgeCallRoundTrip(b *testing.B) {
	r := serveHost(b, profiled(callBenchApp), Options{}, nil)
	ctx := context.Background()
	// Warm up, which also waits for both workers.
	if _, err := r.h.Call(ctx, "caller", sdk.Msg("go:200").MustBuild(), 30*time.Second); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	rep, err := r.h.Call(ctx, "caller", sdk.Msg(fmt.Sprintf("go:%d", b.N)).MustBuild(), 60*time.Second)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	var ns []int64
	if err := json.Unmarshal(rep.Payload(), &ns); err != nil || len(ns) != b.N {
		b.Fatalf("bad bench reply (%d samples): %v", len(ns), err)
	}
	samples := make([]time.Duration, len(ns))
	for i, n := range ns {
		samples[i] = time.Duration(n)
	}
	reportLatency(b, samples)
}

// BenchmarkBridgeHostCallRoundTrip: host → worker request/reply, the
// bridge's own cost on the baseline's two stream hops: Host.Call to echo
// (host mailbox → echo → Reply → the host's waiting call).
func BenchmarkBridgeHostCallRoundTrip(b *testing.B) {
	r := serveHost(b, profiled(`
app "b" {
  worker "echo" {
    plugin = "{P}/echo"
    config { interval = "1h" }
  }
}`), Options{}, nil)
	ctx := context.Background()
	for range 200 { // warm up, which also waits for echo
		if _, err := r.h.Call(ctx, "echo", sdk.Msg(payload64).MustBuild(), 30*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		m := sdk.Msg(payload64).MustBuild()
		begin := time.Now()
		if _, err := r.h.Call(ctx, "echo", m, 5*time.Second); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(begin))
	}
	b.StopTimer()
	reportLatency(b, samples)
}

// BenchmarkRawPingPong is the baseline of BenchmarkBridgeCallRoundTrip:
// one host → plugin → host round trip of a 64-byte delivery over the raw
// go-plugin stream.
func BenchmarkRawPingPong(b *testing.B) {
	rb := startRaw(b)
	defer rb.stop()
	for i := range 200 { // warm up
		if err := rb.s.Send(&protocol.Down{Deliveries: []protocol.Delivery{rawDelivery(uint64(i+1), "sync")}}); err != nil {
			b.Fatal(err)
		}
		rb.waitAck(b, uint64(i+1))
	}
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		tag := uint64(1000 + i)
		begin := time.Now()
		if err := rb.s.Send(&protocol.Down{Deliveries: []protocol.Delivery{rawDelivery(tag, "sync")}}); err != nil {
			b.Fatal(err)
		}
		rb.waitAck(b, tag)
		samples = append(samples, time.Since(begin))
	}
	b.StopTimer()
	reportLatency(b, samples)
}

// BenchmarkBridgeVsRaw measures ours and the baseline alternately in the
// same loop (each iteration: a chunk through the bridge, then the same
// through the raw stream), so both see the same machine load, and reports
// the ratios. Run it with -benchtime=Nx.
func BenchmarkBridgeVsRaw(b *testing.B) {
	b.Run("throughput", func(b *testing.B) {
		const chunk = 20000
		r := serveHost(b, profiled(`
app "b" {
  worker "sink" {
    plugin = "{P}/counter"
    {PROF:sink}
    mailbox { capacity = 1000000 }
  }
}`), Options{}, nil)
		mb := mustMailbox(b, r.h, "sink")
		rb := startRaw(b)
		defer rb.stop()
		ctx := context.Background()
		acked := uint64(0)
		send := func(n int) time.Duration {
			msgs := make([]*sdk.Message, n)
			for i := range msgs {
				msgs[i] = sdk.Msg(payload64).MustBuild()
			}
			begin := time.Now()
			for _, m := range msgs {
				if err := mb.SendContext(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
			acked += uint64(n)
			waitAcked(b, mb, acked)
			return time.Since(begin)
		}
		tag := uint64(0)
		raw := func(n, perFrame int) time.Duration {
			begin := time.Now()
			for sent := 0; sent < n; {
				k := min(perFrame, n-sent)
				d := &protocol.Down{Deliveries: make([]protocol.Delivery, k)}
				for i := range k {
					tag++
					id := strconv.FormatUint(tag, 10)
					if sent+i == n-1 {
						id = "sync"
					}
					d.Deliveries[i] = rawDelivery(tag, id)
				}
				if err := rb.s.Send(d); err != nil {
					b.Fatal(err)
				}
				sent += k
			}
			rb.waitAck(b, tag)
			return time.Since(begin)
		}
		send(chunk) // warm-up, waits for the worker
		raw(chunk, 64)
		var ours, unbatched, batched time.Duration
		b.ResetTimer()
		for b.Loop() {
			ours += send(chunk)
			unbatched += raw(chunk, 1)
			batched += raw(chunk, 64)
		}
		n := float64(b.N * chunk)
		b.ReportMetric(n/ours.Seconds(), "ours-msgs/s")
		b.ReportMetric(n/unbatched.Seconds(), "raw1-msgs/s")
		b.ReportMetric(n/batched.Seconds(), "raw64-msgs/s")
		b.ReportMetric(unbatched.Seconds()/ours.Seconds(), "ratio-vs-raw1")
		b.ReportMetric(batched.Seconds()/ours.Seconds(), "ratio-vs-raw64")
	})
	b.Run("roundtrip", func(b *testing.B) {
		const chunk = 200
		r := serveHost(b, profiled(callBenchApp), Options{}, nil)
		rb := startRaw(b)
		defer rb.stop()
		ctx := context.Background()
		calls := func() []time.Duration {
			rep, err := r.h.Call(ctx, "caller", sdk.Msg(fmt.Sprintf("go:%d", chunk)).MustBuild(), 60*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			var ns []int64
			if err := json.Unmarshal(rep.Payload(), &ns); err != nil {
				b.Fatal(err)
			}
			out := make([]time.Duration, len(ns))
			for i, v := range ns {
				out[i] = time.Duration(v)
			}
			return out
		}
		tag := uint64(0)
		pings := func() []time.Duration {
			out := make([]time.Duration, 0, chunk)
			for range chunk {
				tag++
				begin := time.Now()
				if err := rb.s.Send(&protocol.Down{Deliveries: []protocol.Delivery{rawDelivery(tag, "sync")}}); err != nil {
					b.Fatal(err)
				}
				rb.waitAck(b, tag)
				out = append(out, time.Since(begin))
			}
			return out
		}
		calls() // warm-up, waits for both workers
		pings()
		var ours, base []time.Duration
		b.ResetTimer()
		for b.Loop() {
			ours = append(ours, calls()...)
			base = append(base, pings()...)
		}
		slices.Sort(ours)
		slices.Sort(base)
		pct := func(s []time.Duration, p int) float64 {
			return float64(s[min(len(s)-1, len(s)*p/100)].Nanoseconds()) / 1000
		}
		b.ReportMetric(pct(ours, 50), "ours-p50-µs")
		b.ReportMetric(pct(ours, 99), "ours-p99-µs")
		b.ReportMetric(pct(base, 50), "raw-p50-µs")
		b.ReportMetric(pct(base, 99), "raw-p99-µs")
		b.ReportMetric(pct(ours, 50)/pct(base, 50), "ratio-p50")
	})
}
