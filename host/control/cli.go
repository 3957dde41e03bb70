package control

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vigil-run/vigil/host"
)

// Usage documents the control commands.
const Usage = `  vigil status [--json] [config.hcl]          show the supervision tree of the running host
  vigil start|stop|restart <worker>           start, stop or restart one worker
  vigil send [--priority P] [--ttl D] <worker> <payload>
                                              queue a message in a worker's (or pool's) mailbox
  vigil deadletters <worker> [--replay ID | --discard ID]
                                              list, replay or discard a mailbox's dead letters
  vigil events                                follow lifecycle events as JSON lines (until Ctrl-C or the host stops)
  vigil reload                                re-read the config file: add, remove and change workers;
                                              changed plugin binaries are hot-swapped
  vigil swap <worker|pool>                    hot-swap a worker (a pool one member at a time) to its
                                              plugin binary as it is on disk now
  control commands find the host's socket from the config file (default
  ./config.hcl, or --config FILE) like ` + "`vigil run`" + ` does, or take --control PATH;
  --control tcp://127.0.0.1:PORT reaches a host run with --control-tcp (the token
  is read from the file next to the config's socket, .<config>.vigil.token)`

// Commands lists the command names handled by [Run].
var Commands = []string{"status", "start", "stop", "restart", "send", "deadletters", "events", "reload", "swap"}

// parse parses flags anywhere among args (flag stops at the first
// positional argument; this resumes after it) and returns the positionals.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for range len(args) + 1 {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return pos, nil
}

// Run executes control command cmd (one of [Commands]) with its arguments,
// writing its output to stdout. It blocks for one round trip to the host
// (at most 30 s); "events" blocks until the host stops, ctx is done or
// SIGINT/SIGTERM arrives, and then returns nil. Errors wrap [ErrNoHost] when no host listens on the
// socket; the host's own errors (unknown worker, …) are returned as sent.
func Run(ctx context.Context, cmd string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	control := fs.String("control", "", "control socket path")
	config := fs.String("config", "", "config file (default ./config.hcl)")
	fs.StringVar(config, "c", "", "config file")
	asJSON := fs.Bool("json", false, "print JSON")
	priority := fs.String("priority", "", "message priority")
	ttl := fs.Duration("ttl", 0, "message time to live")
	msgID := fs.String("id", "", "message ID")
	replay := fs.String("replay", "", "dead letter to replay")
	discard := fs.String("discard", "", "dead letter to discard")
	pos, err := parse(fs, args)
	if err != nil {
		return fmt.Errorf("%s: %w\nusage:\n%s", cmd, err, Usage)
	}
	want := map[string]int{"status": 0, "start": 1, "stop": 1, "restart": 1, "send": 2, "deadletters": 1, "events": 0, "reload": 0, "swap": 1}
	n, ok := want[cmd]
	if !ok {
		return fmt.Errorf("unknown command %q\nusage:\n%s", cmd, Usage)
	}
	if cmd == "status" && len(pos) == 1 && *config == "" {
		*config, pos = pos[0], nil
	}
	if len(pos) != n {
		return fmt.Errorf("%s takes %d argument(s), got %d\nusage:\n%s", cmd, n, len(pos), Usage)
	}
	cfg := *config
	if cfg == "" {
		cfg = "config.hcl"
	}
	path := *control
	if path == "" {
		path = SocketPath(cfg)
	}
	c := NewClient(path, cfg)
	switch cmd {
	case "status":
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		WriteStatus(stdout, st)
		return nil
	case "events":
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		enc := json.NewEncoder(stdout)
		err := c.Events(ctx, func(e Event) error { return enc.Encode(e) })
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil
		}
		return err
	case "start", "stop", "restart":
		if err := c.Action(ctx, cmd, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s\n", pos[0], map[string]string{"start": "started", "stop": "stopped", "restart": "restarted"}[cmd])
		return nil
	case "reload":
		rep, err := c.Reload(ctx)
		if rep != nil {
			WriteReload(stdout, rep)
		}
		return err
	case "swap":
		if err := c.Swap(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: swapped\n", pos[0])
		return nil
	case "send":
		id, err := c.Send(ctx, pos[0], SendRequest{Payload: pos[1], Priority: *priority, TTL: Duration(*ttl), ID: *msgID})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "sent %s to %s\n", id, pos[0])
		return nil
	default: // deadletters
		switch {
		case *replay != "" && *discard != "":
			return fmt.Errorf("deadletters: give --replay or --discard, not both")
		case *replay != "":
			if err := c.Replay(ctx, pos[0], *replay); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "replayed %s to %s\n", *replay, pos[0])
			return nil
		case *discard != "":
			if err := c.Discard(ctx, pos[0], *discard); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "discarded %s of %s\n", *discard, pos[0])
			return nil
		}
		dls, err := c.DeadLetters(ctx, pos[0])
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(dls)
		}
		WriteDeadLetters(stdout, dls)
		return nil
	}
}

// WriteStatus prints st as an aligned table, the tree shown by indentation.
func WriteStatus(w io.Writer, st *Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tUPTIME\tRESTARTS\tMAILBOX\tINFLIGHT\tDEAD\tRSS\tSHA256\tLAST EXIT")
	for _, n := range st.Nodes {
		name := strings.Repeat("  ", n.Depth) + n.ID
		if n.Kind == KindSupervisor {
			fmt.Fprintf(tw, "%s/\t%s\t-\t-\t%d\t-\t-\t-\t-\t-\t%s\n", name, n.State, n.Restarts, dash(n.LastExit))
			continue
		}
		pid, up, mem := "-", "-", "-"
		if n.PID > 0 {
			pid = fmt.Sprint(n.PID)
			up = time.Duration(n.Uptime).Truncate(time.Second).String()
		}
		if n.RSSBytes > 0 {
			mem = fmt.Sprintf("%.1fMiB", float64(n.RSSBytes)/(1<<20))
		}
		sum := n.SHA256
		if len(sum) > 12 {
			sum = sum[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", name, n.State, pid, up, n.Restarts,
			n.Mailbox, n.InFlight, n.DeadLetters, mem, dash(sum), dash(oneLine(n.LastExit)))
	}
	tw.Flush()
}

// WriteReload prints what a reload did, one line per kind of change.
func WriteReload(w io.Writer, r *host.ReloadReport) {
	for _, l := range []struct {
		what string
		ids  []string
	}{{"added", r.Added}, {"removed", r.Removed}, {"swapped", r.Swapped}, {"restarted", r.Restarted}, {"failed", r.Failed}} {
		if len(l.ids) > 0 {
			fmt.Fprintf(w, "%-9s %s\n", l.what, strings.Join(l.ids, ", "))
		}
	}
	if len(r.Added)+len(r.Removed)+len(r.Swapped)+len(r.Restarted)+len(r.Failed) == 0 {
		fmt.Fprintln(w, "nothing changed")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// WriteDeadLetters prints dead letters as an aligned table.
func WriteDeadLetters(w io.Writer, dls []DeadLetter) {
	if len(dls) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMESSAGE\tPRIORITY\tREASON\tATTEMPTS\tAT\tPAYLOAD")
	for _, d := range dls {
		reason := d.Reason
		if d.Poison {
			reason += " (poison)"
		}
		p := d.Payload
		if len(p) > 40 {
			p = p[:40] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%q\n", d.ID, d.MessageID, d.Priority, reason, d.Attempts, d.At.Format(time.RFC3339), p)
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}
