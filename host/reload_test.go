package host

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/host/process"
	"github.com/vigil-run/vigil/sdk"
)

// reloadApp is the app the reload tests start from; {BIN} is a counter
// binary the test may replace.
const reloadApp = `
app "r" {
  worker "a" {
    plugin = "{BIN}"
  }
  worker "b" {
    plugin = "{P}/counter"
  }
  worker "pool" {
    plugin = "{P}/counter"
    pool   = 2
  }
  supervisor "inner" {
    worker "c" {
      plugin = "{P}/counter"
    }
  }
}`

func TestReload(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(app string) string
		before  func(t *testing.T, bin string) // e.g. replace the binary
		want    ReloadReport                   // Unchanged is not compared
		wantErr error
		ids     []string // worker IDs afterwards, in order
	}{
		{
			name: "add and remove",
			edit: func(s string) string {
				return strings.Replace(s, `worker "b" {`, `worker "d" {`, 1)
			},
			want: ReloadReport{Added: []string{"d"}, Removed: []string{"b"}},
			ids:  []string{"a", "d", "pool_0", "pool_1", "c"},
		},
		{
			name: "process settings: hot swap",
			edit: func(s string) string {
				return strings.Replace(s, `plugin = "{BIN}"`, `plugin = "{BIN}"
    args   = ["-x"]`, 1)
			},
			want: ReloadReport{Swapped: []string{"a"}},
			ids:  []string{"a", "b", "pool_0", "pool_1", "c"},
		},
		{
			name:   "binary replaced on disk: hot swap",
			edit:   func(s string) string { return s },
			before: func(t *testing.T, bin string) { deploy(t, bin, v2()) },
			want:   ReloadReport{Swapped: []string{"a"}},
			ids:    []string{"a", "b", "pool_0", "pool_1", "c"},
		},
		{
			name: "supervision settings: restart",
			edit: func(s string) string {
				return strings.Replace(s, `worker "c" {`, `worker "c" {
      shutdown_timeout = "2s"`, 1)
			},
			want: ReloadReport{Restarted: []string{"c"}},
			ids:  []string{"a", "b", "pool_0", "pool_1", "c"},
		},
		{
			name: "pool grows and shrinks",
			edit: func(s string) string { return strings.Replace(s, `pool   = 2`, `pool   = 3`, 1) },
			want: ReloadReport{Added: []string{"pool_2"}},
			ids:  []string{"a", "b", "pool_0", "pool_1", "pool_2", "c"},
		},
		{
			name:    "a new supervisor needs a restart",
			edit:    func(s string) string { return strings.Replace(s, `supervisor "inner" {`, `supervisor "inner2" {`, 1) },
			wantErr: ErrRestartRequired,
			ids:     []string{"a", "b", "pool_0", "pool_1", "c"},
		},
		{
			name: "a worker moved to another supervisor needs a restart",
			edit: func(s string) string {
				s = strings.Replace(s, `  worker "b" {
    plugin = "{P}/counter"
  }
`, "", 1)
				return strings.Replace(s, `    worker "c" {`, `    worker "b" {
      plugin = "{P}/counter"
    }
    worker "c" {`, 1)
			},
			wantErr: ErrRestartRequired,
			ids:     []string{"a", "b", "pool_0", "pool_1", "c"},
		},
		{
			name: "a bad binary refuses the whole reload",
			edit: func(s string) string {
				return strings.Replace(s, `worker "b" {`, `worker "e" { sha256 = "`+strings.Repeat("ab", 32)+`" }
  worker "b" {`, 1)
			},
			wantErr: process.ErrChecksumMismatch,
			ids:     []string{"a", "b", "pool_0", "pool_1", "c"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bin := swappable(t)
			src := strings.ReplaceAll(reloadApp, "{BIN}", bin)
			r := serveHost(t, src, Options{}, nil)
			for _, id := range []string{"a", "b", "pool_0", "pool_1", "c"} {
				r.ev.Wait(t, 20*time.Second, id+" started", started(id, 1))
			}
			if tt.before != nil {
				tt.before(t, bin)
			}
			edited := strings.ReplaceAll(tt.edit(reloadApp), "{BIN}", bin)
			if strings.Contains(edited, `worker "e" { sha256`) { // one-line blocks hold one attribute
				edited = strings.Replace(edited, `worker "e" { sha256 = "`+strings.Repeat("ab", 32)+`" }`, `worker "e" {
    plugin = "{P}/counter"
    sha256 = "`+strings.Repeat("ab", 32)+`"
  }`, 1)
			}
			app, err := config.Load(writeConfigTB(t, edited))
			if err != nil {
				t.Fatalf("config: %s", config.Format(err))
			}
			rep, err := r.h.Reload(context.Background(), app)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || rep != nil {
					t.Fatalf("Reload = %+v, %v; want no report and an error wrapping %v", rep, err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatalf("Reload: %v", err)
				}
				got := *rep
				got.Unchanged = nil
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Fatalf("report %+v, want %+v", got, tt.want)
				}
			}
			if got := r.h.WorkerIDs(); !slices.Equal(got, tt.ids) {
				t.Fatalf("workers %v, want %v", got, tt.ids)
			}
			// Every worker of the tree runs, with its mailbox.
			for _, id := range tt.ids {
				if _, err := r.h.Call(context.Background(), id, sdk.Msg("version?").MustBuild(), 20*time.Second); err != nil {
					t.Fatalf("%s after the reload: %v", id, err)
				}
			}
			for _, id := range tt.want.Removed {
				if err := r.h.Send(context.Background(), id, sdk.Msg("x").MustBuild()); !errors.Is(err, sdk.ErrWorkerNotFound) {
					t.Fatalf("send to removed %s: %v", id, err)
				}
			}
			if tt.name == "binary replaced on disk: hot swap" {
				if v := version(t, r.h, "a"); v != "v2" {
					t.Fatalf("a serves %q after the reload", v)
				}
			}
		})
	}
}

