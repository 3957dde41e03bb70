package sdk

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

func TestMsgBuilderDefaults(t *testing.T) {
	m, err := Msg("hello").Build()
	if err != nil {
		t.Fatal(err)
	}
	if m.Sender() != DefaultSender || m.Priority() != PriorityNormal || m.TTL() != 0 || m.Signal() != SignalNone {
		t.Errorf("defaults: sender %q priority %v ttl %v signal %v", m.Sender(), m.Priority(), m.TTL(), m.Signal())
	}
	if m.PayloadString() != "hello" || string(m.Payload()) != "hello" {
		t.Errorf("payload %q", m.Payload())
	}
	if _, ok := m.Deadline(); ok || m.IsExpired() {
		t.Error("a message without TTL has a deadline")
	}
	if m.ID() == "" || !isGeneratedForm(m.ID()) {
		t.Errorf("generated id %q", m.ID())
	}
	if m.Attempts() != 0 || m.CorrelationID() != "" || m.ReplyTo() != "" {
		t.Error("fresh message has attempts or correlation")
	}
}

func TestMsgBuilderIsOrderInsensitiveAndReusable(t *testing.T) {
	a := Msg([]byte("req")).From("client").Priority(PriorityHigh).TTL(5 * time.Second).
		Signal(SignalHealthCheck).WithCorrelation("c1").ReplyTo("replies")
	b := Msg([]byte("req")).ReplyTo("replies").WithCorrelation("c1").Signal(SignalHealthCheck).
		TTL(5 * time.Second).Priority(PriorityHigh).From("client")
	ma, err := a.Build()
	if err != nil {
		t.Fatal(err)
	}
	mb, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	ma2 := a.MustBuild()
	for _, m := range []*Message{ma, mb, ma2} {
		if m.Sender() != "client" || m.Priority() != PriorityHigh || m.TTL() != 5*time.Second ||
			m.Signal() != SignalHealthCheck || m.CorrelationID() != "c1" || m.ReplyTo() != "replies" {
			t.Errorf("fields of %v", m)
		}
		if d, ok := m.Deadline(); !ok || time.Until(d) <= 4*time.Second || time.Until(d) > 5*time.Second+ClockResolution {
			t.Errorf("deadline %v, %v", d, ok)
		}
	}
	if ma.ID() == ma2.ID() || ma.ID() == mb.ID() {
		t.Errorf("reused builder gave the same id: %s %s %s", ma.ID(), ma2.ID(), mb.ID())
	}
	fixed := Msg("x").ID("order-1")
	if m1, m2 := fixed.MustBuild(), fixed.MustBuild(); m1.ID() != "order-1" || m2.ID() != "order-1" || m1 == m2 {
		t.Error("explicit ID not kept")
	}
	if fixed.ID("").MustBuild().ID() == "order-1" {
		t.Error("ID(\"\") did not restore generated IDs")
	}
}

func TestMsgBuilderInvalid(t *testing.T) {
	tests := map[string]*Builder{
		"priority": Msg("x").Priority(Priority(9)),
		"signal":   Msg("x").Signal(Signal(200)),
		"ttl":      Msg("x").TTL(-time.Second),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := b.Build(); !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("Build: %v, want ErrInvalidMessage", err)
			}
			defer func() {
				if recover() == nil {
					t.Error("MustBuild did not panic")
				}
			}()
			b.MustBuild()
		})
	}
}

func TestNewMessage(t *testing.T) {
	m, err := NewMessage("msg_id", "sender", []byte("payload"), SignalAlert, PriorityHigh, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID() != "msg_id" || m.Sender() != "sender" || m.Signal() != SignalAlert || m.Priority() != PriorityHigh || m.TTL() != 5*time.Second {
		t.Errorf("fields: %v", m)
	}
	m.SetCorrelationID("correlation_123")
	m.SetReplyTo("response_mailbox")
	if m.CorrelationID() != "correlation_123" || m.ReplyTo() != "response_mailbox" {
		t.Error("setters")
	}
	if want := len("payload") + len("msg_id") + len("sender") + len("correlation_123") + len("response_mailbox"); m.Size() != want {
		t.Errorf("Size = %d, want %d", m.Size(), want)
	}
	if m.IsExpired() {
		t.Error("fresh message expired")
	}
	if !strings.Contains(m.String(), "msg_id") {
		t.Errorf("String() = %q", m.String())
	}
	if m2, _ := NewMessage("x", "", nil, SignalNone, PriorityLow, 0); m2.Sender() != DefaultSender {
		t.Errorf("empty sender became %q", m2.Sender())
	}

	bad := map[string]func() (*Message, error){
		"empty id": func() (*Message, error) { return NewMessage("", "s", nil, SignalNone, PriorityNormal, 0) },
		"priority": func() (*Message, error) { return NewMessage("a", "s", nil, SignalNone, Priority(-3), 0) },
		"signal":   func() (*Message, error) { return NewMessage("a", "s", nil, Signal(99), PriorityNormal, 0) },
		"ttl":      func() (*Message, error) { return NewMessage("a", "s", nil, SignalNone, PriorityNormal, -1) },
	}
	for name, f := range bad {
		if _, err := f(); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: %v, want ErrInvalidMessage", name, err)
		}
	}
}

func TestMessageExpiresOnTheMonotonicClock(t *testing.T) {
	m, err := NewMessage("short", "s", nil, SignalNone, PriorityNormal, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !m.IsExpired() {
		if time.Now().After(deadline) {
			t.Fatal("a 1ms TTL did not expire within 5s")
		}
		time.Sleep(time.Millisecond) // polling with a deadline, not synchronisation
	}
	if d, ok := m.Deadline(); !ok || time.Now().Before(d) {
		t.Errorf("expired before its deadline %v", d)
	}
}

func TestGeneratedIDsAreUniqueAcrossGoroutines(t *testing.T) {
	const goroutines, per = 8, 2000
	ids := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if i%2 == 0 {
					ids[g] = append(ids[g], NewMessageID())
				} else {
					ids[g] = append(ids[g], Msg("x").MustBuild().ID())
				}
			}
		}()
	}
	wg.Wait()
	seen := make(map[string]bool, goroutines*per)
	for _, l := range ids {
		for _, id := range l {
			if seen[id] {
				t.Fatalf("duplicate id %s", id)
			}
			seen[id] = true
		}
	}
}

func TestPackageClockLagsTheMonotonicClockByAtMostItsResolution(t *testing.T) {
	start := monoNow()
	if c := clockNow(); c > monoNow() {
		t.Fatalf("package clock %d ahead of the monotonic clock", c)
	}
	target := start + int64(5*ClockResolution)
	deadline := time.Now().Add(5 * time.Second)
	for clockNow() < target {
		if time.Now().After(deadline) {
			t.Fatal("package clock did not advance within 5s")
		}
		time.Sleep(ClockResolution / 4) // polling with a deadline
	}
	if c, m := clockNow(), monoNow(); c > m {
		t.Errorf("package clock %d ahead of the monotonic clock %d", c, m)
	}
}

// TestMessageLayout pins the layout documented on Message: what a
// mailbox's send and receive touch fits in the first 64 bytes of a
// 192-byte (cache-line aligned) object.
func TestMessageLayout(t *testing.T) {
	var m Message
	if size := unsafe.Sizeof(m); size != 192 {
		t.Errorf("Message is %d bytes, want 192", size)
	}
	if end := unsafe.Offsetof(m.payload) + unsafe.Sizeof(m.payload); end > 64 {
		t.Errorf("hot fields end at byte %d, want ≤ 64", end)
	}
}
