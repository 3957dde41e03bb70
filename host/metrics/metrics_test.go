package metrics

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/plugintest"
)

const appHCL = `
app "mt" {
  preset       = "testing"
  max_restarts = 5
  max_seconds  = 60
  worker "solo" {
    plugin = "{P}/echo"
    config { interval = "1h" }
  }
  supervisor "inner" {
    max_restarts = 2
    max_seconds  = 30
    worker "pool" {
      plugin = "{P}/echo"
      pool   = 2
      config { interval = "1h" }
    }
  }
}`

// TestScrapeFollowsTheHost runs real plugin processes and checks that a
// scrape reflects them: states, pool labels, RSS, a SIGKILL and its
// restart (restart counters, restart latency, intensity), messages moving
// through the mailboxes, an expired message, a stopped worker.
func TestScrapeFollowsTheHost(t *testing.T) {
	r := runHost(t, appHCL)
	first := r.ev.Wait(t, 10*time.Second, "solo started", started("solo", 1))
	r.ev.Wait(t, 10*time.Second, "pool_0 started", started("pool_0", 1))
	r.ev.Wait(t, 10*time.Second, "pool_1 started", started("pool_1", 1))

	// First scrape over the real HTTP endpoint.
	srv, err := Listen("127.0.0.1:0", r.m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	s := parse(t, get(t, "http://"+srv.Addr()+"/metrics"))

	s.want(t, 1, "vigil_worker_state", "worker=solo", "pool=", "state=running")
	s.want(t, 0, "vigil_worker_state", "worker=solo", "state=stopped")
	s.want(t, 1, "vigil_worker_state", "worker=pool_1", "pool=pool", "state=running")
	s.want(t, 0, "vigil_worker_restarts_total", "worker=solo")
	if up := s.value(t, "vigil_worker_uptime_seconds", "worker=solo"); up <= 0 || up > 30 {
		t.Errorf("solo uptime %v s, want in (0, 30]", up)
	}
	if rss := s.value(t, "vigil_worker_resident_memory_bytes", "worker=pool_0", "pool=pool"); rss < 1<<20 {
		t.Errorf("pool_0 RSS %v bytes, want ≥ 1 MiB for a Go plugin process", rss)
	}
	s.want(t, 0, "vigil_supervisor_restarts_total", "supervisor=mt")
	s.want(t, 1, "vigil_supervisor_running", "supervisor=inner")
	s.want(t, 2, "vigil_supervisor_active_children", "supervisor=mt") // solo and inner
	s.want(t, 5, "vigil_supervisor_restart_intensity_max_restarts", "supervisor=mt")
	s.want(t, 60, "vigil_supervisor_restart_intensity_window_seconds", "supervisor=mt")
	s.want(t, 2, "vigil_supervisor_restart_intensity_max_restarts", "supervisor=inner")
	s.want(t, 0, "vigil_supervisor_restart_intensity_restarts", "supervisor=mt")
	s.want(t, 2, "vigil_events_total", "supervisor=mt", "kind=child_started")    // solo, inner
	s.want(t, 2, "vigil_events_total", "supervisor=inner", "kind=child_started") // pool_0, pool_1
	if s.find("vigil_mailbox_depth", "worker=", "pool=pool") == nil {
		t.Error("no sample for the pool's shared mailbox (worker=\"\", pool=\"pool\")")
	}
	if s.find("go_goroutines") == nil || s.find("process_resident_memory_bytes") == nil {
		t.Error("the Go and process collectors are missing")
	}
	if s.find("vigil_restart_latency_seconds", "worker=solo") != nil {
		t.Error("a restart latency before any restart")
	}

	// SIGKILL solo while scrapes run concurrently.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 2000 {
			select {
			case <-stop:
				return
			default:
			}
			scrapeHandler(t, r.m.Handler())
		}
	}()
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := r.ev.Wait(t, 10*time.Second, "solo restarted", started("solo", 2))
	close(stop)
	wg.Wait()

	s = scrapeHandler(t, r.m.Handler())
	s.want(t, 1, "vigil_worker_restarts_total", "worker=solo")
	s.want(t, 1, "vigil_worker_state", "worker=solo", "state=running")
	s.want(t, 1, "vigil_supervisor_restarts_total", "supervisor=mt")
	s.want(t, 1, "vigil_supervisor_restart_intensity_restarts", "supervisor=mt")
	s.want(t, 0, "vigil_supervisor_restart_intensity_restarts", "supervisor=inner")
	s.want(t, 1, "vigil_events_total", "supervisor=mt", "kind=child_exited")
	s.want(t, 1, "vigil_events_total", "supervisor=mt", "kind=child_restarting")
	h := s.find("vigil_restart_latency_seconds", "worker=solo").GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() <= 0 || h.GetSampleSum() > 10 {
		t.Errorf("restart latency: %d samples summing %v s, want 1 in (0, 10]", h.GetSampleCount(), h.GetSampleSum())
	}
	if rss := s.value(t, "vigil_worker_resident_memory_bytes", "worker=solo"); rss < 1<<20 {
		t.Errorf("RSS of solo's new process %d: %v bytes, want ≥ 1 MiB", second.PID, rss)
	}

	// Messages: echo acknowledges messages without a reply-to.
	for i := range 10 {
		if err := r.h.Send(context.Background(), "solo", sdk.Msg("m"+strconv.Itoa(i)).MustBuild()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		if err := r.h.Send(context.Background(), "pool", sdk.Msg("p"+strconv.Itoa(i)).MustBuild()); err != nil {
			t.Fatal(err)
		}
	}
	plugintest.Eventually(t, 10*time.Second, "every message acknowledged", func() bool {
		s = scrapeHandler(t, r.m.Handler())
		return s.value(t, "vigil_mailbox_messages_out_total", "worker=solo") == 10 &&
			s.value(t, "vigil_mailbox_messages_out_total", "worker=", "pool=pool") == 6
	})
	s.want(t, 10, "vigil_mailbox_messages_in_total", "worker=solo")
	s.want(t, 6, "vigil_mailbox_messages_in_total", "worker=", "pool=pool")
	s.want(t, 0, "vigil_mailbox_messages_in_total", "worker=pool_0", "pool=pool")
	s.want(t, 0, "vigil_mailbox_depth", "worker=solo")
	s.want(t, 0, "vigil_mailbox_in_flight", "worker=solo")
	if d := s.value(t, "vigil_mailbox_deliveries_total", "worker=solo"); d < 10 {
		t.Errorf("solo deliveries %v, want ≥ 10", d)
	}

	// Stop solo, let a message expire in its mailbox.
	if err := r.h.Root().TerminateChild("solo"); err != nil {
		t.Fatal(err)
	}
	if err := r.h.Send(context.Background(), "solo", sdk.Msg("late").TTL(time.Millisecond).MustBuild()); err != nil {
		t.Fatal(err)
	}
	mb, _ := r.h.Mailbox("solo")
	plugintest.Eventually(t, 5*time.Second, "the message expired", func() bool { return mb.SweepExpired() == 1 })
	s = scrapeHandler(t, r.m.Handler())
	s.want(t, 1, "vigil_worker_state", "worker=solo", "state=stopped")
	s.want(t, 0, "vigil_worker_uptime_seconds", "worker=solo")
	s.want(t, 0, "vigil_worker_resident_memory_bytes", "worker=solo")
	s.want(t, 1, "vigil_mailbox_messages_expired_total", "worker=solo")
	s.want(t, 1, "vigil_mailbox_messages_dead_lettered_total", "worker=solo")
	s.want(t, 1, "vigil_mailbox_dead_letters", "worker=solo")
	s.want(t, 0, "vigil_mailbox_depth", "worker=solo")
	s.want(t, 1, "vigil_events_total", "supervisor=mt", "kind=child_stopped")
	s.want(t, 1, "vigil_worker_restarts_total", "worker=solo") // a stop is no restart

	// Delivery latency, as the bridge will report it.
	r.m.ObserveDelivery("pool_0", 3*time.Millisecond)
	s = scrapeHandler(t, r.m.Handler())
	dh := s.find("vigil_delivery_latency_seconds", "worker=pool_0").GetHistogram()
	for _, b := range dh.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 0.003 {
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("delivery bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
}

// get fetches url without keeping the connection (no goroutine left).
func get(t *testing.T, url string) string {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

// TestObserve feeds event sequences and checks the restart latency and
// the event counts, without a host (the intensity is the supervisor's own:
// see TestScrapeFollowsTheHost).
func TestObserve(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ev := func(kind sdk.EventKind, child string, ms int) sdk.Event {
		return sdk.Event{Kind: kind, Supervisor: "app", Child: child, Time: at(ms)}
	}
	fail := sdk.ErrStartFailed
	tests := map[string]struct {
		events    []sdk.Event
		latencies map[string][]float64 // worker → observed seconds
	}{
		"crash then restart": {
			events: []sdk.Event{
				{Kind: sdk.EventChildExited, Supervisor: "app", Child: "a", Time: at(0), Err: fail},
				ev(sdk.EventChildRestarting, "a", 1),
				ev(sdk.EventChildStarted, "a", 50),
			},
			latencies: map[string][]float64{"a": {0.05}},
		},
		"failed restart attempts count from the first failure": {
			events: []sdk.Event{
				ev(sdk.EventHealthCheckFailed, "a", 0),
				ev(sdk.EventChildStopped, "a", 5),
				ev(sdk.EventChildRestarting, "a", 10),
				ev(sdk.EventChildStartFailed, "a", 100),
				ev(sdk.EventChildRestarting, "a", 110),
				ev(sdk.EventChildStarted, "a", 300),
			},
			latencies: map[string][]float64{"a": {0.3}},
		},
		"one_for_all: siblings not timed": {
			events: []sdk.Event{
				ev(sdk.EventChildExited, "b", 0),
				ev(sdk.EventChildStopped, "c", 2),
				ev(sdk.EventChildStopped, "a", 3),
				ev(sdk.EventChildRestarting, "a", 4),
				ev(sdk.EventChildRestarting, "b", 4),
				ev(sdk.EventChildRestarting, "c", 4),
				ev(sdk.EventChildStarted, "a", 20),
				ev(sdk.EventChildStarted, "b", 40),
				ev(sdk.EventChildStarted, "c", 60),
			},
			latencies: map[string][]float64{"b": {0.04}},
		},
		"manual restart is not timed": {
			events: []sdk.Event{
				ev(sdk.EventChildStopped, "a", 0),
				ev(sdk.EventChildStarted, "a", 30),
			},
		},
		"normal exit without restart, started later by hand": {
			events: []sdk.Event{
				ev(sdk.EventChildExited, "a", 0),
				ev(sdk.EventChildStarted, "a", 5000),
			},
		},
		"giving up after a restart": {
			events: []sdk.Event{
				ev(sdk.EventChildExited, "a", 0),
				ev(sdk.EventChildRestarting, "a", 1),
				ev(sdk.EventChildStarted, "a", 10),
				ev(sdk.EventChildExited, "a", 20),
				ev(sdk.EventSupervisorGaveUp, "a", 21),
			},
			latencies: map[string][]float64{"a": {0.01}},
		},
		"restarts leave the window": {
			events: []sdk.Event{
				ev(sdk.EventChildExited, "a", 0),
				ev(sdk.EventChildRestarting, "a", 1),
				ev(sdk.EventChildStarted, "a", 2),
				ev(sdk.EventChildExited, "a", 61_000),
				ev(sdk.EventChildRestarting, "a", 61_001),
				ev(sdk.EventChildStarted, "a", 61_002),
			},
			latencies: map[string][]float64{"a": {0.002, 0.002}},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			m := New(nil)
			for _, e := range tt.events {
				m.Observe(e)
			}
			s := scrapeHandler(t, m.Handler())
			for _, w := range []string{"a", "b", "c"} {
				want := tt.latencies[w]
				got := s.find("vigil_restart_latency_seconds", "worker="+w)
				if len(want) == 0 {
					if got != nil {
						t.Errorf("worker %s: restart latency %v, want none", w, got)
					}
					continue
				}
				var sum float64
				for _, v := range want {
					sum += v
				}
				if got.GetHistogram().GetSampleCount() != uint64(len(want)) || !near(got.GetHistogram().GetSampleSum(), sum) {
					t.Errorf("worker %s: %d samples summing %v, want %v", w, got.GetHistogram().GetSampleCount(), got.GetHistogram().GetSampleSum(), want)
				}
			}
			kinds := map[sdk.EventKind]float64{}
			for _, e := range tt.events {
				kinds[e.Kind]++
			}
			for k, n := range kinds {
				s.want(t, n, "vigil_events_total", "supervisor=app", "kind="+k.String())
			}
		})
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestObserveOnNil: a hook may call Observe before New returned.
func TestObserveOnNil(t *testing.T) {
	var m *Metrics
	m.Observe(sdk.Event{Kind: sdk.EventChildStarted, Child: "a"})
	m.ObserveDelivery("a", time.Millisecond)
}

func TestPoolOf(t *testing.T) {
	pools := map[string]bool{"echo": true, "my_pool": true}
	tests := map[string]struct{ id, want string }{
		"member":                  {"echo_0", "echo"},
		"member of a pool with _": {"my_pool_12", "my_pool"},
		"single worker":           {"solo", ""},
		"not a pool":              {"other_1", ""},
		"suffix not a number":     {"echo_x", ""},
		"trailing underscore":     {"echo_", ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := poolOf(tt.id, pools); got != tt.want {
				t.Errorf("poolOf(%q) = %q, want %q", tt.id, got, tt.want)
			}
		})
	}
}
