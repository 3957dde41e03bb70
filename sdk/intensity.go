package sdk

import "time"

// intensity is OTP's restart intensity: more than max restarts within a
// sliding window of period gives up. It belongs to one supervisor run: the
// run loop changes it, under Supervisor.mu so that Stats may read it.
type intensity struct {
	max    int           // restarts tolerated within period (0: none)
	period time.Duration // the sliding window
	times  []time.Time   // restarts inside the window, oldest first
}

// add records a restart at now and reports whether the limit is exceeded,
// that is whether more than max restarts happened within [now−period, now]
// (OTP keeps a restart exactly period old).
// Times must not go backwards. It is O(1) amortised and keeps at most max+1
// times.
func (in *intensity) add(now time.Time) (exceeded bool) {
	drop := 0
	for drop < len(in.times) && now.Sub(in.times[drop]) > in.period {
		drop++
	}
	if keep := in.max + 1; len(in.times)-drop >= keep {
		drop = len(in.times) - keep + 1 // only the newest max+1 matter
	}
	if drop > 0 {
		n := copy(in.times, in.times[drop:])
		in.times = in.times[:n]
	}
	in.times = append(in.times, now)
	return len(in.times) > in.max
}

// count returns how many restarts lie within the window at now.
func (in *intensity) count(now time.Time) int {
	n := 0
	for _, t := range in.times {
		if now.Sub(t) <= in.period {
			n++
		}
	}
	return n
}
