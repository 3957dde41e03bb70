// Command vigil runs an app definition: every worker of an HCL config file
// as its own plugin process, supervised by strategy, intensity and backoff.
//
//	vigil run [--control PATH] [--control-tcp ADDR] [--metrics ADDR] [config.hcl]   run the app until Ctrl-C
//	vigil validate config.hcl                 check the file; print OK or every problem
//	vigil status|start|stop|restart|send|deadletters|events|reload|swap …   operate the running host
//
// `vigil run` serves a control API on a unix socket (mode 0600): --control
// PATH, default "<config dir>/.<config name>.vigil.sock" (see
// control.SocketPath). The control commands connect to it.
//
// Ctrl-C, SIGTERM or SIGHUP (a closed terminal) stops the tree gracefully
// in reverse start order, each worker within its shutdown_timeout (Stop RPC,
// then SIGTERM, then SIGKILL of its process group); a second Ctrl-C kills
// every worker at once.
//
// Exit status: 0 after a clean stop (or a valid config); 1 for an invalid
// config, a worker that could not be started or any other error; 2 when the
// root supervisor gave up because its restart intensity was exceeded
// (every worker has been stopped by then); 3 when the shutdown had to kill
// workers that ignored their stop request.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-run/vigil/host"
	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/host/control"
	"github.com/vigil-run/vigil/host/metrics"
	"github.com/vigil-run/vigil/sdk"
)

// Exit statuses (documented in the package comment).
const (
	exitOK          = 0
	exitFailure     = 1
	exitGaveUp      = 2
	exitKilledOnEnd = 3
)

// exitError carries a process exit status out of run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		code := exitFailure
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if code != exitOK {
			msg := err.Error()
			if !strings.HasPrefix(msg, "vigil:") {
				msg = "vigil: " + msg
			}
			fmt.Fprintln(os.Stderr, msg)
		}
		os.Exit(code)
	}
}

const usage = `usage:
  vigil run [--control PATH] [--control-tcp ADDR] [--metrics ADDR] [config.hcl]
                                              run the app (default ./config.hcl) until Ctrl-C;
                                              --metrics serves Prometheus metrics on a loopback
                                              host:port (overrides the config's metrics attribute);
                                              --control-tcp serves the control API on a loopback
                                              host:port too, with a bearer token (see vigil help)
  vigil validate config.hcl                   check a config file and print OK or its problems
` + control.Usage

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("no command\n%s", usage)
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		sock := fs.String("control", "", "control socket path")
		metricsAddr := fs.String("metrics", "", "loopback host:port of the Prometheus endpoint")
		tcpAddr := fs.String("control-tcp", "", "loopback host:port of the control API over TCP (token-protected)")
		if err := fs.Parse(rest); err != nil {
			return fmt.Errorf("run: %w\n%s", err, usage)
		}
		rest = fs.Args()
		if len(rest) > 1 {
			return fmt.Errorf("run takes at most one config file (flags go before it)\n%s", usage)
		}
		path := "config.hcl"
		if len(rest) == 1 {
			path = rest[0]
		}
		if *sock == "" {
			*sock = control.SocketPath(path)
		}
		if *metricsAddr != "" {
			if err := metrics.CheckAddr(*metricsAddr); err != nil {
				return fmt.Errorf("run --metrics: %w", err)
			}
		}
		if *tcpAddr != "" {
			if err := config.LoopbackAddress(*tcpAddr); err != nil {
				return fmt.Errorf("run --control-tcp: %w (the control API serves loopback only)", err)
			}
		}
		return runApp(path, *sock, *tcpAddr, *metricsAddr, stderr)
	case "validate":
		if len(rest) != 1 {
			return fmt.Errorf("validate takes exactly one config file\n%s", usage)
		}
		if _, err := load(rest[0], stderr); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "OK")
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		if slices.Contains(control.Commands, cmd) {
			return control.Run(context.Background(), cmd, rest, stdout)
		}
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

// load loads and validates path, rendering diagnostics to w.
func load(path string, w io.Writer) (*config.App, error) {
	app, err := config.Load(path)
	if err != nil {
		config.Render(w, err)
		return nil, &exitError{exitFailure, fmt.Errorf("%s is not a valid app definition; fix the problems above and run `vigil validate %s`", path, path)}
	}
	return app, nil
}

func runApp(path, sock, tcpAddr, metricsAddr string, stderr io.Writer) error {
	app, err := load(path, stderr)
	if err != nil {
		return err
	}
	if metricsAddr == "" {
		metricsAddr = app.Metrics
	}
	var m *metrics.Metrics // Observe and ObserveDelivery do nothing on nil
	opts := host.Options{Output: stderr}
	if metricsAddr != "" {
		opts.EventHook = func(e sdk.Event) { m.Observe(e) }
		opts.DeliveryHook = func(w string, d time.Duration) { m.ObserveDelivery(w, d) }
	}
	h, err := host.New(app, opts)
	if err != nil {
		return &exitError{exitFailure, fmt.Errorf("cannot run %s:\n%w", path, err)}
	}
	if metricsAddr != "" {
		m = metrics.New(h) // before Serve: no event or delivery yet
		srv, err := metrics.Listen(metricsAddr, m)
		if err != nil {
			return &exitError{exitFailure, fmt.Errorf("metrics: %w", err)}
		}
		defer srv.Close()
		h.Logger().Info("metrics listening", "url", "http://"+srv.Addr()+"/metrics")
	}
	ctl, err := control.Listen(sock, h, path)
	if err != nil {
		return &exitError{exitFailure, err}
	}
	defer ctl.Close()
	h.Logger().Info("control API listening", "socket", sock)
	if tcpAddr != "" {
		tcp, err := control.ListenTCP(tcpAddr, control.TokenPath(path), h, path)
		if err != nil {
			return &exitError{exitFailure, err}
		}
		defer tcp.Close()
		h.Logger().Info("control API listening on TCP (requests need the bearer token in the token file)", "address", tcp.Path(), "token_file", control.TokenPath(path))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	served := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			h.Logger().Info("shutting down: stopping every worker in reverse order (Ctrl-C again kills them at once)", "signal", s)
			cancel()
		case <-served:
			return
		}
		select {
		case s := <-sigs:
			h.Logger().Warn("second signal: killing every worker now", "signal", s)
			h.Kill()
		case <-served:
		}
	}()
	err = h.Serve(ctx)
	close(served)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sdk.ErrTooManyRestarts):
		return &exitError{exitGaveUp, fmt.Errorf("%w\nthe app gave up after too many restarts; the log above shows why the workers failed (raise max_restarts/max_seconds only once the cause is fixed)", err)}
	case errors.Is(err, sdk.ErrStartFailed):
		return &exitError{exitFailure, fmt.Errorf("%w\na worker could not be started; check its plugin path and build (`make plugins`), then run `vigil validate %s`", err, path)}
	case errors.Is(err, sdk.ErrShutdownTimeout):
		return &exitError{exitKilledOnEnd, fmt.Errorf("%w\nsome workers ignored their stop request and were killed; raise their shutdown_timeout if they need longer", err)}
	default:
		return &exitError{exitFailure, err}
	}
}
