package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/plugintest"
)

// serveHost is runHost with host options and a hook that runs after New
// and before Serve (to queue messages before any worker starts).
func serveHost(t testing.TB, body string, opts Options, before func(*Host)) *running {
	t.Helper()
	path := writeConfigTB(t, body)
	app, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %s", config.Format(err))
	}
	ev := plugintest.NewRecorder[sdk.Event]()
	logger := hclog.NewNullLogger()
	if _, ok := t.(*testing.T); ok { // benchmarks: no log
		logger = hclog.New(&hclog.LoggerOptions{Name: "vigil", Level: hclog.Debug, Output: plugintest.Output(t)})
	}
	opts.Logger, opts.EventHook, opts.TempDir = logger, ev.Add, shortTempDir(t)
	h, err := New(app, opts)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	r := &running{h: h, ev: ev, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- h.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.errc:
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return within 15s of cancel")
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(pluginProcs()) > 0 {
			if time.Now().After(deadline) {
				t.Errorf("plugin processes left behind: %v", pluginProcs())
				return
			}
			time.Sleep(10 * time.Millisecond) // polling with a deadline
		}
	})
	return r
}

func writeConfigTB(t testing.TB, body string) string {
	t.Helper()
	dir := t.TempDir()
	path := dir + "/app.hcl"
	if err := writeFile(path, strings.ReplaceAll(body, "{P}", pluginDir())); err != nil {
		t.Fatal(err)
	}
	return path
}

// mustMailbox returns the host mailbox name.
func mustMailbox(t testing.TB, h *Host, name string) *sdk.Mailbox {
	t.Helper()
	mb, ok := h.Mailbox(name)
	if !ok {
		t.Fatalf("no mailbox %q", name)
	}
	return mb
}

// collect receives from mb (a mailbox no worker reads) until done says
// the payloads so far are enough, or fails after d.
func collect(t testing.TB, mb *sdk.Mailbox, d time.Duration, what string, done func([]string) bool) []string {
	t.Helper()
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !done(got) {
		m, err := mb.ReceiveContext(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v; got %d messages: %q", what, err, len(got), tail(got))
		}
		got = append(got, m.PayloadString())
	}
	return got
}

func tail(s []string) []string {
	if len(s) > 20 {
		return s[len(s)-20:]
	}
	return s
}

func atLeast(n int) func([]string) bool { return func(s []string) bool { return len(s) >= n } }

// distinct counts distinct strings.
func distinct(s []string) int {
	seen := map[string]bool{}
	for _, x := range s {
		seen[x] = true
	}
	return len(seen)
}

