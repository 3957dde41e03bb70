package host

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/plugintest"
)

// soakDuration is how long TestChaosSoak kills workers: short by default
// (it runs in `make test`), a minute in `make soak`.
var soakDuration = flag.Duration("soak", 8*time.Second, "chaos phase of TestChaosSoak (make soak: 60s)")

// The chaos soak's app: a lone worker, a pool of 3 and a nested
// supervisor of 2, all counters forwarding what they process to a
// collector nobody kills and nobody reads but the test. Intensity is
// generous (the chaos loop kills at most ~7 workers a second) and
// backoff short, so no supervisor gives up. The pool runs a copy of the
// counter in its own directory ({S}), which the soak replaces by v2 and
// hot-swaps half-way through the chaos.
const soakApp = `
app "soak" {
  max_restarts = 1000
  max_seconds  = 10
  worker "solo" {
    plugin = "{P}/counter"
    config { forward_to = "collector" }
    backoff {
      min = "5ms"
      max = "50ms"
    }
    mailbox { capacity = 100000 }
  }
  worker "crew" {
    plugin = "{S}/counter"
    pool   = 3
    config { forward_to = "collector" }
    backoff {
      min = "5ms"
      max = "50ms"
    }
    mailbox { capacity = 100000 }
  }
  supervisor "inner" {
    strategy     = "one_for_one"
    max_restarts = 1000
    max_seconds  = 10
    worker "inner_a" {
      plugin = "{P}/counter"
      config { forward_to = "collector" }
      backoff {
        min = "5ms"
        max = "50ms"
      }
      mailbox { capacity = 100000 }
    }
    worker "inner_b" {
      plugin = "{P}/counter"
      config { forward_to = "collector" }
      backoff {
        min = "5ms"
        max = "50ms"
      }
      mailbox { capacity = 100000 }
    }
  }
  worker "collector" {
    plugin = "{P}/ticker"
    config { interval = "1h" }
    mailbox { capacity = 1000000 }
  }
}`

// soakVictims are the worker IDs the chaos loop kills; soakTargets the
// mailboxes the traffic goes to (the pool's shared one for the pool).
var (
	soakVictims = []string{"solo", "crew_0", "crew_1", "crew_2", "inner_a", "inner_b"}
	soakTargets = []string{"solo", "crew", "inner_a", "inner_b"}
)

// soakTracker follows the victims' incarnations from the host's events:
// which PID runs now, which PIDs the chaos loop killed, restarts, exits
// nobody asked for, start failures and give-ups.
type soakTracker struct {
	mu          sync.Mutex
	victim      map[string]bool
	live        map[string]int // victim → PID of its running incarnation
	killed      map[int]bool   // PIDs SIGKILLed by the chaos loop
	kills       int
	restarts    int      // starts of incarnation > 1 of victims
	unexplained []string // exits of victims' PIDs the chaos loop did not kill
	startFailed []string
	gaveUp      []string
}

func newSoakTracker() *soakTracker {
	s := &soakTracker{victim: map[string]bool{}, live: map[string]int{}, killed: map[int]bool{}}
	for _, id := range soakVictims {
		s.victim[id] = true
	}
	return s
}

// hook is the host's EventHook (it runs on supervisor goroutines: keep it short).
func (s *soakTracker) hook(e sdk.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e.Kind {
	case sdk.EventSupervisorGaveUp:
		s.gaveUp = append(s.gaveUp, e.String())
		return
	case sdk.EventChildStartFailed:
		if s.victim[e.Child] {
			s.startFailed = append(s.startFailed, e.String())
		}
		return
	}
	if !s.victim[e.Child] {
		return
	}
	switch e.Kind {
	case sdk.EventChildStarted:
		s.live[e.Child] = e.PID
		if e.Incarnation > 1 {
			s.restarts++
		}
	case sdk.EventChildSwapped: // not a restart; the new PID is the live one
		s.live[e.Child] = e.PID
	case sdk.EventChildExited, sdk.EventChildStopped:
		if s.live[e.Child] == e.PID {
			delete(s.live, e.Child)
		}
		if e.Kind == sdk.EventChildExited && !s.killed[e.PID] {
			s.unexplained = append(s.unexplained, e.String())
		}
	}
}

// kill SIGKILLs the running incarnation of a random victim that has one
// and was not killed yet; it reports whether it killed one.
func (s *soakTracker) kill(rng *rand.Rand) (bool, error) {
	s.mu.Lock()
	var cands []int
	for _, id := range soakVictims {
		if pid, ok := s.live[id]; ok && pid > 0 && !s.killed[pid] {
			cands = append(cands, pid)
		}
	}
	if len(cands) == 0 {
		s.mu.Unlock()
		return false, nil
	}
	pid := cands[rng.IntN(len(cands))]
	s.killed[pid] = true // before the kill: its exit event may come at once
	s.mu.Unlock()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return false, fmt.Errorf("kill %d: %w", pid, err)
	}
	s.mu.Lock()
	s.kills++
	s.mu.Unlock()
	return true, nil
}

