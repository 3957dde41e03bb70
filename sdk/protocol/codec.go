package protocol

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-run/vigil/sdk/protocol/internal/pb"
)

// The plugin side of the mailbox stream decodes the deliveries of a
// MailboxDown frame itself, straight from gRPC's receive buffer, instead of
// through the generated code (which allocates a pb.Delivery, two strings
// and a payload per delivery, then the frame's []Delivery): the worker SDK
// builds each message from the encoded bytes with one allocation. The wire
// is unchanged (standard protobuf, content-subtype "proto"): the codec
// handles every other message, and every frame of an older or newer peer,
// as the generated code does.

// codec is the gRPC codec of both ends of the mailbox stream: the
// standard proto codec, except for the decoding of a [downSink] (plugin)
// and the encoding of a [downFrame] (host).
type codec struct{ proto encoding.CodecV2 }

func newCodec() codec { return codec{proto: encoding.GetCodecV2("proto")} }

// Name is the standard codec's, so the stream's content-subtype (and the
// host's choice of codec) is unchanged.
func (codec) Name() string { return "proto" }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*downFrame); ok {
		return f.marshal()
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	d, ok := v.(*downSink)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return d.decode(buf.ReadOnlyData())
}

// DeliveryView is one delivery of a frame being received, as
// [PluginStream.RecvEach] hands it out. Its byte slices alias gRPC's
// receive buffer: they are valid only during the call that received the
// view and must be copied to be kept. Fields mean what they mean in
// [Delivery] and [Envelope].
type DeliveryView struct {
	Tag           uint64
	Reply         bool
	ID            []byte
	Sender        []byte
	Payload       []byte
	CorrelationID []byte
	ReplyTo       []byte
	Priority      int32
	Signal        int32
	TTL           time.Duration
	Remaining     time.Duration
	Attempts      int32
	ReplyVia      []byte
}

// Size is the delivery's approximate encoded size, as [Envelope.Size].
func (v *DeliveryView) Size() int {
	return len(v.Payload) + len(v.ID) + len(v.Sender) + len(v.CorrelationID) + len(v.ReplyTo) + 48
}

// downSink receives a MailboxDown frame: deliveries go to deliver as they
// are decoded, the rest into down.
type downSink struct {
	deliver func(*DeliveryView)
	down    Down
	view    DeliveryView
}

var errBadFrame = errors.New("vigil: malformed mailbox frame")

// decode parses b as a pb.MailboxDown (unknown fields are skipped).
func (d *downSink) decode(b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errBadFrame, protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: %v", errBadFrame, protowire.ParseError(n))
		}
		switch {
		case num == 1 && typ == protowire.BytesType:
			if err := d.view.decode(v); err != nil {
				return err
			}
			d.deliver(&d.view)
		case num == 2 && typ == protowire.BytesType:
			var r pb.SendResult
			if err := proto.Unmarshal(v, &r); err != nil {
				return err
			}
			d.down.Results = append(d.down.Results, SendResult{Seq: r.GetSeq(), Err: errFromPB(r.GetError())})
		case num == 3 && typ == protowire.BytesType:
			var s pb.StatsResult
			if err := proto.Unmarshal(v, &s); err != nil {
				return err
			}
			d.down.Stats = append(d.down.Stats, StatsResult{Seq: s.GetSeq(), Stats: s.GetStats(), Err: errFromPB(s.GetError())})
		case num == 4 && typ == protowire.VarintType:
			x, _ := protowire.ConsumeVarint(b)
			d.down.AcksWanted = x != 0
		}
		b = b[n:]
	}
	return nil
}

// decode parses b as a pb.Delivery into v, as the generated code would
// (unknown fields skipped, invalid UTF-8 in a string field refused).
func (v *DeliveryView) decode(b []byte) error {
	*v = DeliveryView{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errBadFrame, protowire.ParseError(n))
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("%w: %v", errBadFrame, protowire.ParseError(n))
			}
			b = b[n:]
			switch num {
			case 1:
				v.Tag = x
			case 2:
				v.Reply = x != 0
			case 8:
				v.Priority = int32(x)
			case 9:
				v.Signal = int32(x)
			case 10:
				v.TTL = time.Duration(int64(x))
			case 11:
				v.Remaining = time.Duration(int64(x))
			case 12:
				v.Attempts = int32(x)
			}
		case protowire.BytesType:
			s, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: %v", errBadFrame, protowire.ParseError(n))
			}
			b = b[n:]
			var dst *[]byte
			switch num {
			case 3:
				dst = &v.ID
			case 4:
				dst = &v.Sender
			case 5:
				v.Payload = s
				continue
			case 6:
				dst = &v.CorrelationID
			case 7:
				dst = &v.ReplyTo
			case 13:
				dst = &v.ReplyVia
			default:
				continue
			}
			if !utf8.Valid(s) {
				return fmt.Errorf("%w: invalid UTF-8 in field %d of a delivery", errBadFrame, num)
			}
			*dst = s
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: %v", errBadFrame, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return nil
}

// RecvEach blocks for the next frame from the host, like
// [PluginStream.Recv], but hands its deliveries to deliver one by one as
// they are decoded, in order, from the calling goroutine, instead of
// returning them: the returned frame has no Deliveries. The view passed to
// deliver is valid only during that call (see [DeliveryView]). An error
// (a broken stream, or a malformed frame) ends the stream as Recv's does.
// It counts as a Recv: one receiving goroutine at a time, concurrently
// with Send.
func (p *PluginStream) RecvEach(deliver func(*DeliveryView)) (*Down, error) {
	d := downSink{deliver: deliver}
	if err := p.s.RecvMsg(&d); err != nil {
		return nil, FromStatus(err)
	}
	return &d.down, nil
}

