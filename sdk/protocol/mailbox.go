package protocol

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigil-run/vigil/sdk/protocol/internal/pb"
)

// The mailbox bridge's wire types. Package protocol knows nothing of
// package sdk's Message or Mailbox: these plain structs mirror the frames
// of the Mailbox service's one bidirectional stream per incarnation
// (vigil.proto), and the host and the worker SDK convert them.

// Envelope is a message on the wire.
type Envelope struct {
	ID            string
	Sender        string
	Payload       []byte
	CorrelationID string
	ReplyTo       string
	Priority      int32
	Signal        int32
	// TTL is the TTL the message was created with (0 = none).
	TTL time.Duration
	// Remaining is the time left before the message expires, measured by
	// the side that sent the frame (0 = never expires).
	Remaining time.Duration
	// Attempts counts deliveries so far, this one included (host to
	// plugin only).
	Attempts int32
	// ReplyVia is, on a request, the direct reply address of the
	// incarnation that sent it ([Up.ReplyAddr]), set by the host, which
	// vouches for it, and passed on to the plugin that receives the
	// request (Delivery field reply_via): that plugin may send the reply
	// there with a [ReplyDialer] instead of through the host. Host to
	// plugin only: not encoded in a plugin's [SendRequest].
	ReplyVia string
}

// Size is the envelope's approximate encoded size in bytes.
func (e *Envelope) Size() int {
	return len(e.Payload) + len(e.ID) + len(e.Sender) + len(e.CorrelationID) + len(e.ReplyTo) + 48
}

// Delivery is one message pushed by the host to the plugin.
type Delivery struct {
	// Tag identifies the delivery in its stream for [Up.Acks] and
	// [Up.Nacks]; 0 for replies, which need no acknowledgement.
	Tag uint64
	// Reply is true for a reply to a call made by this incarnation.
	Reply bool
	Msg   Envelope
}

// SendResult answers one [SendRequest]: Err is nil on success, else an
// error that unwraps to the registered sentinels the host's error wrapped.
type SendResult struct {
	Seq uint64
	Err error
}

// StatsResult answers one stats request: Stats is the JSON of the mailbox
// statistics, or Err says why there are none.
type StatsResult struct {
	Seq   uint64
	Stats []byte
	Err   error
}

// Down is a host→plugin frame.
type Down struct {
	Deliveries []Delivery
	Results    []SendResult
	Stats      []StatsResult
	// AcksWanted is set when the host has used up the incarnation's
	// credit window: the plugin should return its acks as soon as it runs
	// out of work. Otherwise it may hold them briefly, so that the next
	// frame it sends anyway (typically a reply) carries them.
	AcksWanted bool
}

// Nack gives a delivery back, with a reason.
type Nack struct {
	Tag    uint64
	Reason string
}

// SendKind says how the host routes a [SendRequest].
type SendKind int32

const (
	// SendPlain queues the message in the named worker's or pool's mailbox.
	SendPlain SendKind = SendKind(pb.SendRequest_KIND_SEND)
	// SendReply hands the message to the pending call it answers (its
	// correlation ID) of the worker named by To, around its mailbox.
	SendReply SendKind = SendKind(pb.SendRequest_KIND_REPLY)
	// SendBroadcast queues a copy in the own mailbox of every member of
	// the pool named by To.
	SendBroadcast SendKind = SendKind(pb.SendRequest_KIND_BROADCAST)
)

// SendRequest asks the host to route one message. The host answers with
// a [SendResult] of the same Seq, unless Seq is 0 (fire and forget) or
// ErrorsOnly is set and the send succeeded.
type SendRequest struct {
	Seq        uint64
	To         string
	Kind       SendKind
	Msg        Envelope
	ErrorsOnly bool
}

// Up is a plugin→host frame.
type Up struct {
	Acks  []uint64
	Nacks []Nack
	Sends []SendRequest
	// Stats holds sequence numbers of stats requests.
	Stats []uint64
	// Credits, non-zero once, starts deliveries: the plugin accepts up to
	// this many unacknowledged messages (the host may allow fewer).
	Credits uint32
	// ReplyAddr, non-empty once, is the address of the incarnation's
	// [ReplyListener]: the host passes it on with the incarnation's
	// requests ([Envelope.ReplyVia]) so that their replies can come
	// straight back.
	ReplyAddr string
}

// Empty reports whether the frame carries nothing.
func (u *Up) Empty() bool {
	return len(u.Acks) == 0 && len(u.Nacks) == 0 && len(u.Sends) == 0 && len(u.Stats) == 0 && u.Credits == 0 && u.ReplyAddr == ""
}

// MaxFrameBytes is the byte budget of one batched frame: a batch is cut
// when the next message would take it past this size (a single larger
// message travels alone, up to [MaxMessageSize]).
const MaxFrameBytes = 1 << 20

// FitFrame returns how many of items, taken in order, go into one frame:
// as many as fit in [MaxFrameBytes], and always at least one (a larger
// message travels alone). msg returns the envelope an item carries.
func FitFrame[T any](items []T, msg func(*T) *Envelope) int {
	size, n := 0, 0
	for n < len(items) {
		sz := msg(&items[n]).Size()
		if n > 0 && size+sz > MaxFrameBytes {
			break
		}
		size += sz
		n++
	}
	return n
}

