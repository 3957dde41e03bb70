package host

import (
	"strconv"
	"testing"
)

// TestTagSet checks the session's in-flight set (the bridge's per-delivery
// bookkeeping, kept cheap for the throughput above): deliveries settled in
// any order, a straggler held while the span moves on (it moves to the
// map, and is still found), unknown and repeated tags.
func TestTagSet(t *testing.T) {
	tests := map[string]struct {
		adds   int
		order  func(n int) []uint64 // removal order
		window int
	}{
		"in order": {adds: 5000, window: 256, order: func(n int) []uint64 {
			out := make([]uint64, n)
			for i := range out {
				out[i] = uint64(i + 1)
			}
			return out
		}},
		"reversed": {adds: 3000, window: 256, order: func(n int) []uint64 {
			out := make([]uint64, n)
			for i := range out {
				out[i] = uint64(n - i)
			}
			return out
		}},
		"interleaved": {adds: 4000, window: 4, order: func(n int) []uint64 {
			var out []uint64
			for i := 2; i <= n; i += 2 {
				out = append(out, uint64(i))
			}
			for i := 1; i <= n; i += 2 {
				out = append(out, uint64(i))
			}
			return out
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ts := newTagSet(tc.window)
			for i := range tc.adds {
				if tag := ts.add(tagged{id: strconv.Itoa(i + 1), size: i + 1}); tag != uint64(i+1) {
					t.Fatalf("add %d: tag %d", i+1, tag)
				}
			}
			if ts.n != tc.adds {
				t.Fatalf("n = %d, want %d", ts.n, tc.adds)
			}
			if span := len(ts.q) - ts.head; span > ts.spanMax {
				t.Fatalf("queue spans %d tags, more than %d", span, ts.spanMax)
			}
			for _, tag := range tc.order(tc.adds) {
				tg, ok := ts.remove(tag)
				if !ok || tg.id != strconv.FormatUint(tag, 10) {
					t.Fatalf("remove %d: %+v, %v", tag, tg, ok)
				}
				if _, ok := ts.remove(tag); ok {
					t.Fatalf("tag %d removed twice", tag)
				}
			}
			if ts.n != 0 || len(ts.old) != 0 || len(ts.q) != ts.head {
				t.Fatalf("not empty: n %d, old %d, queue %d", ts.n, len(ts.old), len(ts.q)-ts.head)
			}
			for _, tag := range []uint64{0, uint64(tc.adds + 1), 1 << 60} {
				if _, ok := ts.remove(tag); ok {
					t.Fatalf("removed unknown tag %d", tag)
				}
			}
		})
	}
	t.Run("straggler", func(t *testing.T) {
		ts := newTagSet(256)
		first := ts.add(tagged{id: "held"})
		for range 10 * ts.spanMax { // the others settle as they go
			tag := ts.add(tagged{id: "x"})
			if _, ok := ts.remove(tag); !ok {
				t.Fatalf("remove %d failed", tag)
			}
			if span := len(ts.q) - ts.head; span > ts.spanMax {
				t.Fatalf("queue spans %d tags, more than %d", span, ts.spanMax)
			}
		}
		if ts.n != 1 || len(ts.old) != 1 {
			t.Fatalf("n %d, old %d; want the straggler alone, in the map", ts.n, len(ts.old))
		}
		if tg, ok := ts.remove(first); !ok || tg.id != "held" {
			t.Fatalf("straggler: %+v, %v", tg, ok)
		}
		if ts.n != 0 {
			t.Fatalf("n = %d after the straggler", ts.n)
		}
	})
}
