// Command ticker is a Vigil worker plugin that logs "tick N" every
// interval until the host stops it, or until it has ticked `ticks` times,
// when it returns normally (a transient ticker is then not restarted).
//
// Config block (all optional):
//
//	config {
//	  interval = "1s"   # time between ticks (default "1s")
//	  ticks    = 0      # return nil after this many ticks; 0 = never
//	}
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/vigil-run/vigil/sdk"
)

func main() {
	if err := sdk.Serve(&worker{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type config struct {
	Interval sdk.Duration `json:"interval"`
	Ticks    int          `json:"ticks"`
}

type worker struct{}

// Run logs a tick per interval until stopped or done.
func (*worker) Run(ctx context.Context, rt *sdk.Runtime) error {
	cfg := config{Interval: sdk.Duration(time.Second)}
	if err := rt.DecodeConfig(&cfg); err != nil {
		return err
	}
	if cfg.Interval <= 0 || cfg.Ticks < 0 {
		return fmt.Errorf("%w: want interval > 0 and ticks >= 0, got %v and %d", sdk.ErrInvalidSpec, cfg.Interval, cfg.Ticks)
	}
	t := time.NewTicker(time.Duration(cfg.Interval))
	defer t.Stop()
	for n := 1; cfg.Ticks == 0 || n <= cfg.Ticks; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			rt.Logger().Info(fmt.Sprintf("tick %d", n))
		}
	}
	rt.Logger().Info("done ticking", "ticks", cfg.Ticks)
	return nil
}
