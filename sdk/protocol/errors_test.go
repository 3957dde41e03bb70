package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Test-only sentinels, registered in both the test process and the
// re-executed plugin process (same binary, same init).
var (
	errTestSentinel = errors.New("vigil: test sentinel")
	errTestOther    = errors.New("vigil: other test sentinel")
	errUnregistered = errors.New("vigil: never registered")
)

func init() { RegisterSentinels(errTestSentinel, errTestOther) }

type testErrType struct{ msg string }

func (e testErrType) Error() string { return e.msg }

func TestSentinelsSurviveTheWire(t *testing.T) {
	tests := map[string]struct {
		err      error
		is       []error // errors.Is must hold after the round trip
		isNot    []error
		wantMsg  string
		wantCode codes.Code
	}{
		"bare sentinel": {
			err: errTestSentinel, is: []error{errTestSentinel}, isNot: []error{errTestOther},
			wantMsg: "vigil: test sentinel", wantCode: codes.Unknown,
		},
		"wrapped sentinel keeps its message": {
			err: fmt.Errorf("worker echo: %w", errTestSentinel), is: []error{errTestSentinel},
			wantMsg: "worker echo: vigil: test sentinel", wantCode: codes.Unknown,
		},
		"two sentinels": {
			err: fmt.Errorf("%w: %w", errTestOther, errTestSentinel), is: []error{errTestSentinel, errTestOther},
			wantMsg: "vigil: other test sentinel: vigil: test sentinel", wantCode: codes.Unknown,
		},
		"connection lost": {
			err: fmt.Errorf("send: %w", ErrConnectionLost), is: []error{ErrConnectionLost},
			wantMsg: "send: vigil: connection to worker lost", wantCode: codes.Unknown,
		},
		"context canceled": {
			err: fmt.Errorf("stopping: %w", context.Canceled), is: []error{context.Canceled},
			wantMsg: "stopping: context canceled", wantCode: codes.Canceled,
		},
		"deadline": {
			err: context.DeadlineExceeded, is: []error{context.DeadlineExceeded},
			wantMsg: "context deadline exceeded", wantCode: codes.DeadlineExceeded,
		},
		"unregistered error keeps only its text": {
			err: fmt.Errorf("x: %w", errUnregistered), isNot: []error{errUnregistered, errTestSentinel},
			wantMsg: "x: vigil: never registered", wantCode: codes.Unknown,
		},
		"custom error type": {
			err: testErrType{"custom"}, isNot: []error{errTestSentinel},
			wantMsg: "custom", wantCode: codes.Unknown,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			st := ToStatus(tc.err)
			if got := status.Code(st); got != tc.wantCode {
				t.Errorf("ToStatus code = %v, want %v", got, tc.wantCode)
			}
			back := FromStatus(st)
			if back == nil {
				t.Fatal("FromStatus returned nil")
			}
			if back.Error() != tc.wantMsg {
				t.Errorf("message = %q, want %q", back.Error(), tc.wantMsg)
			}
			for _, s := range tc.is {
				if !errors.Is(back, s) {
					t.Errorf("errors.Is(%v, %v) = false, want true", back, s)
				}
			}
			for _, s := range tc.isNot {
				if errors.Is(back, s) {
					t.Errorf("errors.Is(%v, %v) = true, want false", back, s)
				}
			}
		})
	}
}

func TestToStatusAndFromStatusEdgeCases(t *testing.T) {
	if ToStatus(nil) != nil || FromStatus(nil) != nil {
		t.Fatal("nil must stay nil")
	}
	already := status.Error(codes.NotFound, "nope")
	if got := ToStatus(already); got != already {
		t.Errorf("ToStatus(status) = %v, want it unchanged", got)
	}
	if got := FromStatus(io.EOF); got != io.EOF {
		t.Errorf("FromStatus(non-status) = %v, want it unchanged", got)
	}
	unavailable := FromStatus(status.Error(codes.Unavailable, "error reading from server: EOF"))
	if !errors.Is(unavailable, ErrConnectionLost) {
		t.Errorf("Unavailable -> %v, want ErrConnectionLost", unavailable)
	}
	var remote *RemoteError
	if other := FromStatus(already); !errors.As(other, &remote) || remote.Message != "nope" {
		t.Errorf("NotFound -> %#v, want a *RemoteError with the message", other)
	}
}

func TestExitStatusRoundTrip(t *testing.T) {
	tests := map[string]struct {
		err      error
		panicked bool
		code     int
		wantText string
	}{
		"nil":   {err: nil, code: ExitOK},
		"error": {err: fmt.Errorf("bad: %w", errTestSentinel), code: ExitError, wantText: "bad: vigil: test sentinel"},
		"panic": {err: errors.New("panic: kaboom"), panicked: true, code: ExitPanic, wantText: "panic: kaboom"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := fromExitStatus(exitStatus(tc.err, tc.panicked, tc.code))
			if tc.err == nil {
				if got != nil {
					t.Fatalf("got %v, want nil", got)
				}
				return
			}
			var we *WorkerError
			if !errors.As(got, &we) {
				t.Fatalf("got %T, want *WorkerError", got)
			}
			if we.Error() != tc.wantText || we.Panicked != tc.panicked || we.ExitCode != tc.code {
				t.Errorf("got %q panicked=%v code=%d", we.Error(), we.Panicked, we.ExitCode)
			}
			if errors.Is(tc.err, errTestSentinel) != errors.Is(got, errTestSentinel) {
				t.Error("sentinel lost")
			}
		})
	}
}

func TestRegisterSentinelsRejectsMistakes(t *testing.T) {
	tests := map[string]error{
		"nil":            nil,
		"same text":      errors.New("vigil: test sentinel"),
		"not comparable": uncomparable{[]string{"x"}},
	}
	for name, err := range tests {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			RegisterSentinels(err)
		})
	}
	RegisterSentinels(errTestSentinel) // the same value again is fine
	if !strings.Contains(FromStatus(ToStatus(errTestSentinel)).Error(), "test sentinel") {
		t.Error("re-registration broke the mapping")
	}
}

type uncomparable struct{ s []string }

func (u uncomparable) Error() string { return "uncomparable" }
