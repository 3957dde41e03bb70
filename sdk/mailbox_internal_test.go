package sdk

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMsgStateKeepsOwnerAndAttemptsApart drives the one word that holds a
// message's delivery count and owner through every operation the mailbox
// uses, wrap-arounds of the count included: neither half ever leaks into
// the other.
func TestMsgStateKeepsOwnerAndAttemptsApart(t *testing.T) {
	const num = math.MaxUint32 // the owner number with every bit set
	tests := map[string]struct {
		start     int32
		owner     uint32 // owner before op, 0 for none
		op        func(s *msgState)
		wantCount int32
		wantOwner uint32 // after op, 0 for none
	}{
		"claim when free": {
			start: 7, op: func(s *msgState) {}, wantCount: 7,
		},
		"claim when owned": {
			start: 7, owner: 3, op: func(s *msgState) {}, wantCount: 7, wantOwner: 3,
		},
		"delivered releasing the owner": {
			start: 7, owner: num, op: func(s *msgState) { s.delivered(num) }, wantCount: 8,
		},
		"delivered keeping the owner": {
			start: 7, owner: num, op: func(s *msgState) { s.delivered(0) }, wantCount: 8, wantOwner: num,
		},
		"count wraps past MaxInt32 like an int32": {
			start: math.MaxInt32, owner: num, op: func(s *msgState) { s.delivered(0) }, wantCount: math.MinInt32, wantOwner: num,
		},
		"count wraps past -1 without touching the owner": {
			start: -1, owner: num, op: func(s *msgState) { s.delivered(num) }, wantCount: 0,
		},
		"undeliver from zero": {
			start: 0, owner: num, op: func(s *msgState) { s.undeliver() }, wantCount: -1, wantOwner: num,
		},
		"store keeps the owner": {
			start: 5, owner: num, op: func(s *msgState) { s.Store(-2) }, wantCount: -2, wantOwner: num,
		},
		"release": {
			start: 5, owner: num, op: func(s *msgState) { s.release(num) }, wantCount: 5,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var s msgState
			s.Store(tc.start)
			if tc.owner != 0 && !s.claim(tc.owner) {
				t.Fatal("claim of a free word failed")
			}
			tc.op(&s)
			if got := s.owner(); got != tc.wantOwner {
				t.Errorf("owner %d, want %d", got, tc.wantOwner)
			}
			// A claim succeeds exactly when there is no owner, and then
			// changes nothing but the owner.
			if claimed := s.claim(num - 1); claimed != (tc.wantOwner == 0) {
				t.Errorf("claim = %v with owner %d", claimed, tc.wantOwner)
			} else if claimed && s.owner() != num-1 {
				t.Errorf("owner %d after claim, want %d", s.owner(), uint32(num-1))
			}
			if got := s.Load(); got != tc.wantCount {
				t.Errorf("count %d, want %d", got, tc.wantCount)
			}
		})
	}
}

// TestMailboxOwnerBitsWithoutTheMessage covers owner bits that name the
// mailbox while it does not hold the message (another mailbox with the same
// number holds it, or bits left by a bug): a send then is not a
// duplicate, the mailbox holds the message through its ID set, and every
// later duplicate is still caught.
func TestMailboxOwnerBitsWithoutTheMessage(t *testing.T) {
	mb := NewMailbox(MailboxConfig{})
	m := Msg("x").MustBuild()
	if !m.attempts.claim(mb.num) { // as if another mailbox numbered like mb held m
		t.Fatal("claim failed")
	}
	mbSend(t, mb, m)
	if err := mb.Send(m); !errors.Is(err, ErrDuplicateMessage) {
		t.Fatalf("second send: %v", err)
	}
	m.attempts.delivered(mb.num) // that other mailbox lets go of m
	if err := mb.Send(m); !errors.Is(err, ErrDuplicateMessage) {
		t.Fatalf("send after the other mailbox let go: %v", err)
	}
	got, err := mb.Fetch(context.Background())
	if err != nil || got != m || m.Attempts() != 2 {
		t.Fatalf("Fetch: %v %v, attempts %d", got, err, m.Attempts())
	}
	if err := mb.Send(m); !errors.Is(err, ErrDuplicateMessage) {
		t.Fatalf("send while in flight: %v", err)
	}
	if err := mb.Ack(m.ID()); err != nil {
		t.Fatal(err)
	}
	if mb.ids.n != 0 || mb.genShared != 0 || m.attempts.owner() != 0 {
		t.Fatalf("after ack: ids %d genShared %d owner %d", mb.ids.n, mb.genShared, m.attempts.owner())
	}
	mbSend(t, mb, m) // owned again, the fast way
	if m.attempts.owner() != mb.num {
		t.Fatalf("owner %d, want %d", m.attempts.owner(), mb.num)
	}
	if err := mb.Send(m); !errors.Is(err, ErrDuplicateMessage) {
		t.Fatalf("duplicate of an owned message: %v", err)
	}
}

