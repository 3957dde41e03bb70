package sdk

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
)

// SupervisorBuilder builds a [Supervisor] with chained calls, the seed's
// supervisor builder:
//
//	sup, err := sdk.Supervise().
//		Child("worker_1", work).
//		Child("worker_2", work).
//		Strategy(sdk.OneForAll).MaxRestarts(5).MaxSeconds(30).
//		Build()
//
// The calls may come in any order; problems are reported together by Build.
// A builder is not safe for concurrent use.
type SupervisorBuilder struct {
	opts        SupervisorOptions
	maxRestarts *int
	specs       []ChildSpec
	errs        []error
}

// Supervise returns an empty builder with the default options.
func Supervise() *SupervisorBuilder { return &SupervisorBuilder{} }

// Child adds a permanent goroutine child running fn (see [FuncChild]).
func (b *SupervisorBuilder) Child(id string, fn func(ctx context.Context) error) *SupervisorBuilder {
	return b.Spec(ChildSpec{ID: id, Start: fn})
}

// Spec adds a child with a full [ChildSpec].
func (b *SupervisorBuilder) Spec(spec ChildSpec) *SupervisorBuilder {
	b.specs = append(b.specs, spec)
	return b
}

// Name sets SupervisorOptions.Name.
func (b *SupervisorBuilder) Name(name string) *SupervisorBuilder { b.opts.Name = name; return b }

// Strategy sets the restart strategy (default [OneForOne]).
func (b *SupervisorBuilder) Strategy(s RestartStrategy) *SupervisorBuilder {
	b.opts.Strategy = s
	return b
}

// MaxRestarts sets the restarts tolerated within MaxSeconds. Here 0 means
// zero (give up on the first restart); negative is invalid.
func (b *SupervisorBuilder) MaxRestarts(n int) *SupervisorBuilder {
	if n < 0 {
		b.errs = append(b.errs, fmt.Errorf("%w: MaxRestarts %d is negative", ErrInvalidSpec, n))
	}
	b.maxRestarts = &n
	return b
}

// MaxSeconds sets the intensity window in whole seconds (must be positive).
func (b *SupervisorBuilder) MaxSeconds(n int) *SupervisorBuilder {
	if n <= 0 {
		b.errs = append(b.errs, fmt.Errorf("%w: MaxSeconds %d must be positive", ErrInvalidSpec, n))
	}
	b.opts.MaxSeconds = n
	return b
}

// Backoff sets the default restart backoff ([NoBackoff] to restart at once).
func (b *SupervisorBuilder) Backoff(bo Backoff) *SupervisorBuilder { b.opts.Backoff = bo; return b }

// Logger sets the logger of lifecycle events.
func (b *SupervisorBuilder) Logger(l hclog.Logger) *SupervisorBuilder { b.opts.Logger = l; return b }

// EventHook sets SupervisorOptions.EventHook.
func (b *SupervisorBuilder) EventHook(f func(Event)) *SupervisorBuilder {
	b.opts.EventHook = f
	return b
}

// Options replaces every option at once (children are kept; a later
// MaxRestarts still applies).
func (b *SupervisorBuilder) Options(o SupervisorOptions) *SupervisorBuilder { b.opts = o; return b }

// Build returns the supervisor, not started. It returns every problem at
// once, joined, each wrapping [ErrInvalidSpec] or [ErrDuplicateChild].
func (b *SupervisorBuilder) Build() (*Supervisor, error) {
	opts := b.opts
	if b.maxRestarts != nil {
		opts.MaxRestarts = *b.maxRestarts
		if opts.MaxRestarts == 0 {
			opts.MaxRestarts = NoRestarts
		}
	}
	errs := append([]error(nil), b.errs...)
	s := NewSupervisor(opts)
	if s.err0 != nil {
		errs = append(errs, s.err0)
	}
	for _, spec := range b.specs {
		if err := s.AddChild(spec); err != nil && s.err0 == nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}
