// Command producer is a Vigil worker plugin that sends messages to other
// workers, as its config block says, and reports the outcome in a message
// to `report_to`. The host's integration tests, benchmarks and demos use
// it.
//
// Config block:
//
//	config {
//	  mode      = "send"       # see below
//	  to        = "sink"       # destination worker or pool
//	  count     = 10           # messages or calls
//	  timeout   = "1s"         # per call (mode call)
//	  report_to = "collector"  # where the report goes ("" = none)
//	}
//
// Modes:
//
//	send   send count messages "msg-<i>", report "sent=<n>"
//	fill   send until a send fails, report "sent=<n> full=<errors.Is(err, sdk.ErrMailboxFull)>
//	       notfound=<errors.Is(err, sdk.ErrWorkerNotFound)> err=<text>"
//	ping   send count "ping-<i>" to a pong-answering worker, receive count
//	       pongs from its own inbox, report "pongs=<n>"
//	call   call `to` with the payloads of the `payloads` list, in order
//	       ("<payload>@<timeout>" overrides `timeout` for one call), and
//	       report each outcome: "reply:<payload>" or "timeout:<errors.Is(err, sdk.ErrTimeout)>",
//	       then "late=<replies dropped>"
//	bench  on each message "go:<n>" in its inbox: n calls of a 64-byte
//	       payload to `to`; replies with the round-trip times in
//	       nanoseconds (JSON array)
//
// After its work the producer idles until the host stops it.
package main

import (
	"context"
	"encoding/json"
	"errors"
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
	Mode     string       `json:"mode"`
	To       string       `json:"to"`
	Count    int          `json:"count"`
	Timeout  sdk.Duration `json:"timeout"`
	ReportTo string       `json:"report_to"`
	Payloads []string     `json:"payloads"`
}

type worker struct{}

func (*worker) Run(ctx context.Context, rt *sdk.Runtime) error {
	cfg := config{Mode: "send", Count: 10, Timeout: sdk.Duration(time.Second)}
	if err := rt.DecodeConfig(&cfg); err != nil {
		return err
	}
	report := func(s string) error {
		if cfg.ReportTo == "" {
			rt.Logger().Info("report", "text", s)
			return nil
		}
		return rt.Send(ctx, cfg.ReportTo, sdk.Msg(s).MustBuild())
	}
	var err error
	switch cfg.Mode {
	case "send":
		n := 0
		for ; n < cfg.Count; n++ {
			if err = rt.Send(ctx, cfg.To, sdk.Msg("msg-"+strconv.Itoa(n)).MustBuild()); err != nil {
				break
			}
		}
		err = errors.Join(err, report("sent="+strconv.Itoa(n)))
	case "fill":
		n := 0
		var serr error
		for ; n < 1_000_000; n++ {
			if serr = rt.Send(ctx, cfg.To, sdk.Msg("fill-"+strconv.Itoa(n)).MustBuild()); serr != nil {
				break
			}
		}
		err = report(fmt.Sprintf("sent=%d full=%t notfound=%t err=%v", n, errors.Is(serr, sdk.ErrMailboxFull), errors.Is(serr, sdk.ErrWorkerNotFound), serr))
	case "ping":
		for i := 0; i < cfg.Count && err == nil; i++ {
			err = rt.Send(ctx, cfg.To, sdk.Msg("ping-"+strconv.Itoa(i)).MustBuild())
		}
		pongs := 0
		for ; pongs < cfg.Count && err == nil; pongs++ {
			var m *sdk.Message
			if m, err = rt.Inbox().Recv(ctx); err == nil && !strings.HasPrefix(m.PayloadString(), "pong:ping-") {
				err = fmt.Errorf("unexpected message %q", m.PayloadString())
			}
		}
		if err == nil {
			err = report("pongs=" + strconv.Itoa(pongs))
		}
	case "call":
		for _, p := range cfg.Payloads {
			timeout := time.Duration(cfg.Timeout)
			if i := strings.LastIndexByte(p, '@'); i >= 0 {
				if d, perr := time.ParseDuration(p[i+1:]); perr == nil {
					p, timeout = p[:i], d
				}
			}
			rep, cerr := rt.Call(ctx, cfg.To, sdk.Msg(p).MustBuild(), timeout)
			switch {
			case cerr == nil:
				err = report("reply:" + rep.PayloadString())
			case errors.Is(cerr, sdk.ErrTimeout):
				err = report("timeout:true")
			default:
				err = report("error:" + cerr.Error())
			}
			if err != nil {
				break
			}
		}
		if err == nil {
			// Give a late reply the time to arrive (and be dropped) before
			// reporting the count: wait for one more call to answer.
			_, _ = rt.Call(ctx, cfg.To, sdk.Msg("sync").MustBuild(), 5*time.Second)
			err = report("late=" + strconv.FormatUint(rt.Inbox().LateReplies(), 10))
		}
	case "bench":
		err = bench(ctx, rt, cfg)
	default:
		return fmt.Errorf("%w: unknown mode %q", sdk.ErrInvalidSpec, cfg.Mode)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	<-ctx.Done()
	return nil
}

// bench answers "go:<n>" requests with n call round-trip times.
func bench(ctx context.Context, rt *sdk.Runtime, cfg config) error {
	payload := make([]byte, 64)
	for {
		m, err := rt.Inbox().Recv(ctx)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(strings.TrimPrefix(m.PayloadString(), "go:"))
		if err != nil || n <= 0 {
			continue
		}
		rtts := make([]int64, 0, n)
		for range n {
			begin := time.Now()
			if _, err := rt.Call(ctx, cfg.To, sdk.Msg(payload).MustBuild(), 5*time.Second); err != nil {
				return err
			}
			rtts = append(rtts, int64(time.Since(begin)))
		}
		js, _ := json.Marshal(rtts)
		if err := rt.Reply(ctx, m, sdk.Msg(js).MustBuild()); err != nil {
			return err
		}
	}
}
