// Command handler is the application worker of the vigilant_server example:
// run as a pool, its members pull requests from the pool's shared mailbox
// (the server worker's rt.Call to "handlers") and answer each with one
// protocol line, "OK …" or "ERR …".
//
// Requests (the client's line, as sent by the server):
//
//	ECHO <text>      OK <text>
//	SUM <n> [<n> …]  OK <sum of the integers>
//	FIB <n>          OK <n-th Fibonacci number>, 0 ≤ n ≤ 90
//	SLEEP <ms>       OK slept <ms>ms, 0 ≤ ms ≤ max_sleep (a slow request, for demos and tests)
//
// Config block (all optional):
//
//	config {
//	  max_sleep = "2s"   # upper bound of SLEEP (default 2s)
//	}
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
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
	MaxSleep sdk.Duration `json:"max_sleep"`
}

type worker struct{}

// Run answers requests from the inbox, one at a time, until ctx is done.
func (*worker) Run(ctx context.Context, rt *sdk.Runtime) error {
	cfg := config{MaxSleep: sdk.Duration(2 * time.Second)}
	if err := rt.DecodeConfig(&cfg); err != nil {
		return err
	}
	log := rt.Logger()
	log.Info("handler started", "incarnation", rt.Incarnation(), "pid", os.Getpid())
	in := rt.Inbox()
	for n := 0; ; n++ {
		m, err := in.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				log.Info("handler stopping", "requests", n)
				return nil
			}
			return err
		}
		if m.ReplyTo() == "" {
			log.Debug("ignoring a message that is not a request", "id", m.ID())
			continue
		}
		answer := handle(ctx, m.PayloadString(), time.Duration(cfg.MaxSleep))
		if err := rt.Reply(ctx, m, sdk.Msg(answer).MustBuild()); err != nil && ctx.Err() == nil {
			log.Warn("reply failed", "to", m.ReplyTo(), "error", err)
		}
	}
}

// HealthCheck reports the handler healthy: it has no state to go bad.
func (*worker) HealthCheck(context.Context) error { return nil }

// maxFib is the largest n whose Fibonacci number fits an int64 comfortably.
const maxFib = 90

// handle computes the answer line to one request line. It blocks only for
// SLEEP (until the delay elapses or ctx is done).
func handle(ctx context.Context, line string, maxSleep time.Duration) string {
	cmd, rest, _ := strings.Cut(line, " ")
	switch strings.ToUpper(cmd) {
	case "ECHO":
		return "OK " + rest
	case "SUM":
		var sum int64
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return "ERR usage: SUM <n> [<n> …]"
		}
		for _, f := range fields {
			v, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return fmt.Sprintf("ERR SUM: %q is not an integer", f)
			}
			if (v > 0 && sum > (1<<63-1)-v) || (v < 0 && sum < (-1<<63)-v) {
				return "ERR SUM: overflow"
			}
			sum += v
		}
		return "OK " + strconv.FormatInt(sum, 10)
	case "FIB":
		n, err := strconv.Atoi(strings.TrimSpace(rest))
		if err != nil || n < 0 || n > maxFib {
			return fmt.Sprintf("ERR usage: FIB <n> with 0 ≤ n ≤ %d", maxFib)
		}
		return "OK " + strconv.FormatUint(fib(n), 10)
	case "SLEEP":
		ms, err := strconv.Atoi(strings.TrimSpace(rest))
		if err != nil || ms < 0 || time.Duration(ms)*time.Millisecond > maxSleep {
			return fmt.Sprintf("ERR usage: SLEEP <ms> with 0 ≤ ms ≤ %d", maxSleep.Milliseconds())
		}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return fmt.Sprintf("OK slept %dms", ms)
		case <-ctx.Done():
			return "ERR SLEEP: handler stopping"
		}
	case "":
		return "ERR empty request"
	}
	return fmt.Sprintf("ERR unknown command %q", cmd)
}

// fib returns the n-th Fibonacci number (fib(0) = 0), iteratively.
func fib(n int) uint64 {
	var a, b uint64 = 0, 1
	for range n {
		a, b = b, a+b
	}
	return a
}