// ---- conversions ----

func envToPB(e *Envelope) *pb.Envelope {
	return &pb.Envelope{
		Id: e.ID, Sender: e.Sender, Payload: e.Payload, CorrelationId: e.CorrelationID, ReplyTo: e.ReplyTo,
		Priority: e.Priority, Signal: e.Signal, TtlNanos: int64(e.TTL), RemainingNanos: int64(e.Remaining), Attempts: e.Attempts,
	}
}

func envFromPB(p *pb.Envelope) Envelope {
	return Envelope{
		ID: p.GetId(), Sender: p.GetSender(), Payload: p.GetPayload(), CorrelationID: p.GetCorrelationId(), ReplyTo: p.GetReplyTo(),
		Priority: p.GetPriority(), Signal: p.GetSignal(), TTL: time.Duration(p.GetTtlNanos()),
		Remaining: time.Duration(p.GetRemainingNanos()), Attempts: p.GetAttempts(),
	}
}

func errToPB(err error) *pb.WireError {
	if err == nil {
		return nil
	}
	return &pb.WireError{Message: err.Error(), Sentinels: sentinelCodes(err)}
}

func errFromPB(w *pb.WireError) error {
	if w == nil {
		return nil
	}
	return &RemoteError{Message: w.GetMessage(), sentinels: sentinelsFor(w.GetSentinels())}
}

func downToPB(d *Down) *pb.MailboxDown {
	out := &pb.MailboxDown{AcksWanted: d.AcksWanted}
	if n := len(d.Deliveries); n > 0 {
		out.Deliveries = make([]*pb.Delivery, n)
		pds := make([]pb.Delivery, n) // one allocation for the batch
		for i := range d.Deliveries {
			dl, e, p := &d.Deliveries[i], &d.Deliveries[i].Msg, &pds[i]
			p.Tag, p.Reply = dl.Tag, dl.Reply
			p.Id, p.Sender, p.Payload, p.CorrelationId, p.ReplyTo = e.ID, e.Sender, e.Payload, e.CorrelationID, e.ReplyTo
			p.Priority, p.Signal, p.TtlNanos, p.RemainingNanos, p.Attempts = e.Priority, e.Signal, int64(e.TTL), int64(e.Remaining), e.Attempts
			p.ReplyVia = e.ReplyVia
			out.Deliveries[i] = p
		}
	}
	for _, r := range d.Results {
		out.Results = append(out.Results, &pb.SendResult{Seq: r.Seq, Error: errToPB(r.Err)})
	}
	for _, s := range d.Stats {
		out.Stats = append(out.Stats, &pb.StatsResult{Seq: s.Seq, Stats: s.Stats, Error: errToPB(s.Err)})
	}
	return out
}

func downFromPB(p *pb.MailboxDown) *Down {
	d := &Down{AcksWanted: p.GetAcksWanted()}
	if n := len(p.GetDeliveries()); n > 0 {
		d.Deliveries = make([]Delivery, n)
		for i, dl := range p.GetDeliveries() {
			d.Deliveries[i] = Delivery{Tag: dl.GetTag(), Reply: dl.GetReply(), Msg: Envelope{
				ID: dl.GetId(), Sender: dl.GetSender(), Payload: dl.GetPayload(), CorrelationID: dl.GetCorrelationId(),
				ReplyTo: dl.GetReplyTo(), Priority: dl.GetPriority(), Signal: dl.GetSignal(), TTL: time.Duration(dl.GetTtlNanos()),
				Remaining: time.Duration(dl.GetRemainingNanos()), Attempts: dl.GetAttempts(), ReplyVia: dl.GetReplyVia(),
			}}
		}
	}
	for _, r := range p.GetResults() {
		d.Results = append(d.Results, SendResult{Seq: r.GetSeq(), Err: errFromPB(r.GetError())})
	}
	for _, s := range p.GetStats() {
		d.Stats = append(d.Stats, StatsResult{Seq: s.GetSeq(), Stats: s.GetStats(), Err: errFromPB(s.GetError())})
	}
	return d
}

func upToPB(u *Up) *pb.MailboxUp {
	out := &pb.MailboxUp{Acks: u.Acks, Stats: u.Stats, Credits: u.Credits, ReplyAddr: u.ReplyAddr}
	for _, n := range u.Nacks {
		out.Nacks = append(out.Nacks, &pb.Nack{Tag: n.Tag, Reason: n.Reason})
	}
	if len(u.Sends) > 0 {
		out.Sends = make([]*pb.SendRequest, len(u.Sends))
		for i := range u.Sends {
			s := &u.Sends[i]
			out.Sends[i] = &pb.SendRequest{Seq: s.Seq, To: s.To, Kind: pb.SendRequest_Kind(s.Kind), Message: envToPB(&s.Msg), ErrorsOnly: s.ErrorsOnly}
		}
	}
	return out
}

