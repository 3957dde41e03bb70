package sdk

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
)

// ErrPanic is wrapped by the [*PanicError] a goroutine child fails with when
// its function panics.
var ErrPanic = errors.New("vigil: child panicked")

// PanicError is the failure of a goroutine child whose function panicked.
// It unwraps to [ErrPanic]; the supervisor logs Stack.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the panicking goroutine's stack
}

// Error returns "vigil: child panicked: <value>" (without the stack).
func (e *PanicError) Error() string { return fmt.Sprintf("%v: %v", ErrPanic, e.Value) }

// Unwrap returns [ErrPanic].
func (e *PanicError) Unwrap() error { return ErrPanic }

// FuncChild returns a [Child] whose every incarnation runs fn in a new
// goroutine:
//
//   - fn returning nil is a normal exit; a non-nil error is a failure; a
//     panic is recovered and becomes a failure with a [*PanicError] carrying
//     the stack.
//   - fn's ctx carries the values of the ctx given to Start (not its
//     cancellation) and is cancelled when the incarnation is stopped. fn must
//     return soon after: Stop waits for it until its own ctx is done.
//   - A goroutine cannot be killed. If fn ignores cancellation, Stop returns
//     an error wrapping [ErrShutdownTimeout] and the goroutine keeps running;
//     a supervisor then reports the child as stuck ([ChildStuck]) and never
//     starts a second copy while the first still runs.
//
// Start never blocks and only fails if its ctx is already done.
func FuncChild(fn func(ctx context.Context) error) Child { return funcChild(fn) }

type funcChild func(ctx context.Context) error

// Start implements [Child].
func (f funcChild) Start(ctx context.Context) (Incarnation, error) {
	if f == nil {
		return nil, fmt.Errorf("%w: nil function", ErrInvalidSpec)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	inc := &funcIncarnation{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(inc.done)
		defer cancel()
		inc.err = runRecovered(rctx, f)
	}()
	return inc, nil
}

func runRecovered(ctx context.Context, f func(context.Context) error) (err error) {
	returned := false
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		} else if !returned {
			// runtime.Goexit (t.FailNow, log.Fatal-like helpers) is no
			// normal exit.
			err = errors.New("vigil: worker goroutine exited via runtime.Goexit")
		}
	}()
	err = f(ctx)
	returned = true
	return err
}

// funcIncarnation is one goroutine run of a funcChild.
type funcIncarnation struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // written before done is closed
}

func (i *funcIncarnation) Done() <-chan struct{} { return i.done }

func (i *funcIncarnation) Err() error {
	select {
	case <-i.done:
		return i.err
	default:
		return nil
	}
}

func (i *funcIncarnation) Stop(ctx context.Context) error {
	i.cancel()
	select {
	case <-i.done:
		return nil
	case <-ctx.Done():
		select {
		case <-i.done:
			return nil
		default:
		}
		return fmt.Errorf("%w: goroutine ignored cancellation and still runs (a goroutine cannot be killed)", ErrShutdownTimeout)
	}
}
