package sdk

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Backoff is the per-child delay between restarts: Min, then Min×Multiplier,
// Min×Multiplier², … capped at Max, each reduced by up to Jitter×delay at
// random (so the delay lies in [d×(1−Jitter), d]). The attempt count goes
// back to zero once an incarnation has run for ResetAfter before failing.
//
// Backoff composes with restart intensity: every restart, delayed or not,
// counts in the MaxRestarts/MaxSeconds window when it is decided. Under
// [OneForAll] and [RestForOne] the restarted group waits for the failed
// child's delay, then starts in order.
//
// The zero value means "not set": the supervisor's default applies (for a
// ChildSpec, the supervisor's Backoff; for SupervisorOptions, the production
// preset's BackoffMin/BackoffMax). Any other value with Min 0 restarts at
// once; [NoBackoff] is the canonical such value.
type Backoff struct {
	// Min is the first delay. 0 restarts at once, every time.
	Min time.Duration
	// Max caps the delay. 0 means Min×64.
	Max time.Duration
	// Multiplier grows the delay per consecutive restart. 0 means 2; values
	// below 1 are invalid.
	Multiplier float64
	// Jitter is the random fraction, in [0, 1], taken off each delay so
	// that siblings do not restart in lockstep. 0 means none.
	Jitter float64
	// ResetAfter is how long an incarnation must run before its failure is
	// treated as the first of a new series. 0 means the supervisor's
	// intensity window (MaxSeconds).
	ResetAfter time.Duration
}

// NoBackoff restarts children at once. Use it where a zero value would mean
// "the default" (SupervisorOptions.Backoff, ChildSpec.Backoff).
var NoBackoff = Backoff{Multiplier: 1}

// IsZero reports whether b is the zero value ("not set").
func (b Backoff) IsZero() bool { return b == Backoff{} }

// validate returns an error wrapping [ErrInvalidSpec] for negative
// durations, a multiplier below 1 (other than 0) or a jitter outside [0, 1].
func (b Backoff) validate() error {
	switch {
	case b.Min < 0 || b.Max < 0 || b.ResetAfter < 0:
		return fmt.Errorf("%w: backoff durations must not be negative", ErrInvalidSpec)
	case b.Multiplier != 0 && (b.Multiplier < 1 || math.IsNaN(b.Multiplier) || math.IsInf(b.Multiplier, 0)):
		return fmt.Errorf("%w: backoff multiplier %v must be at least 1", ErrInvalidSpec, b.Multiplier)
	case b.Jitter < 0 || b.Jitter > 1 || math.IsNaN(b.Jitter):
		return fmt.Errorf("%w: backoff jitter %v must be within [0, 1]", ErrInvalidSpec, b.Jitter)
	case b.Max != 0 && b.Max < b.Min:
		return fmt.Errorf("%w: backoff max %v below min %v", ErrInvalidSpec, b.Max, b.Min)
	}
	return nil
}

// withDefaults fills Max, Multiplier and ResetAfter.
func (b Backoff) withDefaults(window time.Duration) Backoff {
	if b.Multiplier == 0 {
		b.Multiplier = 2
	}
	if b.Max == 0 {
		b.Max = 64 * b.Min
	}
	if b.ResetAfter == 0 {
		b.ResetAfter = window
	}
	return b
}

// Delay returns the delay before restart number attempt (0-based) of a
// series, with jitter drawn from math/rand/v2. It is safe for concurrent use.
func (b Backoff) Delay(attempt int) time.Duration {
	return b.delay(attempt, rand.Float64)
}

func (b Backoff) delay(attempt int, random func() float64) time.Duration {
	if b.Min <= 0 {
		return 0
	}
	b = b.withDefaults(0)
	d := float64(b.Min) * math.Pow(b.Multiplier, float64(max(attempt, 0)))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(b.Max)
	}
	if b.Jitter > 0 {
		d -= d * b.Jitter * random()
	}
	return time.Duration(d)
}