func msg(t testing.TB, b *sdk.Builder) *sdk.Message {
	t.Helper()
	m, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// collectorWorker is a worker whose mailbox nobody reads: tests read it.
const collectorWorker = `
  worker "collector" {
    plugin = "{P}/ticker"
    config { interval = "1h" }
    mailbox { capacity = 100000 }
  }`

func TestMessagingPingPong(t *testing.T) {
	r := serveHost(t, `
app "m" {
  worker "ponger" {
    plugin = "{P}/counter"
    config { pong = true }
  }
  worker "pinger" {
    plugin = "{P}/producer"
    config {
      mode      = "ping"
      to        = "ponger"
      count     = 50
      report_to = "collector"
    }
  }`+collectorWorker+`
}`, Options{}, nil)
	got := collect(t, mustMailbox(t, r.h, "collector"), 20*time.Second, "the pinger's report", atLeast(1))
	if got[0] != "pongs=50" {
		t.Fatalf("report %q, want pongs=50", got[0])
	}
	eventually(t, 5*time.Second, "ponger's pings all acknowledged", func() bool {
		st := mustMailbox(t, r.h, "ponger").Stats()
		return st.MessagesAcked == 50 && st.InFlight == 0 && st.Len == 0
	})
}

func TestMessagingRequestReply(t *testing.T) {
	r := serveHost(t, `
app "m" {
  worker "echo" {
    plugin = "{P}/echo"
    config {
      interval   = "1h"
      slow_delay = "600ms"
    }
  }
  worker "caller" {
    plugin = "{P}/producer"
    config {
      mode      = "call"
      to        = "echo"
      timeout   = "5s"
      payloads  = ["a", "slow-1@200ms", "b"]
      report_to = "collector"
    }
  }`+collectorWorker+`
}`, Options{}, nil)
	got := collect(t, mustMailbox(t, r.h, "collector"), 20*time.Second, "the caller's reports", atLeast(4))
	want := []string{"reply:a", "timeout:true", "reply:b", "late=1"}
	if !slices.Equal(got, want) {
		t.Fatalf("caller reported %q, want %q (the late reply to slow-1 must be dropped, not given to the call of b)", got, want)
	}

	// The host calls too, and gets its sentinels.
	ctx := context.Background()
	rep, err := r.h.Call(ctx, "echo", msg(t, sdk.Msg("from host")), 10*time.Second)
	if err != nil || rep.PayloadString() != "from host" {
		t.Fatalf("host call: %v, %v", rep, err)
	}
	if _, err := r.h.Call(ctx, "echo", msg(t, sdk.Msg("slow-2")), 100*time.Millisecond); !errors.Is(err, sdk.ErrTimeout) {
		t.Fatalf("host call of slow-2: %v, want ErrTimeout", err)
	}
	if err := r.h.Send(ctx, "nobody", msg(t, sdk.Msg("x"))); !errors.Is(err, sdk.ErrWorkerNotFound) {
		t.Fatalf("send to nobody: %v, want ErrWorkerNotFound", err)
	}
	eventually(t, 5*time.Second, "the late host reply dropped", func() bool { return r.h.RepliesDropped() == 1 })
}

func TestMessagingPoolDistributionAndBroadcast(t *testing.T) {
	const n = 60
	r := serveHost(t, `
app "m" {
  worker "workers" {
    plugin = "{P}/counter"
    pool   = 3
    config {
      delay      = "5ms"
      forward_to = "collector"
    }
  }`+collectorWorker+`
}`, Options{}, nil)
	for i := range 3 {
		r.ev.Wait(t, 10*time.Second, "member started", started(fmt.Sprintf("workers_%d", i), 1))
	}
	ctx := context.Background()
	for i := range n {
		if err := r.h.Send(ctx, "workers", msg(t, sdk.Msg(fmt.Sprintf("job-%d", i)))); err != nil {
			t.Fatal(err)
		}
	}
	got := collect(t, mustMailbox(t, r.h, "collector"), 20*time.Second, "all jobs", atLeast(n))
	per := map[string]int{}
	for _, g := range got {
		id, _, _ := strings.Cut(g, "|")
		per[id]++
	}
	if distinct(got) != n {
		t.Fatalf("%d distinct of %d forwarded", distinct(got), len(got))
	}
	if len(per) < 2 {
		t.Fatalf("work went to %v; want it spread over the pool", per)
	}
	t.Logf("jobs per member: %v", per)

	if err := r.h.Broadcast(ctx, "workers", msg(t, sdk.Msg("hello"))); err != nil {
		t.Fatal(err)
	}
	got = collect(t, mustMailbox(t, r.h, "collector"), 10*time.Second, "broadcast", atLeast(3))
	slices.Sort(got)
	if want := []string{"workers_0|hello", "workers_1|hello", "workers_2|hello"}; !slices.Equal(got, want) {
		t.Fatalf("broadcast reached %q, want %q", got, want)
	}
	if err := r.h.Broadcast(ctx, "collector", msg(t, sdk.Msg("x"))); !errors.Is(err, sdk.ErrWorkerNotFound) {
		t.Fatalf("broadcast to a non-pool: %v", err)
	}
}

func TestMessagingKill9WithMessagesInFlight(t *testing.T) {
	const n = 100
	r := serveHost(t, `
app "m" {
  max_restarts = 5
  max_seconds  = 10
  worker "sink" {
    plugin = "{P}/counter"
    config {
      delay      = "10ms"
      forward_to = "collector"
    }
  }`+collectorWorker+`
}`, Options{}, func(h *Host) {
		for i := range n {
			if err := h.Send(context.Background(), "sink", msg(t, sdk.Msg(fmt.Sprintf("m-%d", i)))); err != nil {
				t.Fatal(err)
			}
		}
	})
	col := mustMailbox(t, r.h, "collector")
	first := collect(t, col, 20*time.Second, "some messages processed", atLeast(10))
	sink := mustMailbox(t, r.h, "sink")
	inflight := sink.Stats().InFlight
	if err := syscall.Kill(r.h.Worker("sink").Current().PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.ev.Wait(t, 10*time.Second, "sink restarted", started("sink", 2))
	rest := collect(t, col, 30*time.Second, "every message processed", func(s []string) bool {
		return distinct(append(slices.Clone(first), s...)) == n
	})
	all := append(first, rest...)
	eventually(t, 5*time.Second, "sink mailbox drained", func() bool {
		st := sink.Stats()
		return st.Len == 0 && st.InFlight == 0
	})
	st := sink.Stats()
	if st.DeadLetters != 0 {
		t.Fatalf("dead letters: %v", sink.DeadLetters())
	}
	if st.MessagesNacked == 0 {
		t.Fatalf("no message was released by the crash (in flight at kill: %d); stats %+v", inflight, st)
	}
	t.Logf("in flight at kill: %d; released: %d; processed %d times for %d messages (%d duplicates)",
		inflight, st.MessagesNacked, len(all), n, len(all)-n)
}

func TestMessagingPoisonAfterCrashes(t *testing.T) {
	// The poison message is queued with innocent ones: all are in flight
	// when the worker first crashes, but the restarted incarnations get a
	// slow-start window, so the poison message is redelivered alone and
	// alone becomes a poison dead letter; the others are processed.
	r := serveHost(t, `
app "m" {
  max_restarts = 10
  max_seconds  = 10
  worker "sink" {
    plugin = "{P}/counter"
    config {
      crash_on   = "poison"
      forward_to = "collector"
    }
    mailbox { max_delivery_attempts = 3 }
  }`+collectorWorker+`
}`, Options{}, func(h *Host) {
		ctx := context.Background()
		for _, m := range []*sdk.Message{
			msg(t, sdk.Msg("poison").ID("p-1")),
			msg(t, sdk.Msg("ok-1")), msg(t, sdk.Msg("ok-2")), msg(t, sdk.Msg("ok-3")),
		} {
			if err := h.Send(ctx, "sink", m); err != nil {
				t.Fatal(err)
			}
		}
	})
	sink := mustMailbox(t, r.h, "sink")
	eventually(t, 20*time.Second, "the poison message dead-lettered", func() bool { return sink.Stats().DeadLetters >= 1 })
	got := collect(t, mustMailbox(t, r.h, "collector"), 10*time.Second, "the innocent messages processed", atLeast(3))
	slices.Sort(got)
	if want := []string{"sink|ok-1", "sink|ok-2", "sink|ok-3"}; !slices.Equal(got, want) {
		t.Fatalf("processed %q, want %q", got, want)
	}
	dls := sink.DeadLetters()
	if len(dls) != 1 {
		t.Fatalf("dead letters %+v, want only the poison message", dls)
	}
	dl := dls[0]
	if !dl.Poison || dl.Reason != sdk.ReasonMaxAttempts || dl.Message.ID() != "p-1" || dl.Message.Attempts() != 3 {
		t.Fatalf("dead letter %+v (attempts %d), want poison p-1 after 3 attempts", dl, dl.Message.Attempts())
	}
	r.ev.Wait(t, 10*time.Second, "sink's 4th incarnation", started("sink", 4))
	if err := r.h.Send(context.Background(), "sink", msg(t, sdk.Msg("ok-4"))); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, mustMailbox(t, r.h, "collector"), 10*time.Second, "ok-4 processed", atLeast(1)); got[0] != "sink|ok-4" {
		t.Fatalf("got %q", got)
	}
}

func TestMessagingFullMailboxAndUnknownNameInPlugin(t *testing.T) {
	r := serveHost(t, `
app "m" {
  worker "sink" {
    plugin = "{P}/ticker"
    config { interval = "1h" }
    mailbox { capacity = 5 }
  }
  worker "filler" {
    plugin = "{P}/producer"
    config {
      mode      = "fill"
      to        = "sink"
      report_to = "collector"
    }
  }
  worker "lost" {
    plugin = "{P}/producer"
    config {
      mode      = "fill"
      to        = "nobody"
      report_to = "collector"
    }
  }`+collectorWorker+`
}`, Options{}, nil)
	got := collect(t, mustMailbox(t, r.h, "collector"), 20*time.Second, "both reports", atLeast(2))
	slices.Sort(got)
	if !strings.HasPrefix(got[0], "sent=0 full=false notfound=true ") || !strings.HasPrefix(got[1], "sent=5 full=true notfound=false ") {
		t.Fatalf("reports %q", got)
	}
}

func TestMessagingTTLExpiry(t *testing.T) {
	// With the default window the short-lived message is pushed to the
	// worker at once and expires in its local queue (the worker nacks it
	// unseen); with a window of 1 it expires in the host's queue.
	for name, window := range map[string]int{"expires in the worker's queue": 0, "expires in the host's queue": 1} {
		t.Run(name, func(t *testing.T) {
			r := serveHost(t, `
app "m" {
  worker "sink" {
    plugin = "{P}/counter"
    config {
      delay      = "300ms"
      forward_to = "collector"
    }
  }`+collectorWorker+`
}`, Options{MailboxWindow: window}, func(h *Host) {
				ctx := context.Background()
				for _, m := range []*sdk.Message{
					msg(t, sdk.Msg("first")),
					msg(t, sdk.Msg("short").TTL(100*time.Millisecond).ID("short-1")),
					msg(t, sdk.Msg("last")),
				} {
					if err := h.Send(ctx, "sink", m); err != nil {
						t.Fatal(err)
					}
				}
			})
			got := collect(t, mustMailbox(t, r.h, "collector"), 10*time.Second, "first and last", atLeast(2))
			if want := []string{"sink|first", "sink|last"}; !slices.Equal(got, want) {
				t.Fatalf("processed %q, want %q (short expired)", got, want)
			}
			sink := mustMailbox(t, r.h, "sink")
			dls := sink.DeadLetters()
			if len(dls) != 1 || dls[0].Message.ID() != "short-1" || dls[0].Reason != sdk.ReasonExpired {
				t.Fatalf("dead letters %+v, want short-1 expired", dls)
			}
			if st := sink.Stats(); st.MessagesExpired != 1 {
				t.Fatalf("stats %+v, want 1 expired", st)
			}
		})
	}
}

func TestMessagingPriorityOrder(t *testing.T) {
	sent := []struct {
		p    sdk.Priority
		name string
	}{
		{sdk.PriorityLow, "low-1"}, {sdk.PriorityNormal, "normal-1"}, {sdk.PriorityBatch, "batch-1"},
		{sdk.PriorityHigh, "high-1"}, {sdk.PriorityCritical, "critical-1"}, {sdk.PriorityLow, "low-2"},
		{sdk.PriorityNormal, "normal-2"}, {sdk.PriorityCritical, "critical-2"},
	}
	r := serveHost(t, `
app "m" {
  worker "sink" {
    plugin = "{P}/counter"
    config { forward_to = "collector" }
  }`+collectorWorker+`
}`, Options{}, func(h *Host) {
		for _, s := range sent {
			if err := h.Send(context.Background(), "sink", msg(t, sdk.Msg(s.name).Priority(s.p))); err != nil {
				t.Fatal(err)
			}
		}
	})
	got := collect(t, mustMailbox(t, r.h, "collector"), 10*time.Second, "all", atLeast(len(sent)))
	want := []string{"critical-1", "critical-2", "high-1", "normal-1", "normal-2", "low-1", "low-2", "batch-1"}
	for i := range want {
		want[i] = "sink|" + want[i]
	}
	if !slices.Equal(got, want) {
		t.Fatalf("worker processed %q, want %q", got, want)
	}
}

func TestMessagingLargeMessage(t *testing.T) {
	r := serveHost(t, `
app "m" {
  worker "echo" {
    plugin = "{P}/echo"
    config { interval = "1h" }
    mailbox { max_message_size = "8MiB" }
  }
}`, Options{}, nil)
	payload := bytes.Repeat([]byte("0123456789abcdef"), (5<<20)/16) // 5 MiB > gRPC's 4 MiB default
	rep, err := r.h.Call(context.Background(), "echo", msg(t, sdk.Msg(payload)), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rep.Payload(), payload) {
		t.Fatalf("reply of %d bytes differs from the %d-byte request", len(rep.Payload()), len(payload))
	}
	big := msg(t, sdk.Msg(make([]byte, 9<<20)))
	if err := r.h.Send(context.Background(), "echo", big); !errors.Is(err, sdk.ErrMessageTooLarge) {
		t.Fatalf("9 MiB send: %v, want ErrMessageTooLarge", err)
	}
}

func writeFile(path, body string) error { return os.WriteFile(path, []byte(body), 0o644) }
