package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/vigil-run/vigil/host/config"
)

// ErrNotLoopback is returned (wrapped) by [Listen] and [CheckAddr] for an
// address that is not on the loopback interface: the metrics endpoint has
// no authentication, so it never listens where other machines can reach
// it.
var ErrNotLoopback = errors.New("vigil: metrics address is not a loopback address")

// CheckAddr reports whether addr ("host:port") may serve metrics: its host
// must be "localhost" or a literal loopback IP (127.0.0.0/8 or ::1). An
// empty host (":9102"), an unspecified address ("0.0.0.0", "[::]") or any
// other name or IP is refused with an error wrapping [ErrNotLoopback] that
// says what to use instead. It does not block.
func CheckAddr(addr string) error {
	if err := config.LoopbackAddress(addr); err != nil {
		return fmt.Errorf("%w: %v; the metrics endpoint has no authentication and serves only loopback: "+
			"let a local Prometheus agent or a reverse proxy expose it if needed", ErrNotLoopback, err)
	}
	return nil
}

// Server serves /metrics over HTTP on a loopback address. Create it with
// [Listen]; stop it with [Server.Close]. Safe for concurrent use.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// Listen listens on addr, which must pass [CheckAddr] (port 0 picks a
// free port; see [Server.Addr]), and serves m's [Metrics.Handler] at
// /metrics in a background goroutine owned by the returned Server. It
// blocks only while binding. It returns an error wrapping [ErrNotLoopback]
// for a non-loopback address (also when "localhost" resolves to one), or
// the listen error.
func Listen(addr string, m *Metrics) (*Server, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint %s: %w", addr, err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("%w: %q resolved to %s; use 127.0.0.1 or [::1] explicitly", ErrNotLoopback, addr, ln.Addr())
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "Vigil metrics: GET /metrics")
	})
	s := &Server{
		ln:   ln,
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr returns the address the server listens on, e.g. "127.0.0.1:40123".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops listening, waits up to 2 s for scrapes in progress (then
// closes their connections) and blocks until the server goroutine ended.
// It returns the shutdown error, if any; calling it again returns nil.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	<-s.done
	return err
}