func (s *soakTracker) counts() (kills, restarts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kills, s.restarts
}

// soakCollector drains the collector's mailbox: payloads "<worker>|m-<n>".
type soakCollector struct {
	mu        sync.Mutex
	processed map[string]int // message payload → times processed
	total     int
}

func (c *soakCollector) run(ctx context.Context, mb *sdk.Mailbox) {
	for {
		m, err := mb.ReceiveContext(ctx)
		if err != nil {
			return
		}
		_, payload, _ := strings.Cut(m.PayloadString(), "|")
		c.mu.Lock()
		c.processed[payload]++
		c.total++
		c.mu.Unlock()
	}
}

// TestChaosSoak runs the real host under continuous numbered traffic sent
// through the host API while a chaos loop SIGKILLs a random worker process
// every 100–400 ms for -soak (8 s by default). Every message sent must be
// processed at least once or be a dead letter with a reason; every kill
// must be answered by exactly one restart; nothing may be left running
// after the host stops.
func TestChaosSoak(t *testing.T) {
	const (
		tick        = 10 * time.Millisecond // one message per target per tick: ~400 msg/s
		maxMessages = 200_000
	)
	chaos := *soakDuration
	baseline := runtime.NumGoroutine()

	swapBin := swappable(t)
	app, err := config.Load(writeConfig(t, strings.ReplaceAll(soakApp, "{S}", filepath.Dir(swapBin))))
	if err != nil {
		t.Fatalf("config: %s", config.Format(err))
	}
	tr := newSoakTracker()
	ev := plugintest.NewRecorder[sdk.Event]()
	logger := hclog.New(&hclog.LoggerOptions{Name: "vigil", Level: hclog.Warn, Output: plugintest.Output(t)})
	h, err := New(app, Options{Logger: logger, TempDir: shortTempDir(t), EventHook: func(e sdk.Event) {
		tr.hook(e)
		ev.Add(e)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), chaos+2*time.Minute)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- h.Serve(ctx) }()
	served := false
	stopHost := func() error {
		cancel()
		select {
		case err := <-errc:
			served = true
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("Serve did not return within 20s of cancel")
			return nil
		}
	}
	t.Cleanup(func() {
		if !served {
			cancel()
			<-errc
		}
	})
	for _, id := range append(slices.Clone(soakVictims), "collector") {
		ev.Wait(t, 20*time.Second, id+" started", started(id, 1))
	}

	col := &soakCollector{processed: map[string]int{}}
	colCtx, colCancel := context.WithCancel(context.Background())
	colDone := make(chan struct{})
	go func() {
		defer close(colDone)
		col.run(colCtx, mustMailbox(t, h, "collector"))
	}()
	defer func() { colCancel(); <-colDone }()

	// Traffic: numbered messages, round-robin over the targets, until the
	// chaos phase ends (bounded in count too).
	stopTraffic := make(chan struct{})
	type trafficResult struct {
		sent    []string
		sendErr []string
	}
	trafficDone := make(chan trafficResult, 1)
	go func() {
		var res trafficResult
		defer func() { trafficDone <- res }()
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for n := 0; n < maxMessages; {
			select {
			case <-stopTraffic:
				return
			case <-tk.C:
			}
			for _, to := range soakTargets {
				id := fmt.Sprintf("m-%d", n)
				n++
				m, err := sdk.Msg(id).ID(id).Build()
				if err == nil {
					err = h.Send(context.Background(), to, m)
				}
				if err != nil {
					res.sendErr = append(res.sendErr, fmt.Sprintf("%s to %s: %v", id, to, err))
					continue
				}
				res.sent = append(res.sent, id)
			}
		}
	}()

	// Chaos: SIGKILL a random running victim every 100–400 ms; half-way,
	// deploy v2 of the pool's binary and hot-swap the pool meanwhile.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	start := time.Now()
	var killErrs []error
	swapErr := make(chan error, 1)
	swapping := false
	for time.Since(start) < chaos {
		if !swapping && time.Since(start) >= chaos/2 {
			swapping = true
			deploy(t, swapBin, v2())
			go func() { swapErr <- h.Swap(ctx, "crew") }()
		}
		gap := time.NewTimer(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		select {
		case <-gap.C: // pacing, not synchronisation
		case <-ctx.Done():
			gap.Stop()
			t.Fatal("host context ended during the chaos phase")
		}
		if _, err := tr.kill(rng); err != nil {
			killErrs = append(killErrs, err)
		}
	}
	close(stopTraffic)
	traffic := <-trafficDone
	chaosTime := time.Since(start)
	if !swapping {
		t.Fatal("the chaos phase ended before the hot swap")
	}
	if err := <-swapErr; err != nil {
		t.Errorf("hot swap of the pool during the chaos: %v", err)
	}
	if len(killErrs) > 0 {
		t.Errorf("kill errors: %v", killErrs)
	}
	if len(traffic.sendErr) > 0 {
		t.Errorf("%d sends failed, first: %s", len(traffic.sendErr), traffic.sendErr[0])
	}

	// Every kill is answered by a restart.
	eventually(t, 20*time.Second, "one restart per kill", func() bool {
		k, r := tr.counts()
		return r >= k
	})

	// Every message is processed or dead-lettered.
	deadLetters := func() map[string]string {
		dl := map[string]string{}
		for _, name := range h.MailboxNames() {
			for _, d := range mustMailbox(t, h, name).DeadLetters() {
				if d.Reason == "" {
					continue // no reason: counted as lost
				}
				dl[d.Message.ID()] = name + ": " + d.Reason
			}
		}
		return dl
	}
	missing := func() []string {
		dl := deadLetters()
		col.mu.Lock()
		defer col.mu.Unlock()
		var miss []string
		for _, id := range traffic.sent {
			if col.processed[id] == 0 && !strings.Contains(dl[id], ": ") {
				miss = append(miss, id)
			}
		}
		return miss
	}
	drainDeadline := time.Now().Add(30 * time.Second)
	miss := missing()
	for len(miss) > 0 && time.Now().Before(drainDeadline) {
		time.Sleep(20 * time.Millisecond) // polling with a deadline
		miss = missing()
	}

	dls := deadLetters()
	byReason := map[string]int{}
	for _, r := range dls {
		_, reason, _ := strings.Cut(r, ": ")
		byReason[reason]++
	}
	col.mu.Lock()
	distinctProcessed, total := len(col.processed), col.total
	bothDone := 0
	for id := range dls {
		if col.processed[id] > 0 {
			bothDone++
		}
	}
	col.mu.Unlock()
	kills, restarts := tr.counts()
	tr.mu.Lock()
	unexplained, startFailed, gaveUp := slices.Clone(tr.unexplained), slices.Clone(tr.startFailed), slices.Clone(tr.gaveUp)
	tr.mu.Unlock()
	t.Logf("chaos %v: sent %d, processed distinct %d (%d times: %d duplicates), dead-lettered %d %v (%d of them also processed), lost %d; kills %d, restarts %d, unexplained exits %d, start failures %d, give-ups %d",
		chaosTime.Round(time.Millisecond), len(traffic.sent), distinctProcessed, total, total-distinctProcessed,
		len(dls), byReason, bothDone, len(miss), kills, restarts, len(unexplained), len(startFailed), len(gaveUp))

	if len(miss) > 0 {
		t.Errorf("%d messages lost (neither processed nor dead-lettered), first: %v", len(miss), miss[:min(len(miss), 20)])
	}
	if kills == 0 {
		t.Errorf("the chaos loop killed nothing")
	}
	if restarts != kills {
		t.Errorf("%d restarts for %d kills", restarts, kills)
	}
	if len(unexplained) > 0 || len(startFailed) > 0 || len(gaveUp) > 0 {
		t.Errorf("exits nobody caused: %q; start failures: %q; give-ups: %q", unexplained, startFailed, gaveUp)
	}
	if len(traffic.sent) == 0 {
		t.Errorf("no traffic")
	}
	for _, id := range []string{"crew_0", "crew_1", "crew_2"} {
		if n := countEvents(ev.Snapshot(), sdk.EventChildSwapped, id); n != 1 {
			t.Errorf("%s swapped %d times, want 1", id, n)
		}
		if v := version(t, h, id); v != "v2" {
			t.Errorf("%s serves %q after the swap, want v2", id, v)
		}
	}

	// Stop: nothing left running, goroutines back to baseline.
	colCancel()
	<-colDone
	if err := stopHost(); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Serve: %v", err)
	}
	noPluginProcsLeft(t)
	eventually(t, 10*time.Second, fmt.Sprintf("goroutines back to the baseline of %d", baseline), func() bool {
		return runtime.NumGoroutine() <= baseline
	})
}

