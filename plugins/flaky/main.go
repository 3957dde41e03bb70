// Command flaky is a Vigil worker plugin that misbehaves on purpose, as its
// config block says. Demos and the host's integration tests use it to show
// how each failure is detected and handled.
//
// Config block:
//
//	config {
//	  mode            = "fail"  # see below (default "run")
//	  after           = "1s"    # when the misbehaviour starts (default "1s")
//	  code            = 3       # exit status for mode "exit" (default 3)
//	  start_delay     = "0s"    # sleep before reporting started (a slow start)
//	  leak_mb_per_sec = 50      # mode "leak": MiB allocated per second (default 50)
//	  leak_max_mb     = 1024    # mode "leak": stop growing here (default 1024)
//	  ignore_sigterm  = false   # ignore SIGTERM (with hang_on_stop: only SIGKILL ends it)
//	  line_bytes      = 0       # mode "flood_log": raw line length (0: hclog lines)
//	  to              = "sink"  # mode "oversize": destination
//	  sizes           = [2048]  # mode "oversize": payload sizes to send, in bytes
//	  report_to       = "col"   # mode "oversize": where the reports go
//	}
//
// Modes:
//
//	run           healthy forever; returns nil when stopped
//	ok_exit       returns nil after `after` (a normal exit)
//	fail          returns an error after `after` (exit status 1)
//	fail_start    fails its start (Init returns an error)
//	panic         panics after `after` (exit status 2)
//	exit          calls os.Exit(code) after `after`
//	segfault      writes to a PROT_NONE page after `after`: a real
//	              SIGSEGV, which the Go runtime reports before exiting 2
//	hang_on_stop  works, but ignores the host's stop (must be killed)
//	leak          grows its RSS by leak_mb_per_sec MiB every second
//	unhealthy     runs, but its health check fails from `after` on
//	orphan        after `after`, starts `sleep 60` in a new session that
//	              keeps the plugin's stderr open, then exits 1: the host
//	              must not wait for that pipe to close
//	flood_log     works, but writes log lines to its stderr as fast as it
//	              can until stopped: hclog JSON lines through its logger,
//	              or, with line_bytes > 0, raw lines of that length
//	oversize      sends "before" to `to`, then one message per entry of
//	              `sizes` with a payload of that many bytes, then "after";
//	              reports each big send to `report_to` as
//	              "size=<n> too_large=<errors.Is(err, sdk.ErrMessageTooLarge)> err=<text>",
//	              then idles (a failed small send fails the worker)
//
// start_delay delays the moment the host learns the worker has started, so
// it exercises the host's start timeout.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
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
	Mode         string       `json:"mode"`
	After        sdk.Duration `json:"after"`
	Code         int          `json:"code"`
	StartDelay   sdk.Duration `json:"start_delay"`
	LeakMBPerSec int          `json:"leak_mb_per_sec"`
	LeakMaxMB    int          `json:"leak_max_mb"`
	OrphanPID    string       `json:"orphan_pid_file"`
	IgnoreTERM   bool         `json:"ignore_sigterm"`
	LineBytes    int          `json:"line_bytes"`
	To           string       `json:"to"`
	Sizes        []int        `json:"sizes"`
	ReportTo     string       `json:"report_to"`
}

var modes = map[string]bool{
	"run": true, "ok_exit": true, "fail": true, "fail_start": true, "panic": true, "exit": true,
	"segfault": true, "hang_on_stop": true, "leak": true, "unhealthy": true, "orphan": true,
	"flood_log": true, "oversize": true,
}

type worker struct {
	cfg       config
	unhealthy atomic.Bool
}

// Init decodes the config and applies start_delay and fail_start.
func (w *worker) Init(ctx context.Context, rt *sdk.Runtime) error {
	w.cfg = config{Mode: "run", After: sdk.Duration(time.Second), Code: 3, LeakMBPerSec: 50, LeakMaxMB: 1024}
	if err := rt.DecodeConfig(&w.cfg); err != nil {
		return err
	}
	if !modes[w.cfg.Mode] {
		return fmt.Errorf("%w: flaky: unknown mode %q", sdk.ErrInvalidSpec, w.cfg.Mode)
	}
	if w.cfg.IgnoreTERM {
		signal.Ignore(syscall.SIGTERM)
	}
	rt.Logger().Info("flaky starting", "mode", w.cfg.Mode, "after", w.cfg.After.String(), "start_delay", w.cfg.StartDelay.String())
	if err := sleep(ctx, time.Duration(w.cfg.StartDelay)); err != nil {
		return err
	}
	if w.cfg.Mode == "fail_start" {
		return errors.New("flaky: failing the start as configured")
	}
	return nil
}

