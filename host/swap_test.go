package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/host/process"
	"github.com/vigil-run/vigil/sdk"
)

// swappable copies the counter plugin (version "dev") into a fresh
// directory under the build directory (so that leftover processes are
// found) and returns its path.
func swappable(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp(binDir, "swap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "counter")
	deploy(t, path, filepath.Join(pluginDir(), "counter"))
	return path
}

// deploy replaces the file at path by a copy of src the way deploy tools
// do: write a temporary file next to it, then rename it over the old one
// (a running binary cannot be written in place).
func deploy(t testing.TB, path, src string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	deployBytes(t, path, data)
}

func deployBytes(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// v2 is the counter plugin built with version "v2".
func v2() string { return filepath.Join(binDir, "v2", "counter") }

// version asks worker id which binary serves it.
func version(t *testing.T, h *Host, id string) string {
	t.Helper()
	rep, err := h.Call(context.Background(), id, sdk.Msg("version?").MustBuild(), 10*time.Second)
	if err != nil {
		t.Fatalf("version of %s: %v", id, err)
	}
	return strings.TrimPrefix(rep.PayloadString(), "version:")
}

// numbered sends "1" … "n" to worker to from the host, two every
// millisecond, retrying when the mailbox is full; sent counts those
// accepted. It returns when all were sent, or ctx is done.
func numbered(ctx context.Context, h *Host, to string, n int, sent *atomic.Int64) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := 1; i <= n; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		for k := 0; k < 2 && i <= n; k++ {
			err := h.Send(ctx, to, sdk.Msg(strconv.Itoa(i)).MustBuild())
			if errors.Is(err, sdk.ErrMailboxFull) {
				break
			}
			if err != nil {
				return err
			}
			sent.Add(1)
			i++
		}
	}
	return nil
}

// completions reads the collector until every number 1…n forwarded by
// the counter arrived; it returns how many arrived more than once and the
// longest gap between two consecutive arrivals.
func completions(t *testing.T, h *Host, n int, d time.Duration) (dups int, maxGap time.Duration) {
	t.Helper()
	mb := mustMailbox(t, h, "collector")
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	seen := make(map[int]bool, n)
	var last time.Time
	for len(seen) < n {
		m, err := mb.ReceiveContext(ctx)
		if err != nil {
			t.Fatalf("%d of %d numbers arrived: %v", len(seen), n, err)
		}
		now := time.Now()
		if !last.IsZero() && now.Sub(last) > maxGap {
			maxGap = now.Sub(last)
		}
		last = now
		_, num, _ := strings.Cut(m.PayloadString(), "|")
		i, err := strconv.Atoi(num)
		if err != nil || i < 1 || i > n {
			t.Fatalf("unexpected forward %q", m.PayloadString())
		}
		if seen[i] {
			dups++
		}
		seen[i] = true
	}
	return dups, maxGap
}

func countEvents(evs []sdk.Event, kind sdk.EventKind, child string) int {
	n := 0
	for _, e := range evs {
		if e.Kind == kind && (child == "" || e.Child == child) {
			n++
		}
	}
	return n
}

// TestHotSwapUnderLoad swaps the counter's binary while the host sends it
// numbered messages: every number is processed exactly once (the old
// incarnation finishes what it holds before it is stopped: with
// max_delivery_attempts = 1 a redelivery would be a dead letter), none is
// lost, nothing restarts, and v2 serves afterwards. Triggered by the API,
// by replacing the watched binary, and by a reload that also changes the
// worker's config (a new process child).
func TestHotSwapUnderLoad(t *testing.T) {
	const app = `
app "s" {
  worker "counter" {
    plugin = %q
    watch  = %v
    config {
      forward_to = "collector"
      delay      = "%s"
    }
    mailbox {
      capacity              = 100000
      max_delivery_attempts = 1
    }
  }` + collectorWorker + `
}`
	for _, trigger := range []string{"swap", "watch", "reload"} {
		t.Run(trigger, func(t *testing.T) {
			bin := swappable(t)
			watch := trigger == "watch"
			r := serveHost(t, fmt.Sprintf(app, bin, watch, "1ms"), Options{WatchDebounce: 100 * time.Millisecond}, nil)
			r.ev.Wait(t, 10*time.Second, "counter started", started("counter", 1))
			r.ev.Wait(t, 10*time.Second, "collector started", started("collector", 1))
			if v := version(t, r.h, "counter"); v != "dev" {
				t.Fatalf("version before the swap = %q", v)
			}
			oldPID := r.h.Worker("counter").Current().PID()

			const n = 3000
			var sent atomic.Int64
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sendErr := make(chan error, 1)
			go func() { sendErr <- numbered(ctx, r.h, "counter", n, &sent) }()
			eventually(t, 10*time.Second, "a quarter sent", func() bool { return sent.Load() >= n/4 })

			deploy(t, bin, v2())
			switch trigger {
			case "watch":
				r.ev.Wait(t, 10*time.Second, "the watcher's swap", func(e sdk.Event) bool {
					return e.Kind == sdk.EventChildSwapped && e.Child == "counter"
				})
			case "swap":
				if err := r.h.Swap(ctx, "counter"); err != nil {
					t.Fatal(err)
				}
			case "reload":
				app, err := config.Load(writeConfigTB(t, fmt.Sprintf(app, bin, watch, "900us")))
				if err != nil {
					t.Fatal(err)
				}
				rep, err := r.h.Reload(ctx, app)
				if err != nil || len(rep.Swapped) != 1 {
					t.Fatalf("Reload = %+v, %v; want counter swapped", rep, err)
				}
			}
			swappedAt := sent.Load()
			if err := <-sendErr; err != nil {
				t.Fatal(err)
			}
			dups, gap := completions(t, r.h, n, 20*time.Second)
			t.Logf("swap after %d of %d messages: %d redelivered, longest gap between completions %v", swappedAt, n, dups, gap)
			if dups != 0 {
				t.Errorf("%d messages processed twice: the old incarnation did not finish what it held", dups)
			}
			if swappedAt >= n {
				t.Fatalf("the swap finished after the last message was sent: not under load")
			}
			if v := version(t, r.h, "counter"); v != "v2" {
				t.Fatalf("version after the swap = %q, want v2", v)
			}
			if alive(oldPID) {
				eventually(t, 5*time.Second, "the old incarnation gone", func() bool { return !alive(oldPID) })
			}
			evs := r.ev.Snapshot()
			if countEvents(evs, sdk.EventChildSwapped, "counter") != 1 || countEvents(evs, sdk.EventChildRestarting, "") != 0 ||
				countEvents(evs, sdk.EventChildExited, "counter") != 0 {
				t.Fatalf("want one swap and no restart or exit; events:\n%v", evs)
			}
			st := mustMailbox(t, r.h, "counter").Stats()
			if st.DeadLettered != 0 || st.MessagesDropped != 0 {
				t.Fatalf("%d dead-lettered, %d dropped during the swap", st.DeadLettered, st.MessagesDropped)
			}
		})
	}
}