// TestChaosSoakVigilSIGKILLedDuringTraffic SIGKILLs the vigil binary
// while its workers exchange messages: none of them may survive it.
// (TestVigilSIGKILLedLeavesNoWorker covers idle workers.)
func TestChaosSoakVigilSIGKILLedDuringTraffic(t *testing.T) {
	cfg := writeConfig(t, `
app "k" {
  worker "sink" {
    plugin = "{P}/counter"
    pool   = 2
    mailbox { capacity = 1000000 }
  }
  worker "solo" {
    plugin = "{P}/counter"
    config { forward_to = "sink" }
    mailbox { capacity = 1000000 }
  }
  worker "flood" {
    plugin = "{P}/producer"
    config {
      mode  = "send"
      to    = "sink"
      count = 500000
    }
  }
  worker "relay" {
    plugin = "{P}/producer"
    config {
      mode  = "send"
      to    = "solo"
      count = 500000
    }
  }
}`)
	v := startVigil(t, "run", cfg)
	// Started means the READY of its Run: the producers are sending.
	eventually(t, 20*time.Second, "5 workers started and running", func() bool {
		return strings.Count(v.out.String(), "worker started") == 5 && len(pluginProcs()) == 5
	})
	if err := v.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	v.wait(t, 5*time.Second)
	noPluginProcsLeft(t)
}
