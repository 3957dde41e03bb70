package sdk

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzMessageEnvelope checks that a message survives its conversion to the
// wire form and back (what a worker's Send and the host's delivery do):
// every field the author set comes back, and a malformed message is refused
// with ErrInvalidMessage, never a panic.
func FuzzMessageEnvelope(f *testing.F) {
	f.Add("m-1", "client", []byte("hello"), uint8(SignalHealthCheck), int8(PriorityHigh), int64(5*time.Second), "corr", "client")
	f.Add("x", "", []byte{}, uint8(0), int8(0), int64(0), "", "")
	f.Add("", "s", []byte("p"), uint8(99), int8(7), int64(-5), "c", "r")
	f.Fuzz(func(t *testing.T, id, sender string, payload []byte, sig uint8, prio int8, ttl int64, corr, replyTo string) {
		m, err := NewMessage(id, sender, payload, Signal(sig), Priority(prio), time.Duration(ttl))
		if err != nil {
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("NewMessage error %v does not wrap ErrInvalidMessage", err)
			}
			return
		}
		if corr != "" {
			m.SetCorrelationID(corr)
		}
		if replyTo != "" {
			m.SetReplyTo(replyTo)
		}
		env := EnvelopeFromMessage(m, "worker_0")
		back, err := MessageFromEnvelope(&env)
		if err != nil {
			t.Fatalf("MessageFromEnvelope of a valid message: %v", err)
		}
		wantSender := m.Sender()
		if wantSender == DefaultSender || wantSender == "" {
			wantSender = "worker_0" // an anonymous message is sent as its worker
		}
		if back.ID() != m.ID() || back.Sender() != wantSender || !bytes.Equal(back.Payload(), m.Payload()) ||
			back.Signal() != m.Signal() || back.Priority() != m.Priority() ||
			back.CorrelationID() != m.CorrelationID() || back.ReplyTo() != m.ReplyTo() {
			t.Fatalf("round trip changed the message:\n in  %v\n out %v", m, back)
		}
		// The TTL travels as the time left: never longer than the original.
		if m.TTL() == 0 && back.TTL() != 0 || m.TTL() > 0 && (back.TTL() <= 0 || back.TTL() > m.TTL()) {
			t.Fatalf("TTL %v came back as %v", m.TTL(), back.TTL())
		}
	})
}