// TestHotSwapRollsBack: a binary that cannot become ready, or that its
// pin refuses, leaves the old incarnation serving untouched.
func TestHotSwapRollsBack(t *testing.T) {
	tests := []struct {
		name    string
		pin     bool
		replace func(t *testing.T, path string)
		want    []error
		wantMsg string
	}{
		{
			name: "not a plugin",
			replace: func(t *testing.T, path string) {
				deployBytes(t, path, []byte("#!/bin/sh\necho not a plugin\nexit 3\n"))
			},
			want:    []error{sdk.ErrSwapFailed, sdk.ErrStartFailed},
			wantMsg: "did not complete the Vigil plugin handshake",
		},
		{
			name:    "pinned checksum",
			pin:     true,
			replace: func(t *testing.T, path string) { deploy(t, path, v2()) },
			want:    []error{sdk.ErrSwapFailed, process.ErrChecksumMismatch},
			wantMsg: "refusing to start it",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bin := swappable(t)
			pin := ""
			if tt.pin {
				data, err := os.ReadFile(bin)
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(data)
				pin = fmt.Sprintf("sha256 = %q", hex.EncodeToString(sum[:]))
			}
			r := serveHost(t, fmt.Sprintf(`
app "s" {
  worker "counter" {
    plugin = %q
    %s
    config { forward_to = "collector" }
  }`+collectorWorker+`
}`, bin, pin), Options{}, nil)
			r.ev.Wait(t, 10*time.Second, "counter started", started("counter", 1))
			r.ev.Wait(t, 10*time.Second, "collector started", started("collector", 1))
			pid := r.h.Worker("counter").Current().PID()

			tt.replace(t, bin)
			err := r.h.Swap(context.Background(), "counter")
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Fatalf("Swap = %v, want an error wrapping %v", err, want)
				}
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), "the running incarnation was kept") {
				t.Fatalf("Swap error %q does not say %q and that the old incarnation was kept", err, tt.wantMsg)
			}
			if got := r.h.Worker("counter").Current().PID(); got != pid || !alive(pid) {
				t.Fatalf("the old incarnation (pid %d) was replaced by %d or died", pid, got)
			}
			if v := version(t, r.h, "counter"); v != "dev" {
				t.Fatalf("version after the rollback = %q, want dev", v)
			}
			// Still processing.
			if err := r.h.Send(context.Background(), "counter", sdk.Msg("1").MustBuild()); err != nil {
				t.Fatal(err)
			}
			if dups, _ := completions(t, r.h, 1, 10*time.Second); dups != 0 {
				t.Fatalf("%d duplicates", dups)
			}
			evs := r.ev.Snapshot()
			if countEvents(evs, sdk.EventSwapFailed, "counter") != 1 || countEvents(evs, sdk.EventChildSwapped, "") != 0 ||
				countEvents(evs, sdk.EventChildRestarting, "") != 0 {
				t.Fatalf("want one failed swap and nothing else; events:\n%v", evs)
			}
		})
	}
}

// TestHotSwapPoolOneMemberAtATime swaps a pool: each member in turn, the
// next one only after the previous one's swap completed.
func TestHotSwapPoolOneMemberAtATime(t *testing.T) {
	bin := swappable(t)
	r := serveHost(t, fmt.Sprintf(`
app "s" {
  worker "pool" {
    plugin = %q
    pool   = 3
    config { forward_to = "collector" }
  }`+collectorWorker+`
}`, bin), Options{}, nil)
	for i := range 3 {
		r.ev.Wait(t, 10*time.Second, "member started", started(fmt.Sprintf("pool_%d", i), 1))
	}
	deploy(t, bin, v2())
	if err := r.h.Swap(context.Background(), "pool"); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, e := range r.ev.Snapshot() {
		if e.Kind == sdk.EventChildSwapped {
			order = append(order, e.Child)
		}
	}
	if got := strings.Join(order, " "); got != "pool_0 pool_1 pool_2" {
		t.Fatalf("swap order %q, want pool_0 pool_1 pool_2", got)
	}
	for i := range 3 {
		if v := version(t, r.h, fmt.Sprintf("pool_%d", i)); v != "v2" {
			t.Fatalf("pool_%d serves %q", i, v)
		}
	}
	if err := r.h.Swap(context.Background(), "nope"); !errors.Is(err, sdk.ErrWorkerNotFound) {
		t.Fatalf("Swap(nope) = %v", err)
	}
}