// TestMailboxesSharingANumber checks that two mailboxes with the same
// number (numbers recur after 2³² mailboxes) still tell their messages
// apart.
func TestMailboxesSharingANumber(t *testing.T) {
	a, b := NewMailbox(MailboxConfig{}), NewMailbox(MailboxConfig{})
	b.num = a.num
	m := Msg("shared").MustBuild()
	mbSend(t, a, m)
	mbSend(t, b, m) // the owner bits name b's number too: b looks, and holds m by ID
	for name, mb := range map[string]*Mailbox{"a": a, "b": b} {
		if err := mb.Send(m); !errors.Is(err, ErrDuplicateMessage) {
			t.Errorf("second send to %s: %v", name, err)
		}
	}
	if got := mbDrain(t, b); len(got) != 1 {
		t.Fatalf("b drained %v", got)
	}
	if err := a.Send(m); !errors.Is(err, ErrDuplicateMessage) {
		t.Fatalf("a lost m when b released it: %v", err)
	}
	mbSend(t, b, m)
	for _, mb := range []*Mailbox{a, b} {
		if got := mbDrain(t, mb); len(got) != 1 {
			t.Fatalf("drained %v", got)
		}
	}
	if m.attempts.owner() != 0 || m.Attempts() != 3 {
		t.Fatalf("owner %d attempts %d", m.attempts.owner(), m.Attempts())
	}
}

// TestMailboxReceiveJudgesTheMessagesDeadline checks that a plain receive
// judges expiry by the message's deadline at delivery time, also when it
// changed while the message was queued (a broadcast message replayed by
// another mailbox renews the deadline they share).
func TestMailboxReceiveJudgesTheMessagesDeadline(t *testing.T) {
	mb, fc := newMbTest(t, MailboxConfig{})
	short, long := Msg("short").MustBuild(), Msg("long").MustBuild()
	mbSend(t, mb, short, long)
	fc.set(short, time.Second) // shortened after the send
	fc.set(long, time.Minute)
	fc.advance(time.Second)
	got, err := mb.Receive()
	if err != nil || got != long {
		t.Fatalf("Receive: %v %v", got, err)
	}
	if _, err := mb.Receive(); !errors.Is(err, ErrEmptyMailbox) {
		t.Fatalf("second Receive: %v", err)
	}
	st := mb.Stats()
	if st.MessagesReceived != 1 || st.MessagesExpired != 1 || st.TotalSizeBytes != 0 || st.Len != 0 {
		t.Errorf("stats %+v", st)
	}
	if short.Attempts() != 0 || long.Attempts() != 1 || short.attempts.owner() != 0 || long.attempts.owner() != 0 {
		t.Errorf("attempts %d/%d owners %d/%d", short.Attempts(), long.Attempts(), short.attempts.owner(), long.attempts.owner())
	}
	if dls := mb.DeadLetters(); len(dls) != 1 || dls[0].Message != short || dls[0].Reason != ReasonExpired {
		t.Fatalf("dead letters %+v", dls)
	}
}

