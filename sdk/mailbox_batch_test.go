package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func batchIDs(ms []*Message) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID()
	}
	return ids
}

func TestMailboxFetchBatchAs(t *testing.T) {
	// Every message's Size is 10 ("payload-" + a 1-byte ID) + 4 ("test").
	const size = 14
	msg := func(t *testing.T, id string, p Priority) *Message { return mbMsg(t, id, p, SignalNone) }
	tests := map[string]struct {
		prepare  func(t *testing.T, mb *Mailbox, fc *mbClock)
		max      int
		maxBytes int
		ctx      func() context.Context
		want     []string
		wantErr  error
		wantLeft int
	}{
		"takes what is ready up to max, in priority order": {
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) {
				mbSend(t, mb, msg(t, "a", PriorityLow), msg(t, "b", PriorityNormal), msg(t, "c", PriorityCritical), msg(t, "d", PriorityNormal))
			},
			max: 3, want: []string{"c", "b", "d"}, wantLeft: 1,
		},
		"fewer ready than max": {
			prepare:  func(t *testing.T, mb *Mailbox, _ *mbClock) { mbSend(t, mb, msg(t, "a", PriorityNormal)) },
			max:      64,
			want:     []string{"a"},
			wantLeft: 0,
		},
		"byte limit: takes more while below it": {
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) {
				mbSend(t, mb, msg(t, "a", PriorityNormal), msg(t, "b", PriorityNormal), msg(t, "c", PriorityNormal))
			},
			max: 10, maxBytes: size + 1, want: []string{"a", "b"}, wantLeft: 1,
		},
		"a first message above the byte limit comes alone": {
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) {
				mbSend(t, mb, msg(t, "a", PriorityNormal), msg(t, "b", PriorityNormal))
			},
			max: 10, maxBytes: 1, want: []string{"a"}, wantLeft: 1,
		},
		"max below 1 counts as 1": {
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) {
				mbSend(t, mb, msg(t, "a", PriorityNormal), msg(t, "b", PriorityNormal))
			},
			max: 0, want: []string{"a"}, wantLeft: 1,
		},
		"expired messages go to the dead letters, not the batch": {
			prepare: func(t *testing.T, mb *Mailbox, fc *mbClock) {
				a, b, c := msg(t, "a", PriorityNormal), msg(t, "b", PriorityNormal), msg(t, "c", PriorityNormal)
				fc.set(a, time.Second)
				fc.set(c, time.Second)
				mbSend(t, mb, a, b, c)
				fc.advance(time.Second)
			},
			max: 10, want: []string{"b"},
		},
		"a done context still takes what is ready": {
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) { mbSend(t, mb, msg(t, "a", PriorityNormal)) },
			max:     10, ctx: doneCtx, want: []string{"a"},
		},
		"a done context and nothing ready": {
			max: 10, ctx: doneCtx, wantErr: context.Canceled,
		},
		"closed and drained": {
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) { mb.Close() },
			max:     10, wantErr: ErrInboxClosed,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			mb, fc := newMbTest(t, MailboxConfig{})
			if tc.prepare != nil {
				tc.prepare(t, mb, fc)
			}
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx()
			}
			prefix := []*Message{Msg("already there").MustBuild()}
			got, err := mb.FetchBatchAs(ctx, "w", tc.max, tc.maxBytes, prefix)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if len(got) == 0 || got[0] != prefix[0] {
				t.Fatalf("dst not appended to: %v", got)
			}
			if ids := batchIDs(got[1:]); !slices.Equal(ids, tc.want) && !(len(ids) == 0 && len(tc.want) == 0) {
				t.Fatalf("fetched %v, want %v", ids, tc.want)
			}
			st := mb.Stats()
			if st.InFlight != len(tc.want) || st.Len != tc.wantLeft || st.MessagesReceived != uint64(len(tc.want)) {
				t.Errorf("stats %+v", st)
			}
			for _, m := range got[1:] {
				if m.Attempts() != 1 {
					t.Errorf("%s: attempts %d", m.ID(), m.Attempts())
				}
			}
			// In flight for "w", as after FetchAs.
			if n := mb.ReleaseConsumer("w", "test"); n != len(tc.want) {
				t.Errorf("ReleaseConsumer = %d, want %d", n, len(tc.want))
			}
		})
	}
}

func doneCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestMailboxFetchBatchAsBlocksForTheFirst parks a batch fetch on an empty
// mailbox, then checks that a send wakes it with that message and that a
// cancellation wakes it with ctx's error.
func TestMailboxFetchBatchAsBlocksForTheFirst(t *testing.T) {
	defer goleak.VerifyNone(t)
	mb, _ := newMbTest(t, MailboxConfig{})
	type result struct {
		ms  []*Message
		err error
	}
	res := make(chan result)
	fetch := func(ctx context.Context) {
		ms, err := mb.FetchBatchAs(ctx, "w", 8, 0, nil)
		res <- result{ms, err}
	}
	go fetch(context.Background())
	mbWaitFor(t, "a parked batch fetch", func() bool { r, _ := mbParked(mb); return r == 1 })
	m := mbMsg(t, "a", PriorityNormal, SignalNone)
	mbSend(t, mb, m)
	if r := <-res; r.err != nil || len(r.ms) != 1 || r.ms[0] != m {
		t.Fatalf("woken with %v %v", r.ms, r.err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go fetch(ctx)
	mbWaitFor(t, "a parked batch fetch", func() bool { r, _ := mbParked(mb); return r == 1 })
	cancel()
	if r := <-res; !errors.Is(r.err, context.Canceled) || len(r.ms) != 0 {
		t.Fatalf("cancelled fetch returned %v %v", r.ms, r.err)
	}
}

func TestMailboxAckBatch(t *testing.T) {
	mb, _ := newMbTest(t, MailboxConfig{})
	var sent []*Message
	for i := range 5 {
		m := mbMsg(t, fmt.Sprint(i), PriorityNormal, SignalNone)
		sent = append(sent, m)
		mbSend(t, mb, m)
	}
	ms, err := mb.FetchBatchAs(context.Background(), "w", 4, 0, nil)
	if err != nil || len(ms) != 4 {
		t.Fatalf("FetchBatchAs: %v %v", ms, err)
	}
	// Two in flight, one listed twice, one unknown, one still queued.
	if n := mb.AckBatch([]string{"0", "2", "2", "nope", "4"}); n != 2 {
		t.Fatalf("AckBatch = %d, want 2", n)
	}
	st := mb.Stats()
	if st.MessagesAcked != 2 || st.InFlight != 2 || st.Len != 1 || st.TotalSizeBytes != 3*sent[0].Size() {
		t.Fatalf("stats %+v", st)
	}
	// Acked IDs are free again; unacked ones are still held.
	mbSend(t, mb, mbMsg(t, "0", PriorityNormal, SignalNone))
	if err := mb.Send(mbMsg(t, "1", PriorityNormal, SignalNone)); !errors.Is(err, ErrDuplicateMessage) {
		t.Fatalf("send of an unacked id: %v", err)
	}
	if n := mb.AckBatch(nil); n != 0 {
		t.Fatalf("AckBatch(nil) = %d", n)
	}
	if n := mb.ReleaseConsumer("w", "done"); n != 2 {
		t.Fatalf("ReleaseConsumer = %d, want 2", n)
	}
	if got := mbDrain(t, mb); !slices.Equal(got, []string{"1", "3", "4", "0"}) {
		t.Fatalf("drained %v", got)
	}
}

// BenchmarkFetchAck compares the at-least-once consumer loop of the plugin
// bridge done one message at a time (FetchAs, then Ack) and in batches
// (FetchBatchAs, then AckBatch): each round sends 64 prebuilt messages,
// then fetches and acknowledges them all, in one goroutine, so the two
// differ only in the consumer's lock rounds. ns/op is per message, sends
// included.
func BenchmarkFetchAck(b *testing.B) {
	const batch = 64
	for _, mode := range []string{"single", "batch"} {
		b.Run(mode, func(b *testing.B) {
			mb := NewMailbox(MailboxConfig{Capacity: benchCap, DefaultTTL: time.Minute})
			ctx := context.Background()
			src := newRecycler(b, 2*batch)
			ms := make([]*Message, 0, batch)
			ids := make([]string, 0, batch)
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				k := min(batch, b.N-done)
				for range k {
					if err := mb.Send(src.next()); err != nil {
						b.Fatal(err)
					}
				}
				if mode == "single" {
					for range k {
						n += fetchAckOne(ctx, b, mb)
					}
				} else {
					var err error
					if ms, err = mb.FetchBatchAs(ctx, "w", k, 0, ms[:0]); err != nil || len(ms) != k {
						b.Fatalf("FetchBatchAs: %d of %d, %v", len(ms), k, err)
					}
					ids = ids[:0]
					for _, m := range ms {
						n += len(m.Payload())
						ids = append(ids, m.ID())
					}
					if a := mb.AckBatch(ids); a != k {
						b.Fatalf("AckBatch = %d of %d", a, k)
					}
				}
				done += k
			}
			sink = n
		})
	}
}

// BenchmarkFetchAckContended is BenchmarkFetchAck with a producer goroutine
// sending all the while (SendContext) into a mailbox of benchCap: the
// consumer's lock rounds then contend with the producer's.
func BenchmarkFetchAckContended(b *testing.B) {
	const batch = 64
	for _, mode := range []string{"single", "batch"} {
		b.Run(mode, func(b *testing.B) {
			mb := newBenchMailbox()
			ctx := context.Background()
			srcs := newSources(b, 1, true)
			ms := make([]*Message, 0, batch)
			ids := make([]string, 0, batch)
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			wg := runProducers(b.N, srcs, mailboxSend(b, mb))
			for done := 0; done < b.N; {
				if mode == "single" {
					n += fetchAckOne(ctx, b, mb)
					done++
					continue
				}
				var err error
				if ms, err = mb.FetchBatchAs(ctx, "w", min(batch, b.N-done), 0, ms[:0]); err != nil {
					b.Fatal(err)
				}
				ids = ids[:0]
				for _, m := range ms {
					n += len(m.Payload())
					ids = append(ids, m.ID())
				}
				if a := mb.AckBatch(ids); a != len(ms) {
					b.Fatalf("AckBatch = %d of %d", a, len(ms))
				}
				done += len(ms)
			}
			sink = n
			wg.Wait()
		})
	}
}

// fetchAckOne fetches one message as consumer "w", acknowledges it and
// returns its payload length: the single-message side of the batch
// benchmarks.
func fetchAckOne(ctx context.Context, b *testing.B, mb *Mailbox) int {
	m, err := mb.FetchAs(ctx, "w")
	if err != nil {
		b.Fatal(err)
	}
	if err := mb.Ack(m.ID()); err != nil {
		b.Fatal(err)
	}
	return len(m.Payload())
}
