package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigil-run/vigil/sdk"
)

// caller is the part of *sdk.Runtime the server uses: request/reply to
// the handler pool (a fake in unit tests).
type caller interface {
	Call(ctx context.Context, to string, m *sdk.Message, timeout time.Duration) (*sdk.Message, error)
}

// unhealthyAfter is how many requests in a row must fail (after their
// retries) for the server to report itself unhealthy.
const unhealthyAfter = 5

// server is one incarnation's listener and connections.
type server struct {
	cfg         config
	pool        caller
	log         hclog.Logger
	ln          net.Listener
	started     time.Time
	incarnation uint64

	// reqCtx bounds every pool call; cancelled when the drain deadline
	// passes (or serve returns).
	reqCtx    context.Context
	reqCancel context.CancelFunc

	mu        sync.Mutex
	conns     map[*conn]struct{}
	draining  bool
	acceptErr error
	wg        sync.WaitGroup // connection goroutines

	m metrics
}

func newServer(cfg config, pool caller, log hclog.Logger, ln net.Listener, incarnation uint64) *server {
	ctx, cancel := context.WithCancel(context.Background())
	return &server{
		cfg: cfg, pool: pool, log: log, ln: ln, started: time.Now(), incarnation: incarnation,
		reqCtx: ctx, reqCancel: cancel,
		conns: make(map[*conn]struct{}),
	}
}

// serve accepts connections until ctx is done (or accepting fails), then
// shuts down: it stops accepting, closes idle connections at once, lets
// busy ones finish their request within DrainTimeout (then cancels their
// calls and closes them), and returns once every connection goroutine
// has. It returns the accept error, if that is what ended it.
func (s *server) serve(ctx context.Context) error {
	defer s.reqCancel()
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		s.acceptLoop()
	}()
	select {
	case <-ctx.Done():
	case <-acceptDone:
	}
	s.mu.Lock()
	s.draining = true
	err := s.acceptErr
	s.mu.Unlock()
	s.ln.Close()
	<-acceptDone // no more wg.Add after this

	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	busy := 0
	for _, c := range conns {
		if !c.closeIfIdle() {
			busy++
		}
	}
	s.log.Info("draining", "connections", len(conns), "busy", busy, "deadline", time.Duration(s.cfg.DrainTimeout).String())
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(time.Duration(s.cfg.DrainTimeout))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.log.Warn("drain deadline passed: cancelling the requests still in flight")
		s.reqCancel()
		// Give the cancelled requests a moment to write their ERR line,
		// then close whatever is left.
		grace := time.NewTimer(500 * time.Millisecond)
		defer grace.Stop()
		select {
		case <-done:
		case <-grace.C:
			for _, c := range conns {
				c.nc.Close()
			}
			<-done
		}
	}
	s.log.Info("stopped", "metrics", strings.TrimPrefix(s.metricsLine(), "OK "))
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	return nil
}

// acceptLoop accepts until the listener is closed or fails for good.
func (s *server) acceptLoop() {
	var delay time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // transient (e.g. out of file descriptors)
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "error", err, "in", delay.String())
				time.Sleep(delay) // backoff between accept retries
				continue
			}
			s.mu.Lock()
			s.acceptErr = err
			s.mu.Unlock()
			s.log.Error("accept failed", "error", err)
			return
		}
		delay = 0
		s.admit(nc)
	}
}

// admit registers nc and starts its goroutine, or refuses it when the
// server is full or draining.
func (s *server) admit(nc net.Conn) {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if n := len(s.conns); n >= s.cfg.MaxConns {
		s.mu.Unlock()
		s.m.rejected.Add(1)
		_ = nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		fmt.Fprintf(nc, "ERR busy: %d connections open, the limit is %d; try again later\n", n, s.cfg.MaxConns)
		nc.Close()
		return
	}
	c := &conn{nc: nc}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.m.connsTotal.Add(1)
	go s.handleConn(c)
}

// handleConn serves one connection's requests, one at a time.
func (s *server) handleConn(c *conn) {
	defer s.wg.Done()
	defer func() {
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	r := bufio.NewReaderSize(c.nc, s.cfg.MaxLine)
	idle := time.Duration(s.cfg.IdleTimeout)
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(idle))
		raw, err := r.ReadSlice('\n')
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, bufio.ErrBufferFull):
				s.m.requests.Add(1)
				s.m.errors.Add(1)
				s.write(c, fmt.Sprintf("ERR line too long: the limit is %d bytes", s.cfg.MaxLine))
			case errors.As(err, &ne) && ne.Timeout():
				s.write(c, fmt.Sprintf("ERR idle timeout: no request for %v, closing", idle))
			}
			return
		}
		if !c.begin() { // shutting down: this connection counted as idle
			return
		}
		line := strings.TrimRight(string(raw), "\r\n")
		reply := s.handle(line)
		if !s.write(c, reply) {
			return
		}
		if strings.EqualFold(line, "QUIT") || !c.end() {
			return
		}
	}
}

// write sends one reply line; false when the connection is unusable.
func (s *server) write(c *conn, line string) bool {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Duration(s.cfg.IdleTimeout)))
	_, err := c.nc.Write([]byte(line + "\n"))
	return err == nil
}

