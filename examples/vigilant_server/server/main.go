// Command server is the TCP front end of the vigilant_server example: a
// Vigil worker that listens on a loopback port, speaks a line protocol,
// answers the control commands itself and hands application requests to
// the handler pool by request/reply (rt.Call on the pool's shared mailbox),
// retrying a request whose handler died.
//
// Protocol: one request line in, one reply line out ("OK …" or "ERR …").
//
//	STATUS    OK state=serving addr=… conns=N/MAX uptime=… incarnation=N pool=…
//	HEALTH    OK healthy | ERR unhealthy: … (the same check the host runs)
//	METRICS   OK conns_active=… conns_total=… conns_rejected=… requests=… errors=…
//	          inflight=… retries=… failures=… p50_us=… p99_us=…
//	QUIT      OK bye, then the server closes the connection
//	anything else goes to the handler pool (ECHO, SUM, FIB, SLEEP; see the handler)
//
// Config block (all optional):
//
//	config {
//	  addr          = "127.0.0.1:7070" # listen address (port 0: any free port)
//	  addr_file     = ""               # if set, the bound address is written there
//	  pool          = "handlers"       # mailbox (pool name) application requests go to
//	  max_conns     = 64               # concurrent connections; more get "ERR busy: …"
//	  idle_timeout  = "60s"            # a connection idle this long is closed
//	  drain_timeout = "10s"            # on stop: how long in-flight requests may take
//	  call_timeout  = "3s"             # one attempt of a request to the pool
//	  retries       = 2                # further attempts after a failed one
//	  max_line      = 4096             # longest request line, in bytes
//	}
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
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
	Addr         string       `json:"addr"`
	AddrFile     string       `json:"addr_file"`
	Pool         string       `json:"pool"`
	MaxConns     int          `json:"max_conns"`
	IdleTimeout  sdk.Duration `json:"idle_timeout"`
	DrainTimeout sdk.Duration `json:"drain_timeout"`
	CallTimeout  sdk.Duration `json:"call_timeout"`
	Retries      int          `json:"retries"`
	MaxLine      int          `json:"max_line"`
}

func defaultConfig() config {
	return config{
		Addr:         "127.0.0.1:7070",
		Pool:         "handlers",
		MaxConns:     64,
		IdleTimeout:  sdk.Duration(60 * time.Second),
		DrainTimeout: sdk.Duration(10 * time.Second),
		CallTimeout:  sdk.Duration(3 * time.Second),
		Retries:      2,
		MaxLine:      4096,
	}
}

func (c config) validate() error {
	switch {
	case c.Addr == "":
		return fmt.Errorf("%w: addr must not be empty", sdk.ErrInvalidSpec)
	case c.Pool == "":
		return fmt.Errorf("%w: pool must not be empty", sdk.ErrInvalidSpec)
	case c.MaxConns < 1:
		return fmt.Errorf("%w: max_conns must be at least 1, got %d", sdk.ErrInvalidSpec, c.MaxConns)
	case c.IdleTimeout <= 0, c.DrainTimeout <= 0, c.CallTimeout <= 0:
		return fmt.Errorf("%w: idle_timeout, drain_timeout and call_timeout must be positive", sdk.ErrInvalidSpec)
	case c.Retries < 0 || c.Retries > 10:
		return fmt.Errorf("%w: retries must be within 0…10, got %d", sdk.ErrInvalidSpec, c.Retries)
	case c.MaxLine < 64:
		return fmt.Errorf("%w: max_line must be at least 64, got %d", sdk.ErrInvalidSpec, c.MaxLine)
	}
	return nil
}

// worker is the plugin: Run serves until the host stops it, HealthCheck
// answers the host's health checks from the running server.
type worker struct {
	mu  sync.Mutex
	srv *server // nil when not serving
}

// Run listens, serves until ctx is done, then shuts down gracefully (see
// server.serve). It returns an error when the config is invalid, the
// address cannot be bound or accepting fails for good.
func (w *worker) Run(ctx context.Context, rt *sdk.Runtime) error {
	cfg := defaultConfig()
	if err := rt.DecodeConfig(&cfg); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s := newServer(cfg, rt, rt.Logger(), ln, rt.Incarnation())
	if cfg.AddrFile != "" {
		if err := writeFileAtomic(cfg.AddrFile, ln.Addr().String()+"\n"); err != nil {
			ln.Close()
			return fmt.Errorf("addr_file: %w", err)
		}
	}
	rt.Logger().Info("listening", "addr", ln.Addr().String(), "max_conns", cfg.MaxConns, "pool", cfg.Pool, "incarnation", rt.Incarnation())
	w.set(s)
	defer w.set(nil)
	return s.serve(ctx)
}

// HealthCheck reports the server's health (see server.health); the host
// calls it at the worker's health-check interval and HEALTH answers with it.
func (w *worker) HealthCheck(context.Context) error {
	w.mu.Lock()
	s := w.srv
	w.mu.Unlock()
	if s == nil {
		return fmt.Errorf("%w: not serving", sdk.ErrHealthCheckFailed)
	}
	return s.health()
}

func (w *worker) set(s *server) {
	w.mu.Lock()
	w.srv = s
	w.mu.Unlock()
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a reader never sees a partial address.
func writeFileAtomic(path, data string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".addr-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
