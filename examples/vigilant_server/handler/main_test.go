package main

import (
	"context"
	"testing"
	"time"
)

func TestHandle(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct{ in, want string }{
		"echo":           {"ECHO hello world", "OK hello world"},
		"echo empty":     {"ECHO", "OK "},
		"lower case":     {"echo x", "OK x"},
		"sum":            {"SUM 1 2 3 -4", "OK 2"},
		"sum none":       {"SUM", "ERR usage: SUM <n> [<n> …]"},
		"sum bad":        {"SUM 1 x", `ERR SUM: "x" is not an integer`},
		"sum overflow":   {"SUM 9223372036854775807 1", "ERR SUM: overflow"},
		"sum underflow":  {"SUM -9223372036854775808 -1", "ERR SUM: overflow"},
		"fib 0":          {"FIB 0", "OK 0"},
		"fib 10":         {"FIB 10", "OK 55"},
		"fib 90":         {"FIB 90", "OK 2880067194370816120"},
		"fib too big":    {"FIB 91", "ERR usage: FIB <n> with 0 ≤ n ≤ 90"},
		"fib negative":   {"FIB -1", "ERR usage: FIB <n> with 0 ≤ n ≤ 90"},
		"sleep":          {"SLEEP 1", "OK slept 1ms"},
		"sleep too long": {"SLEEP 5000", "ERR usage: SLEEP <ms> with 0 ≤ ms ≤ 100"},
		"empty":          {"", "ERR empty request"},
		"unknown":        {"FOO bar", `ERR unknown command "FOO"`},
	} {
		t.Run(name, func(t *testing.T) {
			if got := handle(ctx, tc.in, 100*time.Millisecond); got != tc.want {
				t.Errorf("handle(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestHandleSleepStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := handle(ctx, "SLEEP 5000", time.Minute); got != "ERR SLEEP: handler stopping" {
		t.Errorf("handle = %q, want the stopping error", got)
	}
}