// TestReloadAfterAFailedAdd: a worker whose start fails in a reload is
// reported as failed and is not running; the next reload tries again (no
// panic on the half-applied state), a swap of it says it is not running,
// and once its binary is fixed a reload starts it.
func TestReloadAfterAFailedAdd(t *testing.T) {
	bin := swappable(t)
	deployBytes(t, bin, []byte("#!/bin/sh\nexit 3\n")) // passes the checks, fails the handshake
	r := serveHost(t, strings.ReplaceAll(reloadApp, "{BIN}", pluginDir()+"/counter"), Options{}, nil)
	for _, id := range []string{"a", "b", "pool_0", "pool_1", "c"} {
		r.ev.Wait(t, 20*time.Second, id+" started", started(id, 1))
	}
	withBad := strings.ReplaceAll(strings.Replace(reloadApp, `worker "b" {`, `worker "bad" {
    plugin = "`+bin+`"
  }
  worker "b" {`, 1), "{BIN}", pluginDir()+"/counter")
	app, err := config.Load(writeConfigTB(t, withBad))
	if err != nil {
		t.Fatalf("config: %s", config.Format(err))
	}
	for range 2 {
		rep, err := r.h.Reload(context.Background(), app)
		if !errors.Is(err, sdk.ErrStartFailed) || rep == nil || !slices.Equal(rep.Failed, []string{"bad"}) || len(rep.Added) != 0 {
			t.Fatalf("Reload = %+v, %v; want bad failed to start", rep, err)
		}
	}
	if err := r.h.Swap(context.Background(), "bad"); !errors.Is(err, sdk.ErrWorkerNotFound) {
		t.Fatalf("Swap(bad) = %v, want ErrWorkerNotFound", err)
	}
	deploy(t, bin, pluginDir()+"/counter")
	rep, err := r.h.Reload(context.Background(), app)
	if err != nil || !slices.Equal(rep.Added, []string{"bad"}) {
		t.Fatalf("Reload after the fix = %+v, %v; want bad added", rep, err)
	}
	if v := version(t, r.h, "bad"); v != "dev" {
		t.Fatalf("bad serves %q", v)
	}
	if got, want := r.h.WorkerIDs(), []string{"a", "bad", "b", "pool_0", "pool_1", "c"}; !slices.Equal(got, want) {
		t.Fatalf("workers %v, want %v", got, want)
	}
}

// TestNothingStartsAfterKill: after Kill (a second Ctrl-C), a reload or a
// swap starts no process.
func TestNothingStartsAfterKill(t *testing.T) {
	r := serveHost(t, `
app "k" {
  worker "a" {
    plugin = "{P}/counter"
  }
}`, Options{}, nil)
	r.ev.Wait(t, 20*time.Second, "a started", started("a", 1))
	r.h.Kill()
	eventually(t, 10*time.Second, "a's process killed", func() bool { return len(pluginProcs()) == 0 })
	app, err := config.Load(writeConfigTB(t, `
app "k" {
  worker "a" {
    plugin = "{P}/counter"
    args   = ["-x"]
  }
  worker "b" {
    plugin = "{P}/counter"
  }
}`))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.h.Reload(context.Background(), app)
	if !errors.Is(err, errHostKilled) || rep == nil || len(rep.Added)+len(rep.Swapped) != 0 {
		t.Fatalf("Reload after Kill = %+v, %v; want nothing started", rep, err)
	}
	// A swap fails (a's child refuses starts), or finds a already stopped
	// and only replaces its child: either way it starts nothing.
	_ = r.h.Swap(context.Background(), "a")
	if procs := pluginProcs(); len(procs) != 0 {
		t.Fatalf("processes started after Kill: %v", procs)
	}
}
