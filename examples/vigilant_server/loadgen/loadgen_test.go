package loadgen

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeServer answers like the example's server would, except that answer
// may override a reply ("" closes the connection). Closed by t.Cleanup.
func fakeServer(t *testing.T, answer func(req, want string) string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					req := strings.TrimSpace(line)
					rep := answer(req, expected(t, req))
					if rep == "" {
						return
					}
					if _, err := c.Write([]byte(rep + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// expected answers req the way the example's handlers do (ECHO, SUM, FIB).
func expected(t *testing.T, req string) string {
	cmd, rest, _ := strings.Cut(req, " ")
	switch cmd {
	case "ECHO":
		return "OK " + rest
	case "SUM":
		sum := 0
		for _, f := range strings.Fields(rest) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Errorf("bad SUM request %q", req)
			}
			sum += n
		}
		return "OK " + strconv.Itoa(sum)
	case "FIB":
		n, err := strconv.Atoi(rest)
		if err != nil {
			t.Errorf("bad FIB request %q", req)
		}
		a, b := 0, 1
		for range n {
			a, b = b, a+b
		}
		return "OK " + strconv.Itoa(a)
	}
	t.Errorf("unexpected request %q", req)
	return "ERR unknown"
}

func TestRunCountsAnswers(t *testing.T) {
	for name, tc := range map[string]struct {
		answer                   func(req, want string) string
		wantFailed, wantConnErrs bool
	}{
		"all right": {answer: func(_, want string) string { return want }},
		"wrong FIB": {answer: func(req, want string) string {
			if strings.HasPrefix(req, "FIB") {
				return "OK 0"
			}
			return want
		}, wantFailed: true},
		"dropped connection": {answer: func(req, want string) string {
			if strings.HasPrefix(req, "SUM") {
				return ""
			}
			return want
		}, wantConnErrs: true},
	} {
		t.Run(name, func(t *testing.T) {
			addr := fakeServer(t, tc.answer)
			res, err := Run(context.Background(), Options{Addr: addr, Conns: 2, Duration: 100 * time.Millisecond, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if res.Answered == 0 || res.Conns != 2 {
				t.Fatalf("nothing answered: %v", res)
			}
			if got := res.Failed > 0; got != tc.wantFailed {
				t.Errorf("failed = %d, want failures: %v (%v)", res.Failed, tc.wantFailed, res)
			}
			if got := res.ConnErrors > 0; got != tc.wantConnErrs {
				t.Errorf("conn errors = %d, want some: %v (%v)", res.ConnErrors, tc.wantConnErrs, res)
			}
			if tc.wantConnErrs && res.Sent != res.Answered+uint64(res.ConnErrors) {
				t.Errorf("sent %d, answered %d, conn errors %d: each dropped connection leaves one unanswered", res.Sent, res.Answered, res.ConnErrors)
			}
			if !tc.wantConnErrs && res.Sent != res.Answered {
				t.Errorf("sent %d, answered %d", res.Sent, res.Answered)
			}
			if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 || res.RPS() <= 0 {
				t.Errorf("bad latencies: %v", res)
			}
		})
	}
}

func TestRunNeedsAddress(t *testing.T) {
	if _, err := Run(context.Background(), Options{}); err == nil {
		t.Error("Run without an address succeeded")
	}
}