// Run misbehaves as configured.
func (w *worker) Run(ctx context.Context, rt *sdk.Runtime) error {
	log := rt.Logger()
	cfg := w.cfg
	switch cfg.Mode {
	case "run":
		<-ctx.Done()
		return nil
	case "hang_on_stop":
		<-ctx.Done()
		log.Warn("asked to stop; ignoring it as configured")
		select {}
	case "leak":
		return leak(ctx, rt, cfg)
	case "flood_log":
		return floodLog(ctx, rt, cfg)
	case "oversize":
		return oversize(ctx, rt, cfg)
	case "unhealthy":
		if sleep(ctx, time.Duration(cfg.After)) != nil {
			return nil
		}
		log.Warn("becoming unhealthy as configured")
		w.unhealthy.Store(true)
		<-ctx.Done()
		return nil
	}

	// The rest misbehave once, after cfg.After.
	if sleep(ctx, time.Duration(cfg.After)) != nil {
		return nil
	}
	switch cfg.Mode {
	case "ok_exit":
		log.Info("returning nil as configured")
		return nil
	case "fail":
		return fmt.Errorf("flaky: failing after %v as configured", cfg.After)
	case "panic":
		panic(fmt.Sprintf("flaky: panicking after %v as configured", cfg.After))
	case "exit":
		log.Warn("calling os.Exit as configured", "code", cfg.Code)
		os.Exit(cfg.Code)
	case "orphan":
		// fd 2 is the pipe the host reads (go-plugin's Serve replaced only
		// the os.Stderr variable); the orphan inherits it.
		cmd := exec.Command("sleep", "60")
		cmd.Stderr = os.NewFile(2, "stderr")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("flaky: starting the orphan: %w", err)
		}
		if cfg.OrphanPID != "" {
			if err := os.WriteFile(cfg.OrphanPID, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
				return fmt.Errorf("flaky: %w", err)
			}
		}
		log.Warn("left an orphan holding stderr; exiting as configured", "orphan_pid", cmd.Process.Pid)
		os.Exit(1)
	case "segfault":
		log.Warn("writing to a protected page as configured")
		page, err := syscall.Mmap(-1, 0, os.Getpagesize(), syscall.PROT_NONE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			return fmt.Errorf("flaky: mmap: %w", err)
		}
		page[0] = 1 // SIGSEGV: a fault the Go runtime cannot turn into a panic
	}
	return fmt.Errorf("flaky: mode %q fell through", cfg.Mode)
}

// HealthCheck fails once mode "unhealthy" has turned unhealthy.
func (w *worker) HealthCheck(context.Context) error {
	if w.unhealthy.Load() {
		return fmt.Errorf("flaky: unhealthy as configured: %w", sdk.ErrHealthCheckFailed)
	}
	return nil
}

// sink keeps leaked memory reachable.
var sink [][]byte

// leak allocates and touches cfg.LeakMBPerSec MiB per second, in ten steps
// per second, up to cfg.LeakMaxMB, until ctx is done.
func leak(ctx context.Context, rt *sdk.Runtime, cfg config) error {
	const steps = 10
	chunk := cfg.LeakMBPerSec << 20 / steps
	if chunk <= 0 {
		return fmt.Errorf("%w: flaky: leak_mb_per_sec must be positive", sdk.ErrInvalidSpec)
	}
	t := time.NewTicker(time.Second / steps)
	defer t.Stop()
	total := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if total+chunk > cfg.LeakMaxMB<<20 {
			continue
		}
		b := make([]byte, chunk)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1 // touch every page so it counts in RSS
		}
		sink = append(sink, b)
		total += chunk
		if total%(64<<20) < chunk {
			rt.Logger().Info("leaking", "total_mb", total>>20)
		}
	}
}

// floodLog writes log lines to stderr as fast as it can until ctx is done.
// hclog lines go through the worker's logger (the host parses and
// re-emits them); raw lines go straight to fd 2, the pipe the host reads.
func floodLog(ctx context.Context, rt *sdk.Runtime, cfg config) error {
	if cfg.LineBytes < 0 {
		return fmt.Errorf("%w: flaky: line_bytes must not be negative", sdk.ErrInvalidSpec)
	}
	rt.Logger().Warn("flooding the log as configured", "line_bytes", cfg.LineBytes)
	done := make(chan struct{})
	go func() {
		defer close(done)
		log := rt.Logger()
		var raw []byte
		stderr := os.NewFile(2, "stderr")
		if cfg.LineBytes > 0 {
			raw = bytes.Repeat([]byte("x"), cfg.LineBytes)
			raw[len(raw)-1] = '\n'
		}
		for n := 0; ctx.Err() == nil; n++ {
			if raw != nil {
				if _, err := stderr.Write(raw); err != nil {
					return
				}
				continue
			}
			log.Info("flood", "n", n)
		}
	}()
	<-ctx.Done()
	// The flooding goroutine may be blocked writing to a full pipe; the
	// process exits after Run returns, so it is not waited for.
	select {
	case <-done:
	case <-time.After(100 * time.Millisecond):
	}
	return nil
}

// oversize sends "before", messages of cfg.Sizes bytes and "after" to
// cfg.To, reporting each big send's outcome to cfg.ReportTo, then idles.
func oversize(ctx context.Context, rt *sdk.Runtime, cfg config) error {
	if cfg.To == "" || cfg.ReportTo == "" {
		return fmt.Errorf("%w: flaky: mode oversize needs to and report_to", sdk.ErrInvalidSpec)
	}
	if err := rt.Send(ctx, cfg.To, sdk.Msg("before").MustBuild()); err != nil {
		return fmt.Errorf("flaky: sending before: %w", err)
	}
	for _, size := range cfg.Sizes {
		err := rt.Send(ctx, cfg.To, sdk.Msg(make([]byte, size)).MustBuild())
		report := fmt.Sprintf("size=%d too_large=%t err=%v", size, errors.Is(err, sdk.ErrMessageTooLarge), err)
		if err := rt.Send(ctx, cfg.ReportTo, sdk.Msg(report).MustBuild()); err != nil {
			return fmt.Errorf("flaky: reporting: %w", err)
		}
	}
	if err := rt.Send(ctx, cfg.To, sdk.Msg("after").MustBuild()); err != nil {
		return fmt.Errorf("flaky: sending after: %w", err)
	}
	<-ctx.Done()
	return nil
}

// sleep waits d or until ctx is done (then it returns ctx.Err()).
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
