package sdk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"
)

// mbClock replaces a mailbox's clock so that TTL tests never sleep.
type mbClock struct{ t atomic.Int64 }

func (c *mbClock) now() int64               { return c.t.Load() }
func (c *mbClock) advance(d time.Duration)  { c.t.Add(int64(d)) }
func (c *mbClock) at(d time.Duration) int64 { return c.t.Load() + int64(d) }
func (c *mbClock) set(m *Message, ttl time.Duration) {
	m.ttl = ttl
	m.deadline.Store(c.at(ttl))
}

// newMbTest returns a mailbox on a fake clock that starts at one hour.
func newMbTest(t *testing.T, cfg MailboxConfig) (*Mailbox, *mbClock) {
	t.Helper()
	fc := &mbClock{}
	fc.t.Store(int64(time.Hour))
	mb := NewMailbox(cfg)
	mb.now = fc.now
	return mb, fc
}

// mbMsg builds a message with an explicit ID, priority and signal.
func mbMsg(t *testing.T, id string, p Priority, s Signal) *Message {
	t.Helper()
	m, err := NewMessage(id, "test", []byte("payload-"+id), s, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mbSend sends or fails the test.
func mbSend(t *testing.T, mb *Mailbox, ms ...*Message) {
	t.Helper()
	for _, m := range ms {
		if err := mb.Send(m); err != nil {
			t.Fatalf("Send(%s): %v", m.ID(), err)
		}
	}
}

// mbDrain drains the mailbox without blocking and returns the IDs.
func mbDrain(t *testing.T, mb *Mailbox) []string {
	t.Helper()
	var ids []string
	for range 10000 {
		m, err := mb.Receive()
		if errors.Is(err, ErrEmptyMailbox) || errors.Is(err, ErrInboxClosed) {
			return ids
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID())
	}
	t.Fatal("mailbox never drained")
	return nil
}

func mbEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// mbWaitFor polls cond until it holds, failing the test after 5 s.
func mbWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond) // polling with a deadline
	}
}

// mbParked reports how many goroutines wait in receives and sends.
func mbParked(mb *Mailbox) (recv, send int) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.recvq.len(), mb.sendq.len()
}

func TestMailboxConfigDefaults(t *testing.T) {
	mb := NewMailbox(MailboxConfig{})
	if mb.Cap() != PresetProduction.Values().MailboxCapacity || mb.dlCap != DefaultDeadLetterCapacity ||
		mb.maxSize != DefaultMaxMessageSize || mb.maxAtt != DefaultMaxDeliveryAttempts ||
		!mb.priorities || !mb.deadLetter || mb.defaultTTL != 0 {
		t.Errorf("zero config did not give the defaults: %+v", mb.Stats())
	}
	mb = NewMailbox(MailboxConfig{MaxMessageSize: -1, MaxDeliveryAttempts: -1})
	if err := mb.Send(Msg(make([]byte, 4<<20)).MustBuild()); err != nil {
		t.Errorf("negative MaxMessageSize should mean no limit: %v", err)
	}
}

func TestMailboxSendErrors(t *testing.T) {
	expired := func(fc *mbClock) *Message {
		m := Msg("old").MustBuild()
		fc.set(m, time.Millisecond)
		fc.advance(time.Millisecond)
		return m
	}
	tests := map[string]struct {
		cfg     MailboxConfig
		prepare func(t *testing.T, mb *Mailbox, fc *mbClock) *Message
		want    error
		wantIn  string
	}{
		"nil message": {
			prepare: func(*testing.T, *Mailbox, *mbClock) *Message { return nil },
			want:    ErrInvalidMessage,
		},
		"zero message": {
			prepare: func(*testing.T, *Mailbox, *mbClock) *Message { return &Message{} },
			want:    ErrInvalidMessage,
		},
		"too large": {
			cfg:     MailboxConfig{MaxMessageSize: 10},
			prepare: func(*testing.T, *Mailbox, *mbClock) *Message { return Msg("0123456789").ID("big").MustBuild() },
			want:    ErrMessageTooLarge, wantIn: "big",
		},
		"expired": {
			prepare: func(_ *testing.T, _ *Mailbox, fc *mbClock) *Message { return expired(fc) },
			want:    ErrMessageExpired,
		},
		"closed": {
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) *Message {
				mb.Close()
				return mbMsg(t, "a", PriorityNormal, SignalNone)
			},
			want: ErrInboxClosed,
		},
		"full": {
			cfg: MailboxConfig{Capacity: 2},
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) *Message {
				mbSend(t, mb, mbMsg(t, "a", PriorityLow, SignalNone), mbMsg(t, "b", PriorityCritical, SignalNone))
				return mbMsg(t, "c", PriorityCritical, SignalNone)
			},
			want: ErrMailboxFull, wantIn: "capacity 2",
		},
		"same message twice": {
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) *Message {
				m := Msg("x").MustBuild()
				mbSend(t, mb, m)
				return m
			},
			want: ErrDuplicateMessage,
		},
		"same explicit id": {
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) *Message {
				mbSend(t, mb, mbMsg(t, "order-1", PriorityNormal, SignalNone))
				return mbMsg(t, "order-1", PriorityHigh, SignalNone)
			},
			want: ErrDuplicateMessage, wantIn: "order-1",
		},
		"explicit id equal to a queued generated id": {
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) *Message {
				g := Msg("x").MustBuild()
				mbSend(t, mb, g)
				return mbMsg(t, g.ID(), PriorityNormal, SignalNone)
			},
			want: ErrDuplicateMessage,
		},
		"generated message whose id was queued explicitly": {
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) *Message {
				g := Msg("x").MustBuild()
				mbSend(t, mb, mbMsg(t, g.ID(), PriorityNormal, SignalNone))
				return g
			},
			want: ErrDuplicateMessage,
		},
		"id in flight": {
			prepare: func(t *testing.T, mb *Mailbox, _ *mbClock) *Message {
				g := Msg("x").MustBuild()
				mbSend(t, mb, g)
				if _, err := mb.Fetch(context.Background()); err != nil {
					t.Fatal(err)
				}
				return g
			},
			want: ErrDuplicateMessage,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			mb, fc := newMbTest(t, tc.cfg)
			m := tc.prepare(t, mb, fc)
			before := mb.Stats()
			err := mb.Send(m)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Send: %v, want %v", err, tc.want)
			}
			if tc.wantIn != "" && !mbContains(err.Error(), tc.wantIn) {
				t.Errorf("error %q does not mention %q", err, tc.wantIn)
			}
			after := mb.Stats()
			if after.Len != before.Len || after.MessagesSent != before.MessagesSent {
				t.Errorf("a failed send changed the mailbox: %+v -> %+v", before, after)
			}
			if after.MessagesRejected != before.MessagesRejected+1 {
				t.Errorf("MessagesRejected %d -> %d", before.MessagesRejected, after.MessagesRejected)
			}
		})
	}
}

