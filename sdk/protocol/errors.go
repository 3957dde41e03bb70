package protocol

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigil-run/vigil/sdk/protocol/internal/pb"
)

// ErrConnectionLost is returned (wrapped) by [Client] calls and by [Run.Err]
// when the plugin process went away: it died, was killed, or closed the
// connection before answering.
var ErrConnectionLost = errors.New("vigil: connection to worker lost")

// registry holds the sentinels that survive the wire, keyed by their code
// (their Error() text) and in registration order.
var registry = struct {
	sync.RWMutex
	byCode map[string]error
	order  []error
}{byCode: map[string]error{}}

func init() {
	RegisterSentinels(ErrConnectionLost, context.Canceled, context.DeadlineExceeded)
}

// RegisterSentinels makes errs survive the wire: an error that wraps one of
// them, turned into a status by [ToStatus] on one side, comes back from
// [FromStatus] on the other as an error that still wraps the same value, so
// [errors.Is] works across the process boundary. A sentinel's code is its
// Error() text, so both sides must register sentinels with the same messages
// (they do when both link the same package, as host and plugins link sdk).
//
// Call it from init functions. It is safe for concurrent use. Registering the
// same value twice is a no-op; it panics on a nil error, on an error whose
// type is not comparable, or on two different errors with the same text —
// all programming errors.
func RegisterSentinels(errs ...error) {
	registry.Lock()
	defer registry.Unlock()
	for _, err := range errs {
		if err == nil {
			panic("protocol: RegisterSentinels: nil error")
		}
		if !reflect.TypeOf(err).Comparable() {
			panic(fmt.Sprintf("protocol: RegisterSentinels: %T is not comparable", err))
		}
		code := err.Error()
		if old, ok := registry.byCode[code]; ok {
			if old == err {
				continue
			}
			panic(fmt.Sprintf("protocol: RegisterSentinels: two sentinels share the text %q", code))
		}
		registry.byCode[code] = err
		registry.order = append(registry.order, err)
	}
}

// sentinelCodes returns the codes of every registered sentinel err wraps, in
// registration order.
func sentinelCodes(err error) []string {
	registry.RLock()
	defer registry.RUnlock()
	var sc []string
	for _, s := range registry.order {
		if errors.Is(err, s) {
			sc = append(sc, s.Error())
		}
	}
	return sc
}

// sentinelsFor maps codes back to registered sentinels; unknown codes (a
// sentinel the other side registered and this side did not) are skipped.
func sentinelsFor(codes []string) []error {
	if len(codes) == 0 {
		return nil
	}
	registry.RLock()
	defer registry.RUnlock()
	errs := make([]error, 0, len(codes))
	for _, c := range codes {
		if s, ok := registry.byCode[c]; ok {
			errs = append(errs, s)
		}
	}
	return errs
}

// ToStatus turns err into a gRPC status error for a server handler to
// return: the message is err.Error() and a detail lists the registered
// sentinels err wraps. The code is Canceled or DeadlineExceeded for context
// errors and Unknown otherwise. nil stays nil; an error that already is a
// gRPC status is returned unchanged. It does not block and is safe for
// concurrent use.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	st := status.New(code, err.Error())
	if sc := sentinelCodes(err); len(sc) > 0 {
		if withDetail, derr := st.WithDetails(&pb.ErrorDetail{Sentinels: sc}); derr == nil {
			st = withDetail
		}
	}
	return st.Err()
}

// FromStatus turns an error returned by a gRPC call back into a Go error:
//
//   - a status carrying sentinels (see [ToStatus]) becomes a [*RemoteError]
//     with the original message that wraps those sentinels;
//   - Unavailable (the connection broke: the process died) wraps
//     [ErrConnectionLost];
//   - Canceled and DeadlineExceeded without a detail wrap [context.Canceled]
//     and [context.DeadlineExceeded];
//   - any other status becomes a [*RemoteError] wrapping nothing.
//
// nil stays nil and a non-status error is returned unchanged. It does not
// block and is safe for concurrent use.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var sc []string
	for _, d := range st.Details() {
		if ed, ok := d.(*pb.ErrorDetail); ok {
			sc = append(sc, ed.GetSentinels()...)
		}
	}
	if s := sentinelsFor(sc); len(s) > 0 {
		return &RemoteError{Message: st.Message(), sentinels: s}
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("%w: %s", ErrConnectionLost, st.Message())
	case codes.Canceled:
		return fmt.Errorf("%s: %w", st.Message(), context.Canceled)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", st.Message(), context.DeadlineExceeded)
	}
	return &RemoteError{Message: st.Message()}
}

// RemoteError is an error that crossed the wire: its text is the original
// error's, and it unwraps to the registered sentinels the original wrapped,
// so [errors.Is] works as it did on the other side. Its fields are read-only.
type RemoteError struct {
	// Message is the original error's Error() text.
	Message   string
	sentinels []error
}

// Error returns the original error's text.
func (e *RemoteError) Error() string { return e.Message }

// Unwrap returns the registered sentinels the original error wrapped.
func (e *RemoteError) Unwrap() []error { return e.sentinels }

// WorkerError is how a worker's failure reaches the host: [Run.Err] returns
// one when the worker's Run returned an error or panicked. Its text is the
// worker's error text (for a panic: the panic value's text if it was an
// error, else "panic: " and the value) and it unwraps to
// the registered sentinels the worker's error wrapped, so
// errors.Is(err, sdk.ErrMailboxFull) works on the host as in the plugin.
type WorkerError struct {
	// Message is the worker's error text (see Error).
	Message string
	// Panicked reports that the worker's Run panicked.
	Panicked bool
	// ExitCode is the status the plugin process said it would exit with
	// (1 for an error, 2 for a panic).
	ExitCode  int
	sentinels []error
}

// Error returns Message.
func (e *WorkerError) Error() string { return e.Message }

// Unwrap returns the registered sentinels the worker's error wrapped.
func (e *WorkerError) Unwrap() []error { return e.sentinels }

// exitStatus encodes a worker's result for the EXITED event.
func exitStatus(err error, panicked bool, exitCode int) *pb.ExitStatus {
	if err == nil {
		return &pb.ExitStatus{ExitCode: int32(exitCode)}
	}
	return &pb.ExitStatus{
		Failed:    true,
		Message:   err.Error(),
		Sentinels: sentinelCodes(err),
		Panicked:  panicked,
		ExitCode:  int32(exitCode),
	}
}

// fromExitStatus decodes an EXITED event into what Run.Err returns.
func fromExitStatus(es *pb.ExitStatus) error {
	if !es.GetFailed() {
		return nil
	}
	return &WorkerError{
		Message:   es.GetMessage(),
		Panicked:  es.GetPanicked(),
		ExitCode:  int(es.GetExitCode()),
		sentinels: sentinelsFor(es.GetSentinels()),
	}
}
