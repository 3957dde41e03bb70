// Command counter is a Vigil worker plugin that consumes its mailbox: it
// receives messages one by one (at-least-once: each is acknowledged when
// the next is received), optionally forwards each one to another worker's
// mailbox, answers pings, and can crash on a given payload. The host's
// integration tests and the messaging demos use it as a sink.
//
// Config block (all optional):
//
//	config {
//	  forward_to = "collector"  # send "<own id>|<payload>" there per message
//	  delay      = "0s"         # time spent on each message
//	  crash_on   = "poison"     # exit with status 3 on this payload
//	  pong       = false        # answer each message with "pong:<payload>" to its sender
//	}
//
// A request (a message with a reply-to address, e.g. from Call) is
// answered with "version:<version>", the version the binary was built
// with (`go build -ldflags "-X main.version=v2"`; default "dev"), and is not
// forwarded: the hot-swap tests ask which binary serves.
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
	ForwardTo string       `json:"forward_to"`
	Delay     sdk.Duration `json:"delay"`
	CrashOn   string       `json:"crash_on"`
	Pong      bool         `json:"pong"`
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

type worker struct{}

// Run consumes the inbox until the host stops the worker.
func (*worker) Run(ctx context.Context, rt *sdk.Runtime) error {
	var cfg config
	if err := rt.DecodeConfig(&cfg); err != nil {
		return err
	}
	in := rt.Inbox()
	for n := 0; ; n++ {
		m, err := in.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				rt.Logger().Info("counter stopping", "messages", n)
				return nil
			}
			return err
		}
		if cfg.CrashOn != "" && m.PayloadString() == cfg.CrashOn {
			rt.Logger().Error("crashing on purpose", "payload", cfg.CrashOn, "attempt", in.Attempts(m))
			os.Exit(3)
		}
		if m.ReplyTo() != "" {
			if err := rt.Reply(ctx, m, sdk.Msg("version:"+version).MustBuild()); err != nil && ctx.Err() == nil {
				rt.Logger().Warn("reply failed", "to", m.ReplyTo(), "error", err)
			}
			continue
		}
		if cfg.Delay > 0 {
			t := time.NewTimer(time.Duration(cfg.Delay))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
		}
		if cfg.ForwardTo != "" {
			// Forwarded at normal priority, so the destination's queue keeps
			// the order in which this worker processed them.
			fwd := sdk.Msg(rt.ID() + "|" + m.PayloadString()).MustBuild()
			if err := rt.Send(ctx, cfg.ForwardTo, fwd); err != nil {
				return fmt.Errorf("forward %s: %w", m.ID(), err)
			}
		}
		if cfg.Pong {
			if err := rt.Send(ctx, m.Sender(), sdk.Msg("pong:"+m.PayloadString()).MustBuild()); err != nil {
				return fmt.Errorf("pong to %s: %w", m.Sender(), err)
			}
		}
	}
}