func mbContains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestMailboxReceivesInPriorityOrderFIFOWithin(t *testing.T) {
	mb, _ := newMbTest(t, MailboxConfig{})
	mbSend(t, mb,
		mbMsg(t, "low1", PriorityLow, SignalNone),
		mbMsg(t, "batch1", PriorityBatch, SignalNone),
		mbMsg(t, "normal1", PriorityNormal, SignalNone),
		mbMsg(t, "crit1", PriorityCritical, SignalNone),
		mbMsg(t, "high1", PriorityHigh, SignalNone),
		mbMsg(t, "normal2", PriorityNormal, SignalNone),
		mbMsg(t, "crit2", PriorityCritical, SignalNone),
		mbMsg(t, "low2", PriorityLow, SignalNone),
	)
	want := []string{"crit1", "crit2", "high1", "normal1", "normal2", "low1", "low2", "batch1"}
	if got := mbDrain(t, mb); !mbEqual(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if _, err := mb.Receive(); !errors.Is(err, ErrEmptyMailbox) {
		t.Errorf("Receive on empty: %v", err)
	}
}

func TestMailboxWithoutPriorityQueuesIsOneFIFO(t *testing.T) {
	mb, _ := newMbTest(t, MailboxConfig{DisablePriorityQueues: true})
	mbSend(t, mb, mbMsg(t, "a", PriorityBatch, SignalNone), mbMsg(t, "b", PriorityCritical, SignalNone), mbMsg(t, "c", PriorityNormal, SignalNone))
	if got := mbDrain(t, mb); !mbEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("order %v", got)
	}
}

func TestMailboxAcceptsLifecycleSignalsWhenFull(t *testing.T) {
	mb, _ := newMbTest(t, MailboxConfig{Capacity: 1})
	mbSend(t, mb, mbMsg(t, "work", PriorityNormal, SignalNone))
	if err := mb.Send(mbMsg(t, "more", PriorityCritical, SignalAlert)); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("non-lifecycle send to a full mailbox: %v", err)
	}
	for _, s := range []Signal{SignalShutdown, SignalTerminate, SignalRestart, SignalExit} {
		mbSend(t, mb, mbMsg(t, s.String(), PriorityCritical, s))
	}
	if mb.Len() != 5 {
		t.Errorf("Len = %d, want 5", mb.Len())
	}
	if st := mb.Stats(); st.PeakUsage != 5 || st.MessagesSent != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestMailboxNeverDeliversExpiredMessages(t *testing.T) {
	mb, fc := newMbTest(t, MailboxConfig{})
	short, long, forever := mbMsg(t, "short", PriorityHigh, SignalNone), mbMsg(t, "long", PriorityNormal, SignalNone), mbMsg(t, "forever", PriorityLow, SignalNone)
	fc.set(short, time.Second)
	fc.set(long, time.Minute)
	mbSend(t, mb, short, long, forever)
	fc.advance(time.Second) // short's deadline is now: expired
	if got := mbDrain(t, mb); !mbEqual(got, []string{"long", "forever"}) {
		t.Errorf("received %v", got)
	}
	dls := mb.DeadLetters()
	if len(dls) != 1 || dls[0].Message != short || dls[0].Reason != ReasonExpired || dls[0].Poison || dls[0].ID == "" || dls[0].At.IsZero() {
		t.Fatalf("dead letters %+v", dls)
	}
	st := mb.Stats()
	if st.MessagesExpired != 1 || st.DeadLettered != 1 || st.DeadLetters != 1 || st.MessagesReceived != 2 || st.TotalSizeBytes != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestMailboxDefaultTTLAppliesToMessagesWithoutTTL(t *testing.T) {
	mb, fc := newMbTest(t, MailboxConfig{DefaultTTL: time.Second})
	m := mbMsg(t, "m", PriorityNormal, SignalNone)
	own := mbMsg(t, "own", PriorityNormal, SignalNone)
	fc.set(own, time.Hour)
	mbSend(t, mb, m, own)
	if d, ok := m.Deadline(); !ok || d.Sub(epoch) != time.Duration(fc.at(time.Second)) {
		t.Errorf("deadline %v %v", d, ok)
	}
	if m.TTL() != 0 {
		t.Error("DefaultTTL changed the message's own TTL")
	}
	fc.advance(2 * time.Second)
	if got := mbDrain(t, mb); !mbEqual(got, []string{"own"}) {
		t.Errorf("received %v", got)
	}
}

func TestMailboxFullOfExpiredMessagesMakesRoom(t *testing.T) {
	mb, fc := newMbTest(t, MailboxConfig{Capacity: 2})
	a, b := mbMsg(t, "a", PriorityNormal, SignalNone), mbMsg(t, "b", PriorityLow, SignalNone)
	fc.set(a, time.Second)
	mbSend(t, mb, a, b)
	if err := mb.Send(mbMsg(t, "c", PriorityNormal, SignalNone)); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("send to a full mailbox: %v", err)
	}
	fc.advance(time.Second)
	mbSend(t, mb, mbMsg(t, "c", PriorityNormal, SignalNone))
	if st := mb.Stats(); st.MessagesExpired != 1 || st.Len != 2 {
		t.Errorf("stats %+v", st)
	}
	fc.set(b, 0)
	b.deadline.Store(fc.at(time.Second))
	fc.advance(time.Hour)
	if n := mb.SweepExpired(); n != 1 || mb.Len() != 1 {
		t.Errorf("SweepExpired = %d, Len %d", n, mb.Len())
	}
}

