package protocol

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigil-run/vigil/sdk/protocol/internal/pb"
)

// FuzzEnvelopeWire checks that an envelope survives the wire unchanged:
// hand-written type → generated type → protobuf bytes → back. The seeds
// run as a regular test; `go test -fuzz FuzzEnvelopeWire ./sdk/protocol`
// explores further.
func FuzzEnvelopeWire(f *testing.F) {
	f.Add("m-1", "client", []byte("hello"), "corr-1", "client", int32(-2), int32(7), int64(5*time.Second), int64(4*time.Second), int32(1))
	f.Add("", "", []byte{}, "", "", int32(0), int32(0), int64(0), int64(0), int32(0))
	f.Add("\xff\xfe", "ü", bytes.Repeat([]byte{0}, 300), "@host", "x/y", int32(99), int32(-1), int64(-1), int64(1), int32(1<<30))
	f.Fuzz(func(t *testing.T, id, sender string, payload []byte, corr, replyTo string, prio, sig int32, ttl, remaining int64, attempts int32) {
		in := Envelope{ID: id, Sender: sender, Payload: payload, CorrelationID: corr, ReplyTo: replyTo,
			Priority: prio, Signal: sig, TTL: time.Duration(ttl), Remaining: time.Duration(remaining), Attempts: attempts}
		raw, err := proto.Marshal(envToPB(&in))
		if err != nil {
			// Only invalid UTF-8 in a string field may be refused.
			return
		}
		var p pb.Envelope
		if err := proto.Unmarshal(raw, &p); err != nil {
			t.Fatalf("unmarshal of our own bytes: %v", err)
		}
		out := envFromPB(&p)
		if out.ID != in.ID || out.Sender != in.Sender || !bytes.Equal(out.Payload, in.Payload) ||
			out.CorrelationID != in.CorrelationID || out.ReplyTo != in.ReplyTo || out.Priority != in.Priority ||
			out.Signal != in.Signal || out.TTL != in.TTL || out.Remaining != in.Remaining || out.Attempts != in.Attempts {
			t.Fatalf("round trip changed the envelope:\n in  %+v\n out %+v", in, out)
		}
		if out.Size() != in.Size() {
			t.Fatalf("Size %d → %d", in.Size(), out.Size())
		}
	})
}