// TestMailboxForwardingUnderLoad has consumers send every message they
// receive straight back, while another goroutine keeps re-sending the same
// messages (which succeeds only when it catches one between a receive and
// its re-send; the consumer's re-send is then the duplicate): no message is
// ever queued twice, none is lost, and none stays owned.
func TestMailboxForwardingUnderLoad(t *testing.T) {
	defer goleak.VerifyNone(t)
	const msgs, rounds = 32, 2000
	mb := NewMailbox(MailboxConfig{Capacity: 2 * msgs})
	set := make([]*Message, msgs)
	for i := range set {
		set[i] = Msg("m").Priority(Priority(i%numPriorities - 2)).MustBuild()
		mbSend(t, mb, set[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				m, err := mb.ReceiveContext(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if err := mb.Send(m); err != nil && !errors.Is(err, ErrDuplicateMessage) {
					t.Errorf("forwarding %s: %v", m.ID(), err)
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	resent := make(chan int)
	go func() {
		n := 0
		for i := 0; ; i++ {
			select {
			case <-stop:
				resent <- n
				return
			default:
			}
			switch err := mb.Send(set[i%msgs]); {
			case err == nil:
				n++ // taken between a receive and its re-send
			case !errors.Is(err, ErrDuplicateMessage):
				t.Errorf("re-send: %v", err)
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-resent
	seen := map[string]int{}
	for _, id := range mbDrain(t, mb) {
		if seen[id]++; seen[id] > 1 {
			t.Fatalf("message %s was queued twice", id)
		}
	}
	if len(seen) != msgs {
		t.Fatalf("%d messages left, want %d", len(seen), msgs)
	}
	if st := mb.Stats(); st.MessagesReceived != st.MessagesSent || st.Len != 0 {
		t.Errorf("stats %+v", st)
	}
	for _, m := range set {
		if m.attempts.owner() != 0 {
			t.Errorf("message %s still owned by %d", m.ID(), m.attempts.owner())
		}
	}
}

// TestReceiveDeadLettersMessagesThatExpiredInTheQueue drives the receive
// paths that check a popped message's deadline after unlocking
// (finishReceive): an expired message ahead of a live one is dead-lettered,
// not delivered, with its delivery taken back and mb's claim released, and
// the receive goes on to the live one; the counters agree.
func TestReceiveDeadLettersMessagesThatExpiredInTheQueue(t *testing.T) {
	receives := map[string]func(mb *Mailbox) (*Message, error){
		"Receive":        func(mb *Mailbox) (*Message, error) { return mb.Receive() },
		"ReceiveContext": func(mb *Mailbox) (*Message, error) { return mb.ReceiveContext(context.Background()) },
	}
	build := map[string]func(t *testing.T, id string) *Message{
		"generated id": func(t *testing.T, _ string) *Message {
			m, err := Msg("payload").Build()
			if err != nil {
				t.Fatal(err)
			}
			return m
		},
		"explicit id": func(t *testing.T, id string) *Message { return mbMsg(t, id, PriorityNormal, SignalNone) },
	}
	for rname, receive := range receives {
		for bname, newMsg := range build {
			t.Run(rname+"/"+bname, func(t *testing.T) {
				mb, fc := newMbTest(t, MailboxConfig{})
				stale, live := newMsg(t, "stale"), newMsg(t, "live")
				fc.set(stale, time.Second)
				fc.set(live, time.Minute)
				mbSend(t, mb, stale, live)
				fc.advance(time.Second)
				got, err := receive(mb)
				if err != nil || got != live {
					t.Fatalf("received %v, %v; want the live message", got, err)
				}
				if stale.Attempts() != 0 || stale.attempts.owner() != 0 {
					t.Errorf("expired message: attempts %d, owner %d; want 0, 0", stale.Attempts(), stale.attempts.owner())
				}
				if live.Attempts() != 1 || live.attempts.owner() != 0 {
					t.Errorf("live message: attempts %d, owner %d; want 1, 0", live.Attempts(), live.attempts.owner())
				}
				if dls := mb.DeadLetters(); len(dls) != 1 || dls[0].Message != stale || dls[0].Reason != ReasonExpired {
					t.Errorf("dead letters %+v", dls)
				}
				st := mb.Stats()
				if st.MessagesReceived != 1 || st.MessagesExpired != 1 || st.TotalSizeBytes != 0 || st.Len != 0 {
					t.Errorf("stats %+v", st)
				}
				// The claim is gone: the live message may be sent again.
				if err := mb.Send(live); err != nil {
					t.Errorf("resend of the received message: %v", err)
				}
			})
		}
	}
}