// ---- host side ----

// The host encodes a MailboxDown frame itself too ([HostStream.SendFrame]):
// the same bytes as the generated code, field by field, straight into
// gRPC's send buffer, without building the frame's pb.Delivery structs.

// downFrame is a frame for the codec to encode by hand.
type downFrame struct{ d *Down }

// marshal encodes f, or returns the error the generated code would
// (invalid UTF-8 in a string field).
func (f *downFrame) marshal() (mem.BufferSlice, error) {
	d := f.d
	size := 0
	for i := range d.Deliveries {
		dl := &d.Deliveries[i]
		if err := dl.checkUTF8(); err != nil {
			return nil, err
		}
		size += 1 + protowire.SizeBytes(dl.size())
	}
	var rest []byte // results and stats, rare: through the generated code
	for _, r := range d.Results {
		b, err := proto.Marshal(&pb.SendResult{Seq: r.Seq, Error: errToPB(r.Err)})
		if err != nil {
			return nil, err
		}
		rest = protowire.AppendTag(rest, 2, protowire.BytesType)
		rest = protowire.AppendBytes(rest, b)
	}
	for _, s := range d.Stats {
		b, err := proto.Marshal(&pb.StatsResult{Seq: s.Seq, Stats: s.Stats, Error: errToPB(s.Err)})
		if err != nil {
			return nil, err
		}
		rest = protowire.AppendTag(rest, 3, protowire.BytesType)
		rest = protowire.AppendBytes(rest, b)
	}
	size += len(rest)
	if d.AcksWanted {
		size += 2
	}
	var buf *[]byte
	pool := mem.DefaultBufferPool()
	if mem.IsBelowBufferPoolingThreshold(size) {
		b := make([]byte, 0, size)
		buf = &b
	} else {
		buf = pool.Get(size)
	}
	b := (*buf)[:0]
	for i := range d.Deliveries {
		dl := &d.Deliveries[i]
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(dl.size()))
		b = dl.append(b)
	}
	b = append(b, rest...)
	if d.AcksWanted {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if len(b) != size {
		return nil, fmt.Errorf("vigil: mailbox frame encoded to %d bytes, sized %d", len(b), size)
	}
	if mem.IsBelowBufferPoolingThreshold(size) {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (dl *Delivery) checkUTF8() error {
	e := &dl.Msg
	for _, s := range [...]string{e.ID, e.Sender, e.CorrelationID, e.ReplyTo, e.ReplyVia} {
		if !utf8.ValidString(s) {
			return fmt.Errorf("vigil: message %q: string field contains invalid UTF-8", e.ID)
		}
	}
	return nil
}

func sizeString(s string) int {
	if s == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(s))
}

func sizeVarint(x uint64) int {
	if x == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(x)
}

// size is the encoded size of dl as a pb.Delivery.
func (dl *Delivery) size() int {
	e := &dl.Msg
	n := sizeVarint(dl.Tag) + sizeString(e.ID) + sizeString(e.Sender) + sizeString(e.CorrelationID) + sizeString(e.ReplyTo)
	if dl.Reply {
		n += 2
	}
	if len(e.Payload) > 0 {
		n += 1 + protowire.SizeBytes(len(e.Payload))
	}
	return n + sizeVarint(uint64(int64(e.Priority))) + sizeVarint(uint64(int64(e.Signal))) + sizeVarint(uint64(e.TTL)) +
		sizeVarint(uint64(e.Remaining)) + sizeVarint(uint64(int64(e.Attempts))) + sizeString(e.ReplyVia)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, x uint64) []byte {
	if x == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, x)
}

// append appends dl encoded as a pb.Delivery, fields in number order (as
// the generated code writes them).
func (dl *Delivery) append(b []byte) []byte {
	e := &dl.Msg
	b = appendVarint(b, 1, dl.Tag)
	if dl.Reply {
		b = appendVarint(b, 2, 1)
	}
	b = appendString(b, 3, e.ID)
	b = appendString(b, 4, e.Sender)
	if len(e.Payload) > 0 {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, e.Payload)
	}
	b = appendString(b, 6, e.CorrelationID)
	b = appendString(b, 7, e.ReplyTo)
	b = appendVarint(b, 8, uint64(int64(e.Priority)))
	b = appendVarint(b, 9, uint64(int64(e.Signal)))
	b = appendVarint(b, 10, uint64(e.TTL))
	b = appendVarint(b, 11, uint64(e.Remaining))
	b = appendVarint(b, 12, uint64(int64(e.Attempts)))
	return appendString(b, 13, e.ReplyVia)
}

// SendFrame sends one frame like [HostStream.Send], with the same bytes
// on the wire, but encodes it directly (Send goes through the generated
// protobuf code and stays the benchmarks' raw baseline). It blocks under
// gRPC flow control and fails once the stream is broken, or for a string
// field that is not valid UTF-8 (as Send does). d may be reused once it
// returns. It counts as a Send: one sending goroutine at a time,
// concurrently with Recv.
func (h *HostStream) SendFrame(d *Down) error { return h.s.SendMsg(&downFrame{d}) }
