// Command echo is a Vigil worker plugin that logs its config once, then a
// line per tick, answers health checks (always healthy), and answers every
// request it receives in its mailbox (a message with a reply-to address,
// e.g. from sdk.Runtime.Call) with a reply carrying the same payload.
// Messages without a reply-to are logged at debug level and acknowledged.
//
// Config block (all optional):
//
//	config {
//	  greeting    = "hello"   # text logged on every tick (default "hello")
//	  interval    = "1s"      # time between ticks (default "1s")
//	  slow_prefix = "slow"    # requests whose payload starts with this...
//	  slow_delay  = "0s"      # ...are answered after this delay (default none)
//	}
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
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
	Greeting   string       `json:"greeting"`
	Interval   sdk.Duration `json:"interval"`
	SlowPrefix string       `json:"slow_prefix"`
	SlowDelay  sdk.Duration `json:"slow_delay"`
}

type worker struct{}

// Run logs its config, then a line per tick until the host stops it.
func (*worker) Run(ctx context.Context, rt *sdk.Runtime) error {
	cfg := config{Greeting: "hello", Interval: sdk.Duration(time.Second), SlowPrefix: "slow"}
	if err := rt.DecodeConfig(&cfg); err != nil {
		return err
	}
	if cfg.Interval <= 0 {
		return fmt.Errorf("%w: interval must be positive, got %v", sdk.ErrInvalidSpec, cfg.Interval)
	}
	log := rt.Logger()
	log.Info("echo started", "greeting", cfg.Greeting, "interval", cfg.Interval.String(), "incarnation", rt.Incarnation())
	served := make(chan struct{})
	go func() {
		defer close(served)
		serveRequests(ctx, rt, cfg)
	}()
	defer func() { <-served }()
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

// serveRequests answers requests until ctx is done or the worker has no
// mailbox (e.g. run by a bare test harness).
func serveRequests(ctx context.Context, rt *sdk.Runtime, cfg config) {
	in := rt.Inbox()
	for {
		m, err := in.Recv(ctx)
		if err != nil {
			if ctx.Err() == nil {
				rt.Logger().Debug("inbox closed", "error", err)
			}
			return
		}
		if m.ReplyTo() == "" {
			rt.Logger().Debug("message", "id", m.ID(), "from", m.Sender(), "bytes", len(m.Payload()))
			continue
		}
		if cfg.SlowDelay > 0 && cfg.SlowPrefix != "" && strings.HasPrefix(m.PayloadString(), cfg.SlowPrefix) {
			t := time.NewTimer(time.Duration(cfg.SlowDelay))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		reply := sdk.Msg(m.Payload()).From(rt.ID()).MustBuild()
		if err := rt.Reply(ctx, m, reply); err != nil && ctx.Err() == nil {
			rt.Logger().Warn("reply failed", "to", m.ReplyTo(), "error", err)
		}
	}
}

// HealthCheck reports echo healthy.
func (*worker) HealthCheck(context.Context) error { return nil }