func TestMailboxDeadLetterReplayAndDiscard(t *testing.T) {
	mb, fc := newMbTest(t, MailboxConfig{Capacity: 2, DefaultTTL: time.Minute})
	m := mbMsg(t, "m", PriorityHigh, SignalNone)
	fc.set(m, time.Second)
	mbSend(t, mb, m)
	fc.advance(time.Second)
	if _, err := mb.Receive(); !errors.Is(err, ErrEmptyMailbox) {
		t.Fatalf("expired message delivered: %v", err)
	}
	dl := mb.DeadLetters()[0]

	if err := mb.Replay("dl-404"); !errors.Is(err, ErrDeadLetterNotFound) {
		t.Errorf("Replay unknown: %v", err)
	}
	mbSend(t, mb, mbMsg(t, "other1", PriorityNormal, SignalNone), mbMsg(t, "other2", PriorityNormal, SignalNone))
	if err := mb.Replay(dl.ID); !errors.Is(err, ErrMailboxFull) {
		t.Errorf("Replay into a full mailbox: %v", err)
	}
	mbDrain(t, mb)
	dup := mbMsg(t, "m", PriorityNormal, SignalNone)
	mbSend(t, mb, dup)
	if err := mb.Replay(dl.ID); !errors.Is(err, ErrDuplicateMessage) {
		t.Errorf("Replay of a queued id: %v", err)
	}
	mbDrain(t, mb)

	m.attempts.Store(3)
	if err := mb.Replay(dl.ID); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if len(mb.DeadLetters()) != 0 {
		t.Error("replayed dead letter still listed")
	}
	if d, _ := m.Deadline(); d.Sub(epoch) != time.Duration(fc.at(time.Second)) {
		t.Errorf("TTL not renewed: deadline %v", d.Sub(epoch))
	}
	got, err := mb.Receive()
	if err != nil || got != m || got.Attempts() != 1 {
		t.Fatalf("Receive after replay: %v %v (attempts %d)", got, err, m.Attempts())
	}

	// Discard.
	fc.set(m, time.Second)
	mbSend(t, mb, m)
	fc.advance(time.Second)
	mb.SweepExpired()
	dl = mb.DeadLetters()[0]
	if err := mb.Discard(dl.ID); err != nil {
		t.Fatal(err)
	}
	if err := mb.Discard(dl.ID); !errors.Is(err, ErrDeadLetterNotFound) {
		t.Errorf("second Discard: %v", err)
	}
	mb.Close()
	mb.DeadLetter(m, "")
	if err := mb.Replay(mb.DeadLetters()[0].ID); !errors.Is(err, ErrInboxClosed) {
		t.Errorf("Replay into a closed mailbox: %v", err)
	}
	st := mb.Stats()
	if st.DeadLettersReplayed != 1 || st.DeadLettersDiscarded != 1 || st.DeadLettered != 3 || st.MessagesRejected != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestMailboxPoisonLifecycle(t *testing.T) {
	mb, _ := newMbTest(t, MailboxConfig{MaxDeliveryAttempts: 2})
	ctx := context.Background()
	m := mbMsg(t, "bad", PriorityNormal, SignalNone)
	mbSend(t, mb, m)
	for attempt := 1; attempt <= 2; attempt++ {
		got, err := mb.Fetch(ctx)
		if err != nil || got != m || m.Attempts() != attempt {
			t.Fatalf("Fetch %d: %v %v attempts %d", attempt, got, err, m.Attempts())
		}
		if err := mb.Nack(m.ID(), "handler failed"); err != nil {
			t.Fatal(err)
		}
	}
	if mb.Len() != 0 || mb.InFlight() != 0 {
		t.Fatalf("poison message still held: len %d inflight %d", mb.Len(), mb.InFlight())
	}
	dls := mb.DeadLetters()
	if len(dls) != 1 || !dls[0].Poison || dls[0].Reason != ReasonMaxAttempts || dls[0].Detail != "handler failed" {
		t.Fatalf("dead letters %+v", dls)
	}
	if err := mb.Replay(dls[0].ID); !errors.Is(err, ErrPoisonMessage) {
		t.Errorf("Replay of poison: %v", err)
	}
	if len(mb.DeadLetters()) != 1 {
		t.Error("a refused replay removed the dead letter")
	}
	mbSend(t, mb, m) // its ID is free again
	if err := mb.Discard(dls[0].ID); err != nil {
		t.Errorf("Discard of poison: %v", err)
	}
	if st := mb.Stats(); st.PoisonMessages != 1 || st.MessagesNacked != 2 || st.MessagesReceived != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestMailboxFetchAckNack(t *testing.T) {
	mb, fc := newMbTest(t, MailboxConfig{})
	ctx := context.Background()
	a, b, c := mbMsg(t, "a", PriorityNormal, SignalNone), mbMsg(t, "b", PriorityNormal, SignalNone), mbMsg(t, "c", PriorityNormal, SignalNone)
	fc.set(c, time.Second)
	mbSend(t, mb, a, b, c)
	got, err := mb.Fetch(ctx)
	if err != nil || got != a || a.Attempts() != 1 {
		t.Fatalf("Fetch: %v %v", got, err)
	}
	if mb.Len() != 2 || mb.InFlight() != 1 {
		t.Errorf("len %d inflight %d", mb.Len(), mb.InFlight())
	}
	if err := mb.Send(mbMsg(t, "a", PriorityNormal, SignalNone)); !errors.Is(err, ErrDuplicateMessage) {
		t.Errorf("send of an in-flight id: %v", err)
	}
	if err := mb.Nack("a", "retry"); err != nil {
		t.Fatal(err)
	}
	if err := mb.Nack("a", "again"); !errors.Is(err, ErrNotInFlight) {
		t.Errorf("second Nack: %v", err)
	}
	// Requeued at the front of its priority.
	if got, _ := mb.Fetch(ctx); got != a || a.Attempts() != 2 {
		t.Fatalf("after nack got %v attempts %d", got, a.Attempts())
	}
	if err := mb.Ack("a"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "nope"} {
		if err := mb.Ack(id); !errors.Is(err, ErrNotInFlight) {
			t.Errorf("Ack(%s): %v", id, err)
		}
	}
	mbSend(t, mb, mbMsg(t, "a", PriorityNormal, SignalNone)) // acked: ID free
	// A message that expires in flight is dead-lettered on nack.
	mb.Receive() // b
	gotC, _ := mb.Fetch(ctx)
	if gotC != c {
		t.Fatalf("got %v, want c", gotC)
	}
	fc.advance(time.Second)
	if err := mb.Nack("c", "late"); err != nil {
		t.Fatal(err)
	}
	if dls := mb.DeadLetters(); len(dls) != 1 || dls[0].Reason != ReasonExpired {
		t.Errorf("dead letters %+v", dls)
	}
	if st := mb.Stats(); st.MessagesAcked != 1 || st.MessagesNacked != 2 || st.InFlight != 0 || st.TotalSizeBytes != mb.Stats().TotalSizeBytes {
		t.Errorf("stats %+v", st)
	}
}

func TestMailboxReleaseConsumerRequeuesInFetchOrder(t *testing.T) {
	mb, _ := newMbTest(t, MailboxConfig{})
	ctx := context.Background()
	for _, id := range []string{"1", "2", "3", "4", "5"} {
		mbSend(t, mb, mbMsg(t, id, PriorityNormal, SignalNone))
	}
	for _, consumer := range []string{"w1", "w2", "w1", "w2"} {
		if _, err := mb.FetchAs(ctx, consumer); err != nil {
			t.Fatal(err)
		}
	}
	// w1 holds 1 and 3, w2 holds 2 and 4; 5 is queued.
	if n := mb.ReleaseConsumer("w1", "worker crashed"); n != 2 {
		t.Fatalf("ReleaseConsumer = %d", n)
	}
	if n := mb.ReleaseConsumer("nobody", ""); n != 0 {
		t.Errorf("ReleaseConsumer(nobody) = %d", n)
	}
	if mb.InFlight() != 2 {
		t.Errorf("InFlight = %d", mb.InFlight())
	}
	if n := mb.NackAll("shutdown"); n != 2 {
		t.Errorf("NackAll = %d", n)
	}
	if got := mbDrain(t, mb); !mbEqual(got, []string{"2", "4", "1", "3", "5"}) {
		t.Errorf("order after release %v", got)
	}
}

func TestMailboxManualDeadLetter(t *testing.T) {
	mb, _ := newMbTest(t, MailboxConfig{})
	m := mbMsg(t, "m", PriorityNormal, SignalNone)
	mbSend(t, mb, m)
	if _, err := mb.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	id, err := mb.DeadLetter(m, ReasonDeliveryFailed)
	if err != nil || id == "" {
		t.Fatalf("DeadLetter: %q %v", id, err)
	}
	if mb.InFlight() != 0 {
		t.Error("dead-lettered message still in flight")
	}
	id2, _ := mb.DeadLetter(mbMsg(t, "x", PriorityNormal, SignalNone), "")
	dls := mb.DeadLetters()
	if len(dls) != 2 || dls[0].ID != id || dls[0].Reason != ReasonDeliveryFailed || dls[1].ID != id2 || dls[1].Reason != ReasonManual || id == id2 {
		t.Errorf("dead letters %+v", dls)
	}
	if _, err := mb.DeadLetter(nil, ""); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("DeadLetter(nil): %v", err)
	}
	off := NewMailbox(MailboxConfig{DisableDeadLetter: true})
	if _, err := off.DeadLetter(m, ""); !errors.Is(err, ErrDeadLettersDisabled) {
		t.Errorf("DeadLetter with dead letters off: %v", err)
	}
}

func TestMailboxDeadLettersAreBounded(t *testing.T) {
	mb, fc := newMbTest(t, MailboxConfig{DeadLetterCapacity: 2})
	for _, id := range []string{"a", "b", "c"} {
		m := mbMsg(t, id, PriorityNormal, SignalNone)
		fc.set(m, time.Second)
		mbSend(t, mb, m)
	}
	fc.advance(time.Second)
	mb.SweepExpired()
	dls := mb.DeadLetters()
	if len(dls) != 2 || dls[0].Message.ID() != "b" || dls[1].Message.ID() != "c" {
		t.Fatalf("dead letters %+v", dls)
	}
	if st := mb.Stats(); st.MessagesDropped != 1 || st.MessagesExpired != 3 || st.DeadLettered != 3 {
		t.Errorf("stats %+v", st)
	}

	off, fc := newMbTest(t, MailboxConfig{DisableDeadLetter: true})
	m := mbMsg(t, "a", PriorityNormal, SignalNone)
	fc.set(m, time.Second)
	mbSend(t, off, m)
	fc.advance(time.Second)
	if _, err := off.Receive(); !errors.Is(err, ErrEmptyMailbox) {
		t.Errorf("Receive: %v", err)
	}
	if st := off.Stats(); st.MessagesDropped != 1 || st.MessagesExpired != 1 || st.DeadLetters != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestMailboxReceiveContextBlocksUntilSendCancelOrClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	mb, _ := newMbTest(t, MailboxConfig{})

	got := make(chan *Message)
	go func() {
		m, err := mb.ReceiveContext(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	mbWaitFor(t, "a mbParked receiver", func() bool { r, _ := mbParked(mb); return r == 1 })
	m := mbMsg(t, "m", PriorityNormal, SignalNone)
	mbSend(t, mb, m)
	if <-got != m {
		t.Error("wrong message")
	}

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { _, err := mb.Fetch(ctx); errc <- err }()
	mbWaitFor(t, "a mbParked fetcher", func() bool { r, _ := mbParked(mb); return r == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled receive: %v", err)
	}
	if r, _ := mbParked(mb); r != 0 {
		t.Errorf("%d waiters left after cancel", r)
	}
	// An already cancelled context returns at once when empty...
	if _, err := mb.ReceiveContext(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("receive with a done ctx: %v", err)
	}
	// ...but still delivers a queued message.
	mbSend(t, mb, mbMsg(t, "n", PriorityNormal, SignalNone))
	if m, err := mb.ReceiveContext(ctx); err != nil || m.ID() != "n" {
		t.Errorf("receive with a done ctx and a message: %v %v", m, err)
	}
}

func TestMailboxCloseWakesEveryWaiterAndDrains(t *testing.T) {
	defer goleak.VerifyNone(t)
	mb, _ := newMbTest(t, MailboxConfig{Capacity: 1})
	const receivers = 20
	var wg sync.WaitGroup
	errs := make(chan error, receivers+1)
	for range receivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := mb.ReceiveContext(context.Background())
			errs <- err
		}()
	}
	mbWaitFor(t, "mbParked receivers", func() bool { r, _ := mbParked(mb); return r == receivers })
	mb.Close()
	mb.Close() // idempotent
	wg.Wait()
	for range receivers {
		if err := <-errs; !errors.Is(err, ErrInboxClosed) {
			t.Errorf("receiver woke with %v", err)
		}
	}

	// Queued messages survive Close; a blocked sender wakes with ErrInboxClosed.
	mb2, _ := newMbTest(t, MailboxConfig{Capacity: 1})
	mbSend(t, mb2, mbMsg(t, "kept", PriorityNormal, SignalNone))
	go func() { errs <- mb2.SendContext(context.Background(), mbMsg(t, "blocked", PriorityNormal, SignalNone)) }()
	mbWaitFor(t, "a mbParked sender", func() bool { _, s := mbParked(mb2); return s == 1 })
	mb2.Close()
	if err := <-errs; !errors.Is(err, ErrInboxClosed) {
		t.Errorf("blocked sender woke with %v", err)
	}
	if !mb2.Closed() {
		t.Error("Closed() = false")
	}
	if err := mb2.Send(mbMsg(t, "late", PriorityNormal, SignalShutdown)); !errors.Is(err, ErrInboxClosed) {
		t.Errorf("send after close: %v", err)
	}
	if m, err := mb2.ReceiveContext(context.Background()); err != nil || m.ID() != "kept" {
		t.Errorf("drain after close: %v %v", m, err)
	}
	if _, err := mb2.Receive(); !errors.Is(err, ErrInboxClosed) {
		t.Errorf("receive after drain: %v", err)
	}
}

func TestMailboxSendContextWaitsForRoom(t *testing.T) {
	defer goleak.VerifyNone(t)
	mb, fc := newMbTest(t, MailboxConfig{Capacity: 1})
	mbSend(t, mb, mbMsg(t, "first", PriorityNormal, SignalNone))
	errc := make(chan error)
	go func() { errc <- mb.SendContext(context.Background(), mbMsg(t, "second", PriorityNormal, SignalNone)) }()
	mbWaitFor(t, "a mbParked sender", func() bool { _, s := mbParked(mb); return s == 1 })
	if got := mbDrain(t, mb); len(got) == 0 || got[0] != "first" {
		t.Errorf("received %v", got)
	}
	if err := <-errc; err != nil {
		t.Fatalf("SendContext: %v", err)
	}
	if m, _ := mb.Receive(); m == nil || m.ID() != "second" {
		// mbDrain may already have taken it
		if mb.Stats().MessagesReceived != 2 {
			t.Errorf("second message lost: %+v", mb.Stats())
		}
	}

	mbSend(t, mb, mbMsg(t, "third", PriorityNormal, SignalNone))
	ctx, cancel := context.WithCancel(context.Background())
	go func() { errc <- mb.SendContext(ctx, mbMsg(t, "fourth", PriorityNormal, SignalNone)) }()
	mbWaitFor(t, "a mbParked sender", func() bool { _, s := mbParked(mb); return s == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled SendContext: %v", err)
	}

	// A message that expires while its sender waits is refused.
	m := mbMsg(t, "ttl", PriorityNormal, SignalNone)
	fc.set(m, time.Second)
	go func() { errc <- mb.SendContext(context.Background(), m) }()
	mbWaitFor(t, "a mbParked sender", func() bool { _, s := mbParked(mb); return s == 1 })
	fc.advance(time.Second)
	mb.Receive()
	if err := <-errc; !errors.Is(err, ErrMessageExpired) {
		t.Errorf("SendContext of a message that expired while waiting: %v", err)
	}
}

func TestMailboxConcurrentProducersAndConsumers(t *testing.T) {
	defer goleak.VerifyNone(t)
	mb := NewMailbox(MailboxConfig{Capacity: 64, DefaultTTL: time.Minute})
	const producers, consumers, per = 4, 3, 500
	var seen sync.Map
	var received atomic.Int64
	var wg, cwg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				m := Msg(fmt.Sprintf("%d/%d", p, i)).Priority(Priority(i%numPriorities - 2)).MustBuild()
				if err := mb.SendContext(context.Background(), m); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for c := range consumers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				var m *Message
				var err error
				if c == 0 {
					if m, err = mb.Fetch(context.Background()); err == nil {
						err = mb.Ack(m.ID())
					}
				} else {
					m, err = mb.ReceiveContext(context.Background())
				}
				if errors.Is(err, ErrInboxClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				if _, dup := seen.LoadOrStore(m.PayloadString(), true); dup {
					t.Errorf("delivered twice: %s", m.PayloadString())
				}
				received.Add(1)
			}
		}()
	}
	wg.Wait()
	mb.Close()
	cwg.Wait()
	if received.Load() != producers*per {
		t.Errorf("received %d, want %d", received.Load(), producers*per)
	}
	if st := mb.Stats(); st.MessagesSent != producers*per || st.MessagesReceived != producers*per || st.Len != 0 || st.InFlight != 0 || st.TotalSizeBytes != 0 || st.PeakUsage > 64 {
		t.Errorf("stats %+v", st)
	}
}

// TestMailboxHandOffRacesWithDeadlines drives the hand-off to a parked
// receiver (which returns without taking the lock again) against receivers
// whose contexts keep expiring, so that a wake-up often races with the
// deadline: every message must still be delivered exactly once, and the
// mailbox must end consistent (a receiver that returned holding or
// without the lock by mistake would deadlock or trip the race detector).
func TestMailboxHandOffRacesWithDeadlines(t *testing.T) {
	defer goleak.VerifyNone(t)
	mb := NewMailbox(MailboxConfig{Capacity: 16})
	const consumers, total = 3, 3000
	var received atomic.Int64
	var seen sync.Map
	var cwg sync.WaitGroup
	for range consumers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Microsecond)
				m, err := mb.ReceiveContext(ctx)
				cancel()
				switch {
				case errors.Is(err, context.DeadlineExceeded):
					continue
				case errors.Is(err, ErrInboxClosed):
					return
				case err != nil:
					t.Error(err)
					return
				}
				if _, dup := seen.LoadOrStore(m.PayloadString(), true); dup {
					t.Errorf("delivered twice: %s", m.PayloadString())
				}
				received.Add(1)
			}
		}()
	}
	for i := range total {
		if err := mb.SendContext(context.Background(), Msg(fmt.Sprint(i)).MustBuild()); err != nil {
			t.Fatal(err)
		}
		if i%8 == 0 {
			runtime.Gosched() // let receivers park, so that sends hand off
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for received.Load() < total && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	mb.Close()
	cwg.Wait()
	if got := received.Load(); got != total {
		t.Errorf("received %d, want %d", got, total)
	}
	if st := mb.Stats(); st.MessagesReceived != total || st.Len != 0 || st.TotalSizeBytes != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestMailboxStatsTotalSize(t *testing.T) {
	mb, _ := newMbTest(t, MailboxConfig{})
	a, b := mbMsg(t, "a", PriorityNormal, SignalNone), mbMsg(t, "b", PriorityNormal, SignalNone)
	mbSend(t, mb, a, b)
	if st := mb.Stats(); st.TotalSizeBytes != a.Size()+b.Size() || st.Capacity != mb.Cap() {
		t.Errorf("stats %+v", st)
	}
	mb.Fetch(context.Background())
	if st := mb.Stats(); st.TotalSizeBytes != a.Size()+b.Size() {
		t.Errorf("in-flight bytes not counted: %+v", st)
	}
	mb.Ack("a")
	mb.Receive()
	if st := mb.Stats(); st.TotalSizeBytes != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestIdsetMatchesAMap(t *testing.T) {
	var s idset
	model := map[string]*Message{}
	var pool []*Message
	for i := range 300 {
		m, _ := NewMessage(fmt.Sprintf("id-%d", i), "", nil, SignalNone, PriorityNormal, 0)
		m.hash &= 0xff // force long probe runs and wrap-around
		pool = append(pool, m)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		m := pool[r.IntN(len(pool))]
		if r.IntN(2) == 0 {
			_, had := model[m.id]
			if s.insert(m) == had {
				t.Fatalf("insert(%s) disagrees with the model", m.id)
			}
			model[m.id] = m
		} else {
			s.remove(m)
			delete(model, m.id)
		}
		if s.n != len(model) {
			t.Fatalf("size %d, model %d", s.n, len(model))
		}
	}
	for _, m := range pool {
		if _, had := model[m.id]; s.contains(m) != had {
			t.Fatalf("contains(%s) = %v", m.id, !had)
		}
	}
}

func TestMessageHeldByTwoMailboxes(t *testing.T) {
	a, b, c := NewMailbox(MailboxConfig{}), NewMailbox(MailboxConfig{}), NewMailbox(MailboxConfig{})
	m := Msg("broadcast").MustBuild()
	mbSend(t, a, m)
	mbSend(t, b, m)
	mbSend(t, c, m) // more mailboxes than owner slots
	for _, mb := range []*Mailbox{a, b, c} {
		if err := mb.Send(m); !errors.Is(err, ErrDuplicateMessage) {
			t.Errorf("second send to the same mailbox: %v", err)
		}
	}
	// Forwarding while in flight (at-least-once relay) works.
	got, _ := a.Fetch(context.Background())
	d := NewMailbox(MailboxConfig{})
	c.Receive()
	mbSend(t, d, got)
	for _, mb := range []*Mailbox{a, b, c, d} {
		mbDrain(t, mb)
	}
	if err := a.Ack(m.ID()); err != nil {
		t.Fatal(err)
	}
	for _, mb := range []*Mailbox{a, b, c, d} {
		mbSend(t, mb, m)
	}
}

func TestMailboxRoomFreedByExpiryAdmitsEveryParkedSender(t *testing.T) {
	defer goleak.VerifyNone(t)
	mb, fc := newMbTest(t, MailboxConfig{Capacity: 2})
	for _, id := range []string{"old1", "old2"} {
		m := mbMsg(t, id, PriorityNormal, SignalNone)
		fc.set(m, time.Second)
		mbSend(t, mb, m)
	}
	errc := make(chan error, 2)
	for _, id := range []string{"new1", "new2"} {
		m := mbMsg(t, id, PriorityNormal, SignalNone)
		go func() { errc <- mb.SendContext(context.Background(), m) }()
	}
	mbWaitFor(t, "two parked senders", func() bool { _, s := mbParked(mb); return s == 2 })
	fc.advance(time.Second)
	// The receive drops both expired messages, which makes room for both
	// parked senders.
	m, err := mb.ReceiveContext(context.Background())
	if err != nil || (m.ID() != "new1" && m.ID() != "new2") {
		t.Fatalf("Receive: %v %v", m, err)
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Errorf("parked sender: %v", err)
		}
	}
	if mb.Len() != 1 || mb.Stats().MessagesExpired != 2 {
		t.Errorf("len %d stats %+v", mb.Len(), mb.Stats())
	}
}

func TestMailboxNackWakesAParkedReceiver(t *testing.T) {
	defer goleak.VerifyNone(t)
	mb, _ := newMbTest(t, MailboxConfig{})
	m := mbMsg(t, "job", PriorityNormal, SignalNone)
	mbSend(t, mb, m)
	if _, err := mb.FetchAs(context.Background(), "w1"); err != nil {
		t.Fatal(err)
	}
	got := make(chan *Message)
	go func() {
		m, err := mb.FetchAs(context.Background(), "w2")
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	mbWaitFor(t, "a parked fetcher", func() bool { r, _ := mbParked(mb); return r == 1 })
	if n := mb.ReleaseConsumer("w1", "crashed"); n != 1 {
		t.Fatalf("ReleaseConsumer = %d", n)
	}
	if g := <-got; g != m || m.Attempts() != 2 {
		t.Fatalf("redelivered %v, attempts %d", g, m.Attempts())
	}
	go func() {
		m, err := mb.ReceiveContext(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	mbWaitFor(t, "a parked receiver", func() bool { r, _ := mbParked(mb); return r == 1 })
	if err := mb.Nack("job", "again"); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != m {
		t.Fatalf("got %v", g)
	}
}

// TestMessageOwnershipMovesBetweenMailboxes covers the order cases of the
// duplicate check for a generated-ID message held by two mailboxes: the
// first holds it through the owner bits of its attempts word, the second through its ID set, and
// neither accepts it twice however the other releases it.
func TestMessageOwnershipMovesBetweenMailboxes(t *testing.T) {
	a, b := NewMailbox(MailboxConfig{}), NewMailbox(MailboxConfig{})
	m := Msg("shared").MustBuild()
	mbSend(t, a, m) // a owns m
	mbSend(t, b, m) // b tracks m in its ID set
	if got, err := a.Receive(); err != nil || got != m {
		t.Fatalf("a.Receive: %v %v", got, err)
	}
	// a released its ownership; b still holds m.
	if err := b.Send(m); !errors.Is(err, ErrDuplicateMessage) {
		t.Fatalf("second send to b after a released m: %v", err)
	}
	mbSend(t, a, m) // a may hold it again
	if err := a.Send(m); !errors.Is(err, ErrDuplicateMessage) {
		t.Fatalf("second send to a: %v", err)
	}
	// An explicit message carrying m's ID collides in both mailboxes.
	for name, mb := range map[string]*Mailbox{"a": a, "b": b} {
		if err := mb.Send(mbMsg(t, m.ID(), PriorityNormal, SignalNone)); !errors.Is(err, ErrDuplicateMessage) {
			t.Errorf("explicit copy of m's id to %s: %v", name, err)
		}
	}
	for _, mb := range []*Mailbox{a, b} {
		if got := mbDrain(t, mb); len(got) != 1 || got[0] != m.ID() {
			t.Fatalf("drained %v", got)
		}
	}
	// Released everywhere: both accept it again, and an explicit copy of
	// its ID blocks the generated original.
	mbSend(t, b, m)
	mbSend(t, a, mbMsg(t, m.ID(), PriorityNormal, SignalNone))
	if err := a.Send(m); !errors.Is(err, ErrDuplicateMessage) {
		t.Errorf("generated original after an explicit copy: %v", err)
	}
	if st := a.Stats(); st.Len != 1 || st.MessagesRejected != 3 {
		t.Errorf("a stats %+v", st)
	}
}

// TestMailboxLayout pins the cache-line layout documented on Mailbox, on
// real allocations.
func TestMailboxLayout(t *testing.T) {
	for range 4 {
		mb := NewMailbox(MailboxConfig{})
		for name, p := range map[string]unsafe.Pointer{
			"capacity": unsafe.Pointer(&mb.capacity), "mu": unsafe.Pointer(&mb.mu),
			"sent": unsafe.Pointer(&mb.sent), "received": unsafe.Pointer(&mb.received),
			"bufs": unsafe.Pointer(&mb.bufs),
		} {
			if uintptr(p)%64 != 0 {
				t.Fatalf("mb.%s at %#x is not on a cache line boundary", name, uintptr(p))
			}
		}
		if end := uintptr(unsafe.Pointer(&mb.closed)) + 1; end > uintptr(unsafe.Pointer(&mb.mu))+64 {
			t.Fatalf("the shared hot state ends beyond mu's cache line")
		}
	}
}

// TestGeneratedMessageDuplicateSurvivesRingChanges checks the duplicate check
// of generated-ID messages across what moves queued messages: growth of
// the ring, a sweep compacting it, a fetch and a nack requeueing at the
// front.
func TestGeneratedMessageDuplicateSurvivesRingChanges(t *testing.T) {
	mb, fc := newMbTest(t, MailboxConfig{})
	var keep []*Message
	for i := range 60 { // grows the ring from 16 to 64 slots
		m := Msg(fmt.Sprint(i)).MustBuild()
		if i%3 == 0 {
			fc.set(m, time.Second) // swept below, compacting the ring
		} else {
			keep = append(keep, m)
		}
		mbSend(t, mb, m)
	}
	assertDup := func(stage string) {
		t.Helper()
		for _, m := range keep {
			if err := mb.Send(m); !errors.Is(err, ErrDuplicateMessage) {
				t.Fatalf("%s: resend of queued %s: %v", stage, m.ID(), err)
			}
		}
	}
	assertDup("after growth")
	fc.advance(time.Second)
	if n := mb.SweepExpired(); n != 20 {
		t.Fatalf("SweepExpired = %d, want 20", n)
	}
	assertDup("after sweep")
	got, err := mb.Fetch(context.Background())
	if err != nil || got != keep[0] {
		t.Fatalf("Fetch: %v %v", got, err)
	}
	assertDup("in flight")
	if err := mb.Nack(got.ID(), "again"); err != nil {
		t.Fatal(err)
	}
	assertDup("after nack")
	ids := mbDrain(t, mb)
	if len(ids) != len(keep) || ids[0] != keep[0].ID() {
		t.Fatalf("drained %v", ids)
	}
	// Nothing is held any more: each is accepted exactly once again.
	for _, m := range keep {
		mbSend(t, mb, m)
	}
	assertDup("requeued")
	if n := len(mbDrain(t, mb)); n != len(keep) {
		t.Fatalf("drained %d, want %d", n, len(keep))
	}
}
