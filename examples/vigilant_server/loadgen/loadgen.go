// Package loadgen is the vigilant_server example's load generator: a pool
// of persistent connections, each sending application requests one after
// another for a while and checking every answer. The command
// examples/vigilant_server/cmd/loadgen runs it; the example's tests run it
// in-process.
package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure [Run].
type Options struct {
	// Addr is the server's address (host:port). Required.
	Addr string
	// Conns is the number of persistent connections (default 8).
	Conns int
	// Duration is how long to send requests (default 5s).
	Duration time.Duration
	// Timeout bounds each request's round trip (default 10s).
	Timeout time.Duration
}

// Result is what a run measured.
type Result struct {
	Conns int
	// Sent counts requests written; Answered those whose reply line came
	// back (right or wrong); Failed those answered wrongly or with ERR.
	Sent, Answered, Failed uint64
	// ConnErrors counts connections that failed (dial, write, read or a
	// timeout); each also leaves its last request unanswered.
	ConnErrors int
	Elapsed    time.Duration
	// Latency percentiles of the answered requests.
	P50, P99, Max time.Duration
	// Problems holds the first few failures, for the report.
	Problems []string
}

// RPS is answered requests per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Answered) / r.Elapsed.Seconds()
}

// String is a one-paragraph report.
func (r Result) String() string {
	s := fmt.Sprintf("%d conns, %v: sent=%d answered=%d failed=%d conn_errors=%d, %.0f req/s, p50=%v p99=%v max=%v",
		r.Conns, r.Elapsed.Round(time.Millisecond), r.Sent, r.Answered, r.Failed, r.ConnErrors, r.RPS(),
		r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))
	for _, p := range r.Problems {
		s += "\n  " + p
	}
	return s
}

const maxProblems = 10

// Run drives the server at o.Addr until o.Duration has passed or ctx is
// done, and returns what it measured. It blocks for about o.Duration (plus
// at most one o.Timeout for the requests still out) and is safe to call
// concurrently. It returns an error only for invalid options; failures of
// the server are counted in the Result.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Addr == "" {
		return Result{}, errors.New("loadgen: no address")
	}
	if o.Conns <= 0 {
		o.Conns = 8
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var (
		mu  sync.Mutex
		res = Result{Conns: o.Conns}
		lat []time.Duration
		wg  sync.WaitGroup
	)
	start := time.Now()
	for i := range o.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := runConn(ctx, o, i)
			mu.Lock()
			defer mu.Unlock()
			res.Sent += w.sent
			res.Answered += w.answered
			res.Failed += w.failed
			if w.connErr != nil {
				res.ConnErrors++
				w.problems = append(w.problems, fmt.Sprintf("conn %d: %v", i, w.connErr))
			}
			for _, p := range w.problems {
				if len(res.Problems) < maxProblems {
					res.Problems = append(res.Problems, p)
				}
			}
			lat = append(lat, w.lat...)
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if n := len(lat); n > 0 {
		slices.Sort(lat)
		res.P50, res.P99, res.Max = lat[(n-1)*50/100], lat[(n-1)*99/100], lat[n-1]
	}
	return res, nil
}

type connResult struct {
	sent, answered, failed uint64
	lat                    []time.Duration
	problems               []string
	connErr                error
}

// runConn is one connection's loop.
func runConn(ctx context.Context, o Options, id int) connResult {
	var w connResult
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, o.Timeout)
	nc, err := d.DialContext(dctx, "tcp", o.Addr)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			w.connErr = err
		}
		return w
	}
	defer nc.Close()
	r := bufio.NewReader(nc)
	for n := 0; ctx.Err() == nil; n++ {
		req, want := request(id, n)
		_ = nc.SetDeadline(time.Now().Add(o.Timeout))
		t0 := time.Now()
		w.sent++
		if _, err := nc.Write([]byte(req + "\n")); err != nil {
			w.connErr = fmt.Errorf("writing %q: %w", req, err)
			return w
		}
		line, err := r.ReadString('\n')
		if err != nil {
			w.connErr = fmt.Errorf("reading the answer to %q: %w", req, err)
			return w
		}
		w.lat = append(w.lat, time.Since(t0))
		w.answered++
		if got := strings.TrimRight(line, "\r\n"); got != want {
			w.failed++
			if len(w.problems) < maxProblems {
				w.problems = append(w.problems, fmt.Sprintf("conn %d: %q answered %q, want %q", id, req, got, want))
			}
		}
	}
	return w
}

// request returns connection id's n-th request and its expected answer:
// ECHO, SUM and FIB in turn.
func request(id, n int) (req, want string) {
	switch n % 3 {
	case 0:
		s := "c" + strconv.Itoa(id) + "-" + strconv.Itoa(n)
		return "ECHO " + s, "OK " + s
	case 1:
		return fmt.Sprintf("SUM %d %d -7", id, n), "OK " + strconv.Itoa(id+n-7)
	default:
		k := n % 50
		return "FIB " + strconv.Itoa(k), "OK " + strconv.FormatUint(fib(k), 10)
	}
}

func fib(n int) uint64 {
	var a, b uint64 = 0, 1
	for range n {
		a, b = b, a+b
	}
	return a
}