// handle answers one request line.
func (s *server) handle(line string) string {
	start := time.Now()
	s.m.requests.Add(1)
	var reply string
	cmd, _, _ := strings.Cut(line, " ")
	switch strings.ToUpper(cmd) {
	case "STATUS":
		reply = s.statusLine()
	case "HEALTH":
		if err := s.health(); err != nil {
			reply = "ERR unhealthy: " + err.Error()
		} else {
			reply = "OK healthy"
		}
	case "METRICS":
		reply = s.metricsLine()
	case "QUIT":
		reply = "OK bye"
	default:
		s.m.inflight.Add(1)
		reply = s.callPool(line)
		s.m.inflight.Add(-1)
	}
	if strings.HasPrefix(reply, "ERR") {
		s.m.errors.Add(1)
	}
	s.m.observe(time.Since(start))
	return reply
}

// callPool sends line to the handler pool and returns the reply's line.
// A failed attempt (timeout, a handler gone, a full mailbox) is retried up
// to Retries times with a short backoff; a handler killed mid-request
// also gets its request redelivered by the host, so a retry is rarely
// needed for the client to get an answer.
func (s *server) callPool(line string) string {
	var last error
	for attempt := 0; attempt <= s.cfg.Retries; attempt++ {
		if attempt > 0 {
			s.m.retries.Add(1)
			s.log.Warn("retrying a request", "attempt", attempt+1, "error", last)
			t := time.NewTimer(time.Duration(attempt) * 20 * time.Millisecond)
			select {
			case <-t.C:
			case <-s.reqCtx.Done():
				t.Stop()
			}
		}
		if s.reqCtx.Err() != nil {
			last = errors.New("server shutting down")
			break
		}
		msg, err := sdk.Msg(line).Build()
		if err != nil {
			return "ERR bad request: " + err.Error()
		}
		rep, err := s.pool.Call(s.reqCtx, s.cfg.Pool, msg, time.Duration(s.cfg.CallTimeout))
		if err == nil {
			s.m.consecutiveFailures.Store(0)
			return rep.PayloadString()
		}
		last = err
	}
	s.m.failures.Add(1)
	s.m.consecutiveFailures.Add(1)
	return "ERR unavailable: " + last.Error()
}

// health is the server's health: listening, not shutting down, and the
// handler pool answering (fewer than unhealthyAfter requests in a row
// failed after their retries). Safe for concurrent use.
func (s *server) health() error {
	s.mu.Lock()
	draining, acceptErr := s.draining, s.acceptErr
	s.mu.Unlock()
	switch {
	case acceptErr != nil:
		return fmt.Errorf("%w: accepting connections failed: %v", sdk.ErrHealthCheckFailed, acceptErr)
	case draining:
		return fmt.Errorf("%w: shutting down", sdk.ErrHealthCheckFailed)
	}
	if n := s.m.consecutiveFailures.Load(); n >= unhealthyAfter {
		return fmt.Errorf("%w: the last %d requests to pool %q failed", sdk.ErrHealthCheckFailed, n, s.cfg.Pool)
	}
	return nil
}

func (s *server) statusLine() string {
	s.mu.Lock()
	n, state := len(s.conns), "serving"
	if s.draining {
		state = "draining"
	}
	s.mu.Unlock()
	return fmt.Sprintf("OK state=%s addr=%s conns=%d/%d uptime=%s incarnation=%d pool=%s",
		state, s.ln.Addr(), n, s.cfg.MaxConns, time.Since(s.started).Round(time.Millisecond), s.incarnation, s.cfg.Pool)
}

func (s *server) metricsLine() string {
	s.mu.Lock()
	active := len(s.conns)
	s.mu.Unlock()
	p50, p99 := s.m.percentiles()
	return fmt.Sprintf("OK conns_active=%d conns_total=%d conns_rejected=%d requests=%d errors=%d inflight=%d retries=%d failures=%d p50_us=%d p99_us=%d",
		active, s.m.connsTotal.Load(), s.m.rejected.Load(), s.m.requests.Load(), s.m.errors.Load(),
		s.m.inflight.Load(), s.m.retries.Load(), s.m.failures.Load(), p50.Microseconds(), p99.Microseconds())
}

// conn is one client connection; busy while a request is being answered.
type conn struct {
	nc      net.Conn
	mu      sync.Mutex
	busy    bool
	closing bool
}

// closeIfIdle marks c closing and closes it if no request is being
// answered; it reports whether it closed it.
func (c *conn) closeIfIdle() bool {
	c.mu.Lock()
	c.closing = true
	idle := !c.busy
	c.mu.Unlock()
	if idle {
		c.nc.Close()
	}
	return idle
}

// begin marks c busy; false if it is closing.
func (c *conn) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.busy = true
	return true
}

// end marks c idle; false if it is closing (its last answer is out).
func (c *conn) end() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = false
	return !c.closing
}

// latencyWindow is how many recent request latencies the percentiles
// are computed over.
const latencyWindow = 4096

// metrics are the server's counters; safe for concurrent use.
type metrics struct {
	connsTotal, rejected, requests, errors, retries, failures atomic.Uint64
	inflight, consecutiveFailures                             atomic.Int64

	latMu sync.Mutex
	lat   [latencyWindow]time.Duration
	latN  int
}

func (m *metrics) observe(d time.Duration) {
	m.latMu.Lock()
	m.lat[m.latN%latencyWindow] = d
	m.latN++
	m.latMu.Unlock()
}

// percentiles returns p50 and p99 of the last latencyWindow requests.
func (m *metrics) percentiles() (p50, p99 time.Duration) {
	m.latMu.Lock()
	n := min(m.latN, latencyWindow)
	s := slices.Clone(m.lat[:n])
	m.latMu.Unlock()
	if n == 0 {
		return 0, 0
	}
	slices.Sort(s)
	return s[(n-1)*50/100], s[(n-1)*99/100]
}
