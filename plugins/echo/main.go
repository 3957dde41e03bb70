// Command echo is a Vigil worker plugin that logs its config once, then a
// line per tick, and answers health checks (always healthy). It is the
// smallest useful worker; the mailbox echo (replying to every message it
// receives) arrives with the mailbox bridge.
//
// Config block (all optional):
//
//	config {
//	  greeting = "hello"   # text logged on every tick (default "hello")
//	  interval = "1s"      # time between ticks (default "1s")
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
	Greeting string       `json:"greeting"`
	Interval sdk.Duration `json:"interval"`
}

type worker struct{}

// Run logs its config, then a line per tick until the host stops it.
func (*worker) Run(ctx context.Context, rt *sdk.Runtime) error {
	cfg := config{Greeting: "hello", Interval: sdk.Duration(time.Second)}
	if err := rt.DecodeConfig(&cfg); err != nil {
		return err
	}
	if cfg.Interval <= 0 {
		return fmt.Errorf("%w: interval must be positive, got %v", sdk.ErrInvalidSpec, cfg.Interval)
	}
	log := rt.Logger()
	log.Info("echo started", "greeting", cfg.Greeting, "interval", cfg.Interval.String(), "incarnation", rt.Incarnation())
	t := time.NewTicker(time.Duration(cfg.Interval))
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			log.Info("echo stopping", "ticks", n-1)
			return nil
		case <-t.C:
			log.Info(cfg.Greeting, "tick", n)
		}
	}
}

// HealthCheck reports echo healthy.
func (*worker) HealthCheck(context.Context) error { return nil }
