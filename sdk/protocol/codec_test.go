package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-run/vigil/sdk/protocol/internal/pb"
)

// The hand-written frame codec must write the bytes the generated code
// writes and read what the generated code reads.

// encodeByHand runs d through the codec's hand encoder.
func encodeByHand(t *testing.T, d *Down) ([]byte, error) {
	t.Helper()
	bs, err := newCodec().Marshal(&downFrame{d})
	if err != nil {
		return nil, err
	}
	defer bs.Free()
	return bs.Materialize(), nil
}

// decodeByHand runs b through the codec's hand decoder and returns the
// frame with its deliveries collected (copied out of the views).
func decodeByHand(b []byte) (*Down, error) {
	var got []Delivery
	sink := downSink{deliver: func(v *DeliveryView) {
		cp := func(b []byte) string { return string(b) }
		var payload []byte
		if v.Payload != nil {
			payload = bytes.Clone(v.Payload)
		}
		got = append(got, Delivery{Tag: v.Tag, Reply: v.Reply, Msg: Envelope{
			ID: cp(v.ID), Sender: cp(v.Sender), Payload: payload, CorrelationID: cp(v.CorrelationID), ReplyTo: cp(v.ReplyTo),
			Priority: v.Priority, Signal: v.Signal, TTL: v.TTL, Remaining: v.Remaining, Attempts: v.Attempts,
			ReplyVia: cp(v.ReplyVia),
		}})
	}}
	if err := newCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &sink); err != nil {
		return nil, err
	}
	sink.down.Deliveries = got
	return &sink.down, nil
}

// normal makes empty payloads nil, as both decoders may return either.
func normal(d *Down) *Down {
	c := *d
	c.Deliveries = append([]Delivery(nil), d.Deliveries...)
	for i := range c.Deliveries {
		if len(c.Deliveries[i].Msg.Payload) == 0 {
			c.Deliveries[i].Msg.Payload = nil
		}
	}
	if len(c.Deliveries) == 0 {
		c.Deliveries = nil
	}
	return &c
}

func sameDown(t *testing.T, what string, got, want *Down) {
	t.Helper()
	g, w := normal(got), normal(want)
	if !reflect.DeepEqual(g.Deliveries, w.Deliveries) || g.AcksWanted != w.AcksWanted ||
		len(g.Results) != len(w.Results) || len(g.Stats) != len(w.Stats) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, g, w)
	}
	for i := range g.Results {
		if g.Results[i].Seq != w.Results[i].Seq || (g.Results[i].Err == nil) != (w.Results[i].Err == nil) {
			t.Fatalf("%s: result %d: got %+v, want %+v", what, i, g.Results[i], w.Results[i])
		}
	}
	for i := range g.Stats {
		if g.Stats[i].Seq != w.Stats[i].Seq || !bytes.Equal(g.Stats[i].Stats, w.Stats[i].Stats) {
			t.Fatalf("%s: stats %d: got %+v, want %+v", what, i, g.Stats[i], w.Stats[i])
		}
	}
}

func TestFrameCodec(t *testing.T) {
	full := Envelope{ID: "m-1", Sender: "client", Payload: []byte("hello"), CorrelationID: "corr", ReplyTo: "@host",
		Priority: -2, Signal: 7, TTL: 5 * time.Second, Remaining: 4 * time.Second, Attempts: 3, ReplyVia: "/tmp/v1/plugin-dir2/vigil-reply"}
	tests := map[string]*Down{
		"empty":       {},
		"acks wanted": {AcksWanted: true},
		"one full":    {Deliveries: []Delivery{{Tag: 1, Msg: full}}},
		"reply":       {Deliveries: []Delivery{{Reply: true, Msg: Envelope{ID: "r", CorrelationID: "c"}}}},
		"zero fields": {Deliveries: []Delivery{{Msg: Envelope{}}, {Tag: 1 << 40, Msg: Envelope{ID: "x", Priority: 1 << 30, Attempts: -1, Remaining: -1}}}},
		"big payload": {Deliveries: []Delivery{{Tag: 7, Msg: Envelope{ID: "big", Payload: bytes.Repeat([]byte{1}, 200_000)}}}, AcksWanted: true},
		"results and stats": {
			Deliveries: []Delivery{{Tag: 2, Msg: full}},
			Results:    []SendResult{{Seq: 1}, {Seq: 2, Err: errors.New("boom")}},
			Stats:      []StatsResult{{Seq: 3, Stats: []byte(`{"a":1}`)}, {Seq: 4, Err: errors.New("no")}},
			AcksWanted: true,
		},
		"batch": func() *Down {
			d := &Down{}
			for i := range 300 {
				e := full
				e.Priority = int32(i%7 - 3)
				d.Deliveries = append(d.Deliveries, Delivery{Tag: uint64(i + 1), Msg: e})
			}
			return d
		}(),
	}
	for name, d := range tests {
		t.Run(name, func(t *testing.T) {
			want, err := proto.Marshal(downToPB(d))
			if err != nil {
				t.Fatal(err)
			}
			got, err := encodeByHand(t, d)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("hand encoding differs from the generated code's:\n got  %x\n want %x", got, want)
			}
			back, err := decodeByHand(want)
			if err != nil {
				t.Fatal(err)
			}
			var p pb.MailboxDown
			if err := proto.Unmarshal(want, &p); err != nil {
				t.Fatal(err)
			}
			sameDown(t, "hand decoding", back, downFromPB(&p))
			sameDown(t, "round trip", back, d)
		})
	}
}

