package sdk

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestInboxSendRecv(t *testing.T) {
	in := NewInbox(MailboxConfig{})
	defer in.Close()
	if err := in.Send([]byte("message 1")); err != nil {
		t.Fatal(err)
	}
	if err := in.SendString("message 2"); err != nil {
		t.Fatal(err)
	}
	m := Msg("message 3").Priority(PriorityCritical).MustBuild()
	if err := in.SendMessage(m); err != nil {
		t.Fatal(err)
	}
	if in.Len() != 3 {
		t.Errorf("Len = %d", in.Len())
	}
	for _, want := range []string{"message 3", "message 1", "message 2"} {
		got, err := in.Recv()
		if err != nil || got.PayloadString() != want {
			t.Fatalf("Recv = %v %v, want %q", got, err, want)
		}
		if got.Sender() != DefaultSender || got.Attempts() != 1 {
			t.Errorf("sender %q attempts %d", got.Sender(), got.Attempts())
		}
	}
	if st := in.Stats(); st.MessagesSent != 3 || st.MessagesReceived != 3 {
		t.Errorf("stats %+v", st)
	}
	if in.Mailbox() == nil || in.IsClosed() {
		t.Error("Mailbox() nil or closed")
	}
}

func TestInboxRecvTimeout(t *testing.T) {
	defer goleak.VerifyNone(t)
	in := NewInbox(MailboxConfig{})
	start := time.Now()
	m, err := in.RecvTimeout(20 * time.Millisecond)
	if m != nil || err != nil {
		t.Fatalf("timeout returned %v %v, want nil nil", m, err)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Error("returned before the timeout")
	}
	if m, err := in.RecvTimeout(0); m != nil || err != nil {
		t.Errorf("poll: %v %v", m, err)
	}
	in.SendString("ready")
	if m, err := in.RecvTimeout(0); err != nil || m.PayloadString() != "ready" {
		t.Errorf("poll with a message: %v %v", m, err)
	}
	got := make(chan *Message)
	go func() {
		m, err := in.RecvTimeout(10 * time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	mbWaitFor(t, "a parked receiver", func() bool { r, _ := mbParked(in.Mailbox()); return r == 1 })
	in.SendString("late")
	if m := <-got; m == nil || m.PayloadString() != "late" {
		t.Errorf("RecvTimeout = %v", m)
	}
	in.Close()
	if _, err := in.RecvTimeout(time.Second); !errors.Is(err, ErrInboxClosed) {
		t.Errorf("RecvTimeout on closed: %v", err)
	}
}

func TestInboxRecvContext(t *testing.T) {
	defer goleak.VerifyNone(t)
	in := NewInbox(MailboxConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := in.RecvContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("RecvContext: %v", err)
	}
	in.SendString("x")
	if m, err := in.RecvContext(context.Background()); err != nil || m.PayloadString() != "x" {
		t.Errorf("RecvContext: %v %v", m, err)
	}
}

func TestInboxCloseWakesAllReceiversAndKeepsQueuedMessages(t *testing.T) {
	defer goleak.VerifyNone(t)
	in := NewInbox(MailboxConfig{})
	const waiters = 30
	var wg sync.WaitGroup
	errs := make(chan error, waiters)
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			switch i % 3 {
			case 0:
				_, err = in.Recv()
			case 1:
				_, err = in.RecvTimeout(time.Minute)
			default:
				_, err = in.RecvContext(context.Background())
			}
			errs <- err
		}()
	}
	mbWaitFor(t, "parked receivers", func() bool { r, _ := mbParked(in.Mailbox()); return r == waiters })
	closed := make(chan struct{})
	go func() { in.Close(); close(closed) }()
	in.Close() // concurrently, twice
	<-closed
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrInboxClosed) {
			t.Errorf("receiver woke with %v", err)
		}
	}
	if !in.IsClosed() {
		t.Error("IsClosed = false")
	}
	if err := in.SendString("after"); !errors.Is(err, ErrInboxClosed) {
		t.Errorf("send after close: %v", err)
	}

	in2 := NewInbox(MailboxConfig{})
	in2.SendString("a")
	in2.SendString("b")
	in2.Close()
	for _, want := range []string{"a", "b"} {
		if m, err := in2.Recv(); err != nil || m.PayloadString() != want {
			t.Errorf("drain: %v %v", m, err)
		}
	}
	if _, err := in2.Recv(); !errors.Is(err, ErrInboxClosed) {
		t.Errorf("after drain: %v", err)
	}
}

func TestInboxSendErrors(t *testing.T) {
	in := NewInbox(MailboxConfig{Capacity: 1, MaxMessageSize: 64})
	if err := in.SendString("a"); err != nil {
		t.Fatal(err)
	}
	if err := in.SendString("b"); !errors.Is(err, ErrMailboxFull) {
		t.Errorf("full: %v", err)
	}
	in.Recv()
	if err := in.Send(make([]byte, 100)); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("too large: %v", err)
	}
	if err := in.SendMessage(nil); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("nil: %v", err)
	}
}