func upFromPB(p *pb.MailboxUp) *Up {
	u := &Up{Acks: p.GetAcks(), Stats: p.GetStats(), Credits: p.GetCredits(), ReplyAddr: p.GetReplyAddr()}
	for _, n := range p.GetNacks() {
		u.Nacks = append(u.Nacks, Nack{Tag: n.GetTag(), Reason: n.GetReason()})
	}
	if n := len(p.GetSends()); n > 0 {
		u.Sends = make([]SendRequest, n)
		for i, s := range p.GetSends() {
			u.Sends[i] = SendRequest{Seq: s.GetSeq(), To: s.GetTo(), Kind: SendKind(s.GetKind()), Msg: envFromPB(s.GetMessage()), ErrorsOnly: s.GetErrorsOnly()}
		}
	}
	return u
}

// ---- host side ----

// MailboxHandler serves the mailbox stream of one incarnation on the host
// side. It is called (from a gRPC goroutine) when the plugin opens the
// stream, at most once per incarnation, and should return when the stream
// fails (the process died or closed it) or ctx is done. Set it in
// [RunRequest.Mailbox].
type MailboxHandler func(ctx context.Context, s *HostStream) error

// HostStream is the host's end of an incarnation's mailbox stream. Send
// and Recv may be called concurrently with each other, but each by one
// goroutine at a time (gRPC's rule).
type HostStream struct {
	s pb.Mailbox_ConnectServer
}

// Send sends one frame; it blocks under gRPC flow control and fails once
// the stream is broken.
func (h *HostStream) Send(d *Down) error { return h.s.Send(downToPB(d)) }

// Recv blocks for the next frame from the plugin; it fails with io.EOF
// when the plugin closed its side, or another error when the stream broke.
func (h *HostStream) Recv() (*Up, error) {
	p, err := h.s.Recv()
	if err != nil {
		return nil, err
	}
	return upFromPB(p), nil
}

// mailboxServer implements pb.MailboxServer for one run.
type mailboxServer struct {
	pb.UnimplementedMailboxServer
	handler MailboxHandler
	mu      sync.Mutex
	used    bool
}

func (m *mailboxServer) Connect(s pb.Mailbox_ConnectServer) error {
	m.mu.Lock()
	used := m.used
	m.used = true
	m.mu.Unlock()
	if used {
		return status.Error(codes.FailedPrecondition, "vigil: mailbox stream already open for this incarnation")
	}
	return ToStatus(m.handler(s.Context(), &HostStream{s: s}))
}

// serveMailbox starts serving h on a fresh broker ID and returns the ID.
// The server runs until the broker closes (the go-plugin client is
// killed).
func serveMailbox(broker *plugin.GRPCBroker, h MailboxHandler) uint32 {
	id := broker.NextId()
	srv := &mailboxServer{handler: h}
	go broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		opts = append(opts, serverOptions()...)
		opts = append(opts, grpc.ForceServerCodecV2(newCodec()))
		g := grpc.NewServer(opts...)
		pb.RegisterMailboxServer(g, srv)
		return g
	})
	return id
}

// ---- plugin side ----

// MailboxConn is the plugin's connection to the host's mailbox service of
// this incarnation (dialled once, when the run starts). It is safe for
// concurrent use.
type MailboxConn struct {
	conn *grpc.ClientConn
	mu   sync.Mutex
	open bool
}

// ErrMailboxUnavailable is returned by [MailboxConn.Open] when the host
// offers no mailbox or the stream was already opened.
var ErrMailboxUnavailable = errors.New("vigil: mailbox unavailable")

// Open opens the incarnation's one mailbox stream; a second Open returns
// an error wrapping [ErrMailboxUnavailable]. ctx bounds the stream's whole
// life: cancelling it breaks the stream.
func (c *MailboxConn) Open(ctx context.Context) (*PluginStream, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: the host offers no mailbox", ErrMailboxUnavailable)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open {
		return nil, fmt.Errorf("%w: stream already opened", ErrMailboxUnavailable)
	}
	s, err := pb.NewMailboxClient(c.conn).Connect(ctx, append(callOptions(), grpc.ForceCodecV2(newCodec()))...)
	if err != nil {
		return nil, fmt.Errorf("vigil: open mailbox stream: %w", FromStatus(err))
	}
	c.open = true
	return &PluginStream{s: s}, nil
}

func (c *MailboxConn) close() {
	if c != nil {
		c.conn.Close()
	}
}

// PluginStream is the plugin's end of the mailbox stream. Send and Recv
// may be called concurrently with each other, each by one goroutine at a
// time.
type PluginStream struct {
	s pb.Mailbox_ConnectClient
}

// Send sends one frame; it blocks under flow control and fails once the
// stream is broken.
func (p *PluginStream) Send(u *Up) error {
	if err := p.s.Send(upToPB(u)); err != nil {
		return FromStatus(err)
	}
	return nil
}

// Recv blocks for the next frame from the host.
func (p *PluginStream) Recv() (*Down, error) {
	d, err := p.s.Recv()
	if err != nil {
		return nil, FromStatus(err)
	}
	return downFromPB(d), nil
}

// CloseSend closes the plugin's side of the stream.
func (p *PluginStream) CloseSend() error { return p.s.CloseSend() }
