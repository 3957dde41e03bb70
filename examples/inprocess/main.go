// Command inprocess is the seed's Quick Start in Go: an app with one
// "service" worker and a pool of four "handlers", supervised in-process.
// The service feeds jobs to the pool's shared inbox; jobs 5 and 10 make a
// handler fail, and the supervisor restarts it (watch the log). Two restarts
// stay within the production preset's intensity (3 in 60 s).
//
//	go run ./examples/inprocess                  # until Ctrl-C
//	go run ./examples/inprocess -duration 3s     # stops by itself
//	go run ./examples/inprocess -preset development
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vigil-run/vigil/sdk"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "inprocess:", err)
		os.Exit(1)
	}
}

func run() error {
	duration := flag.Duration("duration", 0, "stop after this long (0: run until Ctrl-C)")
	presetName := flag.String("preset", "production", "production, development, high_availability or testing")
	flag.Parse()
	preset, err := sdk.ParsePreset(*presetName)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	app := sdk.NewAppWithPreset(preset)
	app.Worker("service", func(ctx context.Context) error { return service(ctx, app) }).
		WorkerPool("handlers", handler, 4)
	fmt.Printf("running with the %v preset; Ctrl-C stops\n", preset)
	err = app.Run(ctx)
	if st := app.Supervisor(); st != nil {
		fmt.Printf("stopped: %d restarts\n", st.Stats().TotalRestarts)
	}
	return err
}

// service sends a job to the handlers every 200 ms.
func service(ctx context.Context, app *sdk.App) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		m, err := sdk.Msg(fmt.Sprintf("job %d", n)).From("service").Build()
		if err != nil {
			return err
		}
		if err := app.Send("handlers", m); err != nil && !errors.Is(err, sdk.ErrInboxClosed) {
			return err
		}
	}
}

// handler takes jobs from the pool's shared inbox. Jobs 5 and 10 fail the
// handler, to show the supervisor restarting it.
func handler(ctx context.Context) error {
	in := sdk.InboxFromContext(ctx)
	for {
		m, err := in.RecvContext(ctx)
		if err != nil {
			return nil // stopped, or the inbox closed
		}
		var n int
		fmt.Sscanf(m.PayloadString(), "job %d", &n)
		if n == 5 || n == 10 {
			return fmt.Errorf("cannot handle %s", m.PayloadString())
		}
		fmt.Println("handled", m.PayloadString())
	}
}
