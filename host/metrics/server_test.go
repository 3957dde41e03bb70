package metrics

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCheckAddr(t *testing.T) {
	tests := map[string]struct {
		addr string
		ok   bool
	}{
		"IPv4 loopback":                {"127.0.0.1:9102", true},
		"elsewhere in 127/8":           {"127.3.2.1:0", true},
		"IPv6 loopback":                {"[::1]:9102", true},
		"localhost":                    {"localhost:9102", true},
		"empty host":                   {":9102", false},
		"IPv4 unspecified":             {"0.0.0.0:9102", false},
		"IPv6 unspecified":             {"[::]:9102", false},
		"LAN address":                  {"192.168.1.10:9102", false},
		"public IPv6":                  {"[2001:db8::1]:9102", false},
		"host name":                    {"metrics.example.com:9102", false},
		"name that contains localhost": {"localhost.example.com:9102", false},
		"no port":                      {"127.0.0.1", false},
		"empty":                        {"", false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := CheckAddr(tt.addr)
			if tt.ok {
				if err != nil {
					t.Fatalf("CheckAddr(%q) = %v, want nil", tt.addr, err)
				}
				return
			}
			if !errors.Is(err, ErrNotLoopback) {
				t.Fatalf("CheckAddr(%q) = %v, want ErrNotLoopback", tt.addr, err)
			}
			if !strings.Contains(err.Error(), "127.0.0.1:") {
				t.Errorf("the error does not say what to use instead: %v", err)
			}
			// Listen refuses it too, before binding anything.
			if s, err := Listen(tt.addr, New(nil)); !errors.Is(err, ErrNotLoopback) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("Listen(%q) = %v, want ErrNotLoopback", tt.addr, err)
			}
		})
	}
}

func TestListenServesMetricsUntilClosed(t *testing.T) {
	m := New(nil)
	m.ObserveDelivery("w", 200*time.Microsecond)
	s, err := Listen("127.0.0.1:0", m)
	if err != nil {
		t.Fatal(err)
	}
	ta, err := net.ResolveTCPAddr("tcp", s.Addr())
	if err != nil || !ta.IP.IsLoopback() || ta.Port == 0 {
		t.Fatalf("Addr() = %q (%v), want a loopback address with a port", s.Addr(), err)
	}
	sc := parse(t, get(t, "http://"+s.Addr()+"/metrics"))
	sc.want(t, 1, "vigil_delivery_latency_seconds", "worker=w")
	if sc.find("go_goroutines") == nil {
		t.Error("no go_goroutines in the scrape")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("still accepting connections after Close")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestListenReportsABusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := Listen(ln.Addr().String(), New(nil))
	if err == nil {
		s.Close()
		t.Fatal("Listen on a busy port succeeded")
	}
	if errors.Is(err, ErrNotLoopback) || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Listen on a busy port: %v, want the bind error naming the address", err)
	}
}