// TestFrameCodecUnknownFields: fields the decoder does not know (a newer
// host's), or known numbers with another wire type, are skipped as the
// generated code skips them.
func TestFrameCodecUnknownFields(t *testing.T) {
	var dl []byte
	dl = protowire.AppendTag(dl, 1, protowire.VarintType)
	dl = protowire.AppendVarint(dl, 9)
	dl = protowire.AppendTag(dl, 3, protowire.BytesType)
	dl = protowire.AppendString(dl, "id")
	dl = protowire.AppendTag(dl, 99, protowire.BytesType) // unknown
	dl = protowire.AppendString(dl, "future")
	dl = protowire.AppendTag(dl, 4, protowire.VarintType) // sender, wrong type
	dl = protowire.AppendVarint(dl, 5)
	dl = protowire.AppendTag(dl, 50, protowire.Fixed64Type)
	dl = protowire.AppendFixed64(dl, 1)
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, dl)
	b = protowire.AppendTag(b, 77, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 4, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	got, err := decodeByHand(b)
	if err != nil {
		t.Fatal(err)
	}
	var p pb.MailboxDown
	if err := proto.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	sameDown(t, "unknown fields", got, downFromPB(&p))
}

// TestFrameCodecRefuses: what the generated code refuses, the hand codec
// refuses (invalid UTF-8 in a string field, truncated bytes).
func TestFrameCodecRefuses(t *testing.T) {
	bad := &Down{Deliveries: []Delivery{{Tag: 1, Msg: Envelope{ID: "\xff"}}}}
	if _, err := proto.Marshal(downToPB(bad)); err == nil {
		t.Fatal("the generated code encoded invalid UTF-8")
	}
	if _, err := encodeByHand(t, bad); err == nil {
		t.Fatal("the hand encoder encoded invalid UTF-8")
	}
	var dl []byte
	dl = protowire.AppendTag(dl, 4, protowire.BytesType)
	dl = protowire.AppendString(dl, "\xff")
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, dl)
	tests := map[string][]byte{
		"invalid UTF-8": b,
		"truncated":     b[:len(b)-1],
		"bad tag":       {0xff},
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if err := proto.Unmarshal(b, &pb.MailboxDown{}); err == nil {
				t.Fatal("the generated code accepted it")
			}
			if _, err := decodeByHand(b); err == nil {
				t.Fatal("the hand decoder accepted it")
			}
		})
	}
}

// FuzzFrameCodec: any delivery the generated code encodes, the hand
// encoder encodes to the same bytes, and the hand decoder reads back.
func FuzzFrameCodec(f *testing.F) {
	f.Add(uint64(1), false, "m-1", "client", []byte("hello"), "corr-1", "client", int32(-2), int32(7), int64(5*time.Second), int64(4*time.Second), int32(1), true)
	f.Add(uint64(0), true, "", "", []byte{}, "", "", int32(0), int32(0), int64(0), int64(0), int32(0), false)
	f.Add(uint64(1<<63), false, "\xff\xfe", "ü", bytes.Repeat([]byte{0}, 300), "@host", "x/y", int32(99), int32(-1), int64(-1), int64(1), int32(1<<30), false)
	f.Fuzz(func(t *testing.T, tag uint64, reply bool, id, sender string, payload []byte, corr, replyTo string, prio, sig int32, ttl, remaining int64, attempts int32, wanted bool) {
		d := &Down{AcksWanted: wanted, Deliveries: []Delivery{{Tag: tag, Reply: reply, Msg: Envelope{ID: id, Sender: sender, Payload: payload,
			CorrelationID: corr, ReplyTo: replyTo, Priority: prio, Signal: sig, TTL: time.Duration(ttl), Remaining: time.Duration(remaining), Attempts: attempts}}}}
		if !reply {
			d.Deliveries[0].Msg.ReplyVia = sender // the signature stays that of the committed corpus
		}
		want, werr := proto.Marshal(downToPB(d))
		got, gerr := encodeByHand(t, d)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("generated code: %v, hand encoder: %v", werr, gerr)
		}
		if werr != nil {
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("encodings differ:\n got  %x\n want %x", got, want)
		}
		back, err := decodeByHand(want)
		if err != nil {
			t.Fatal(err)
		}
		sameDown(t, "round trip", back, d)
	})
}
