package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-run/vigil/sdk/protocol"
)

// The worker half of the mailbox bridge: a worker's mailbox lives in the
// host (it survives the worker's crash and restart); the worker reaches it
// over one bidirectional stream per incarnation, opened on first use.

// ReplyAddressHost is the reply-to address of calls made by the host
// itself ([Reply] to a message carrying it answers the host).
const ReplyAddressHost = "@host"

// RecvCredits is how many unacknowledged deliveries a worker accepts; the
// host's own window may be smaller.
const RecvCredits = 1 << 16

// maxWireMessage bounds an envelope the worker may send: gRPC's raised
// limit ([protocol.MaxMessageSize]) less room for the frame.
const maxWireMessage = protocol.MaxMessageSize - 64<<10

// ackDelay bounds how long a worker that ran out of messages holds its
// acks when the host does not wait for them ([protocol.Down.AcksWanted]
// unset): the next frame it sends (a send, or a reply to the host) carries
// them, so a request/reply exchange costs no separate ack frame. (A direct
// reply to another plugin carries none: its acks go within ackDelay, in
// one frame for all the requests answered meanwhile.)
const ackDelay = time.Millisecond

// closeFlushTimeout bounds the final flush of acks when Run returns.
const closeFlushTimeout = time.Second

// errRecvTimedOut is recv's internal result when its timer fired.
var errRecvTimedOut = errors.New("vigil: remote receive timed out")

// errNoMailbox is returned when the worker runs without a host mailbox
// (e.g. under a test harness).
var errNoMailbox = fmt.Errorf("%w: this worker has no host mailbox", ErrInboxClosed)

// remote is the worker's end of the bridge. Safe for concurrent use.
type remote struct {
	id   string
	conn *protocol.MailboxConn

	openOnce sync.Once
	openErr  error
	stream   *protocol.PluginStream
	cancel   context.CancelFunc
	done     chan struct{} // closed when the stream failed or was closed
	readDone chan struct{} // closed when the reader exited
	failErr  error         // set before done is closed

	// outbound: one writer goroutine sends whatever accumulated.
	omu      sync.Mutex
	out      protocol.Up
	wake     chan struct{}
	sendMu   sync.Mutex // held while a frame is being sent
	granted  atomic.Bool
	ackTimer *time.Timer // flushes held acks after ackDelay
	ackArmed atomic.Bool

	// inbound.
	imu   sync.Mutex
	queue []queued // received, not yet handed out
	avail chan struct{}
	// inflight holds the messages handed out and not yet acknowledged,
	// except the one of the last Recv, which is kept in last and lastD
	// (it is usually auto-acked by the next Recv: no map operation).
	inflight map[*Message]delivery
	last     *Message // handed out by the last Recv, auto-acked by the next
	lastD    delivery
	// acksWanted: a frame since the worker last ran out of messages said
	// the host waits for acks (set with the deliveries it came with).
	acksWanted bool

	// requests awaiting an answer.
	seq        atomic.Uint64
	pmu        sync.Mutex
	sends      map[uint64]chan error
	stats      map[uint64]chan protocol.StatsResult
	calls      map[string]chan *Message
	callPrefix string
	late       atomic.Uint64

	// direct replies (see protocol.ListenReplies): replies to this
	// worker's calls that skip the host (a listener started at the first
	// call; nil: none, replies come through the host), and replies it
	// sends that way.
	listenOnce sync.Once
	replies    atomic.Pointer[protocol.ReplyListener]
	dialer     protocol.ReplyDialer
}

type delivery struct {
	tag      uint64
	attempts int
}

// queued is a received message with its delivery.
type queued struct {
	m *Message
	d delivery
}

func newRemote(id string, conn *protocol.MailboxConn) *remote {
	return &remote{
		id: id, conn: conn,
		wake:       make(chan struct{}, 1),
		avail:      make(chan struct{}, 1),
		inflight:   map[*Message]delivery{},
		sends:      map[uint64]chan error{},
		stats:      map[uint64]chan protocol.StatsResult{},
		calls:      map[string]chan *Message{},
		callPrefix: "call-" + NewMessageID() + "-",
	}
}

// open opens the stream once and starts the reader and writer.
func (r *remote) open() error {
	r.openOnce.Do(func() {
		if r.conn == nil {
			r.openErr = errNoMailbox
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		s, err := r.conn.Open(ctx)
		if err != nil {
			cancel()
			r.openErr = fmt.Errorf("%w: %w", ErrInboxClosed, err)
			return
		}
		r.stream, r.cancel = s, cancel
		r.done, r.readDone = make(chan struct{}), make(chan struct{})
		r.ackTimer = time.AfterFunc(time.Hour, r.ackTimerFired)
		r.ackTimer.Stop()
		go r.reader()
		go r.writer()
	})
	return r.openErr
}

// fail ends the bridge: pending requests fail with an error wrapping
// [ErrInboxClosed].
func (r *remote) fail(err error) {
	r.pmu.Lock()
	select {
	case <-r.done:
		r.pmu.Unlock()
		return
	default:
	}
	r.failErr = fmt.Errorf("%w: mailbox stream ended: %v", ErrInboxClosed, err)
	close(r.done)
	r.pmu.Unlock()
	r.ackTimer.Stop()
	r.cancel()
	if l := r.replies.Load(); l != nil {
		l.Close()
	}
	r.dialer.Close()
}

// listenReplies starts taking replies directly, once, at the worker's
// first call (r is open): the address goes to the host in the frame of
// that call's request, which the host reads before routing the request.
// If no socket can be had, replies come through the host.
func (r *remote) listenReplies() {
	r.listenOnce.Do(func() {
		l, err := protocol.ListenReplies(r.directReply)
		if err != nil {
			return
		}
		r.pmu.Lock()
		select {
		case <-r.done: // failed meanwhile: fail has looked for a listener already
			r.pmu.Unlock()
			l.Close()
			return
		default:
		}
		r.replies.Store(l)
		r.pmu.Unlock()
		r.omu.Lock()
		r.out.ReplyAddr = l.Addr()
		r.omu.Unlock()
	})
}

// answer hands a reply to the call waiting for it, or drops it if that
// call gave up.
func (r *remote) answer(m *Message) {
	r.pmu.Lock()
	ch, ok := r.calls[m.CorrelationID()]
	delete(r.calls, m.CorrelationID())
	r.pmu.Unlock()
	if ok {
		ch <- m // buffered, and each call gets one reply at most
	} else {
		r.late.Add(1) // the call gave up: drop the reply
	}
}

// directReply takes a reply that came straight from the answering plugin.
func (r *remote) directReply(e *protocol.Envelope) {
	if m, err := MessageFromEnvelope(e); err == nil {
		r.answer(m)
	}
}

// replyDirect tries to send reply straight to the caller's reply socket
// addr and reports whether it went.
func (r *remote) replyDirect(addr string, reply *Message) bool {
	if reply.ID() == "" || !protocol.ValidReplyAddr(addr) || r.open() != nil {
		return false
	}
	env := EnvelopeFromMessage(reply, r.id)
	if env.Size() > maxWireMessage {
		return false // post reports it
	}
	return r.dialer.Send(addr, &env) == nil
}

func (r *remote) reader() {
	defer close(r.readDone)
	// Each delivery becomes a message as it is decoded (one allocation);
	// the frame's requests go to the queue together, in batch (reused).
	var batch []queued
	deliver := func(v *protocol.DeliveryView) {
		m, err := messageFromView(v)
		if err != nil {
			if !v.Reply {
				r.addNack(v.Tag, ReasonRejected+": "+err.Error())
			}
			return
		}
		if v.Reply {
			r.answer(m)
			return
		}
		batch = append(batch, queued{m, delivery{tag: v.Tag, attempts: int(v.Attempts)}})
	}
	for {
		d, err := r.stream.RecvEach(deliver)
		if err != nil {
			r.fail(err)
			return
		}
		if len(batch) > 0 || d.AcksWanted {
			r.imu.Lock()
			r.queue = append(r.queue, batch...)
			r.acksWanted = r.acksWanted || d.AcksWanted
			r.imu.Unlock()
			clear(batch)
			batch = batch[:0]
			notify(r.avail)
		}
		if len(d.Results) > 0 || len(d.Stats) > 0 {
			r.pmu.Lock()
			for _, res := range d.Results {
				if ch, ok := r.sends[res.Seq]; ok {
					delete(r.sends, res.Seq)
					ch <- res.Err
				}
			}
			for _, res := range d.Stats {
				if ch, ok := r.stats[res.Seq]; ok {
					delete(r.stats, res.Seq)
					ch <- res
				}
			}
			r.pmu.Unlock()
		}
	}
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// ackBatch is how many lazy acknowledgements accumulate before they are
// sent while the worker keeps receiving (when its local queue runs dry
// they are sent at once if the host waits for them, else within ackDelay
// or with the next frame). Half the host's default window: two ack frames
// per window keep the host pushing while the worker works through the
// other half, and every ack frame costs both processes a write, a read
// and a wake-up.
const ackBatch = 128

// enqueueOut adds to the next outbound frame and sends it now, from the
// calling goroutine when no frame is being sent (a request's latency then
// includes no goroutine hand-off), else through the writer.
func (r *remote) enqueueOut(f func(u *protocol.Up)) {
	r.omu.Lock()
	f(&r.out)
	r.omu.Unlock()
	r.flushNow()
}

// addAck queues an acknowledgement; lazy ones ride along with the next
// frame, or go out in a batch of ackBatch, or when the worker's local
// queue runs dry ([remote.flushAcks]); others are sent at once.
func (r *remote) addAck(tag uint64, lazy bool) {
	r.omu.Lock()
	r.out.Acks = append(r.out.Acks, tag)
	n := len(r.out.Acks)
	r.omu.Unlock()
	if !lazy || n >= ackBatch {
		r.flushNow()
	}
}

// flushNow sends what is queued from the calling goroutine when no frame
// is being sent, else leaves it to the writer (which then sends it right
// after the current frame).
func (r *remote) flushNow() {
	if r.sendMu.TryLock() {
		err := r.flushLocked()
		r.sendMu.Unlock()
		if err != nil {
			r.fail(err)
		}
		return
	}
	notify(r.wake)
}

// addNack queues a nack for the writer.
func (r *remote) addNack(tag uint64, reason string) {
	r.omu.Lock()
	r.out.Nacks = append(r.out.Nacks, protocol.Nack{Tag: tag, Reason: reason})
	r.omu.Unlock()
	notify(r.wake)
}

// flushAcks is called when the worker is about to wait for its next
// message. If the host waits for acks (its window is used up: now is
// true) they go out at once, so that it gets its credits back. Else they
// are held for at most ackDelay: the next frame the worker sends, a reply
// typically, carries them, and a request/reply exchange costs no frame
// (and no wake-up of the host) for its ack.
func (r *remote) flushAcks(now bool) {
	r.omu.Lock()
	n := len(r.out.Acks)
	r.omu.Unlock()
	switch {
	case n == 0:
	case now:
		r.flushNow()
	case r.ackArmed.CompareAndSwap(false, true):
		r.ackTimer.Reset(ackDelay)
	}
}

// ackTimerFired sends the acks held by flushAcks, if no frame took them.
func (r *remote) ackTimerFired() {
	r.ackArmed.Store(false)
	r.omu.Lock()
	n := len(r.out.Acks)
	r.omu.Unlock()
	if n > 0 {
		r.flushNow()
	}
}

func (r *remote) writer() {
	for {
		select {
		case <-r.wake:
		case <-r.done:
			return
		}
		r.sendMu.Lock()
		err := r.flushLocked()
		r.sendMu.Unlock()
		if err != nil {
			r.fail(err)
			return
		}
	}
}

// flushLocked sends everything queued, cut into frames of at most
// protocol.MaxFrameBytes of messages. The caller holds sendMu.
func (r *remote) flushLocked() error {
	r.omu.Lock()
	u := r.out
	r.out = protocol.Up{}
	r.omu.Unlock()
	if u.Empty() {
		return nil
	}
	for {
		frame := u
		n := protocol.FitFrame(u.Sends, func(x *protocol.SendRequest) *protocol.Envelope { return &x.Msg })
		frame.Sends = u.Sends[:n]
		if err := r.stream.Send(&frame); err != nil {
			return err
		}
		if n == len(u.Sends) {
			return nil
		}
		u = protocol.Up{Sends: u.Sends[n:]}
	}
}

// close flushes pending acks (acking the last received message when ok)
// and closes the stream, bounded by closeFlushTimeout.
func (r *remote) close(ok bool) {
	r.openOnce.Do(func() { r.openErr = fmt.Errorf("%w: the worker returned", ErrInboxClosed) })
	if r.openErr != nil {
		return
	}
	select {
	case <-r.done:
		return
	default:
	}
	if ok {
		r.ackLast(false)
	}
	r.sendMu.Lock()
	err := r.flushLocked()
	r.sendMu.Unlock()
	if err == nil {
		_ = r.stream.CloseSend()
		t := time.NewTimer(closeFlushTimeout)
		select {
		case <-r.readDone: // the host closed its side: everything was read
		case <-t.C:
		}
		t.Stop()
	}
	r.fail(errors.New("worker returned"))
	<-r.readDone
}

// sendMode says what a send waits for.
type sendMode int

const (
	waitResult    sendMode = iota // wait for the host's result
	errorsOnly                    // the host answers failures only (calls)
	fireAndForget                 // no answer (replies)
)

// post validates m and queues a send request. For waitResult and
// errorsOnly it returns the channel its result arrives on and its seq.
func (r *remote) post(to string, kind protocol.SendKind, m *Message, mode sendMode) (chan error, uint64, error) {
	if m == nil || m.ID() == "" {
		return nil, 0, fmt.Errorf("%w: nil message or empty id", ErrInvalidMessage)
	}
	if to == "" {
		return nil, 0, fmt.Errorf("%w: empty destination", ErrWorkerNotFound)
	}
	if err := r.open(); err != nil {
		return nil, 0, err
	}
	env := EnvelopeFromMessage(m, r.id)
	if env.Size() > maxWireMessage {
		return nil, 0, fmt.Errorf("%w: message %s is %d bytes (the wire carries at most %d)", ErrMessageTooLarge, m.ID(), env.Size(), maxWireMessage)
	}
	var seq uint64
	var ch chan error
	r.pmu.Lock()
	select {
	case <-r.done:
		r.pmu.Unlock()
		return nil, 0, r.failErr
	default:
	}
	if mode != fireAndForget {
		seq = r.seq.Add(1)
		ch = make(chan error, 1)
		r.sends[seq] = ch
	}
	r.pmu.Unlock()
	r.enqueueOut(func(u *protocol.Up) {
		u.Sends = append(u.Sends, protocol.SendRequest{Seq: seq, To: to, Kind: kind, Msg: env, ErrorsOnly: mode == errorsOnly})
	})
	return ch, seq, nil
}

func (r *remote) forgetSend(seq uint64) {
	r.pmu.Lock()
	delete(r.sends, seq)
	r.pmu.Unlock()
}

// send sends m and waits for the host's result.
func (r *remote) send(ctx context.Context, to string, kind protocol.SendKind, m *Message) error {
	ch, seq, err := r.post(to, kind, m, waitResult)
	if err != nil {
		return err
	}
	select {
	case err := <-ch:
		if err != nil {
			return fmt.Errorf("vigil: send %s to %q: %w", m.ID(), to, err)
		}
		return nil
	case <-r.done:
		return r.failErr
	case <-ctx.Done():
		r.forgetSend(seq)
		return fmt.Errorf("vigil: send %s to %q (it may still arrive): %w", m.ID(), to, ctx.Err())
	}
}

// grant starts deliveries once.
func (r *remote) grant() error {
	if err := r.open(); err != nil {
		return err
	}
	if !r.granted.Load() && !r.granted.Swap(true) {
		r.enqueueOut(func(u *protocol.Up) { u.Credits = RecvCredits })
	}
	return nil
}

// ackLast acknowledges the message of the last Recv unless it was acked or
// nacked already.
func (r *remote) ackLast(lazy bool) {
	r.imu.Lock()
	m, d := r.last, r.lastD
	r.last = nil
	r.imu.Unlock()
	if m != nil {
		r.addAck(d.tag, lazy)
	}
}

func (r *remote) recv(ctx context.Context, timeout <-chan time.Time, autoAck bool) (*Message, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := r.grant(); err != nil {
		return nil, err
	}
	ackTag, ackOK := uint64(0), false
	if autoAck {
		// Acknowledge the previous Recv's message (in the same critical
		// section as taking the next one).
		r.imu.Lock()
		if r.last != nil {
			r.last = nil
			ackTag, ackOK = r.lastD.tag, true
		}
		r.imu.Unlock()
		if ackOK {
			r.addAck(ackTag, true)
		}
	}
	for {
		r.imu.Lock()
		if len(r.queue) > 0 {
			q := r.queue[0]
			r.queue[0] = queued{}
			r.queue = r.queue[1:]
			more := len(r.queue) > 0
			if q.m.IsExpired() {
				// Never delivered: the host dead-letters it as expired.
				r.imu.Unlock()
				r.addNack(q.d.tag, ReasonExpired)
				continue
			}
			m := q.m
			switch {
			case !autoAck:
				r.inflight[m] = q.d
			case r.last != nil:
				// Another goroutine's Recv handed it out: it stays in
				// flight until acked explicitly, as it would have.
				r.inflight[r.last] = r.lastD
				fallthrough
			default:
				r.last, r.lastD = m, q.d
			}
			r.imu.Unlock()
			if more {
				notify(r.avail) // another receiver may take the next
			}
			return m, nil
		}
		wanted := r.acksWanted // the queue is empty: every frame that set it was read
		r.acksWanted = false
		r.imu.Unlock()
		r.flushAcks(wanted) // about to wait: return (or hold) the acks
		select {
		case <-r.avail:
		case <-r.done:
			return nil, r.failErr
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, errRecvTimedOut
		}
	}
}

// RemoteInbox is a worker's view of its host-side mailbox (and, for a pool
// member, of its pool's shared mailbox): the seed's Inbox calls over the
// bridge. Get it with [Runtime.Inbox]. All methods are safe for concurrent
// use.
//
// Delivery is at-least-once: a received message stays in flight in the
// host until it is acknowledged. [RemoteInbox.Recv] acknowledges the
// message the previous Recv returned (unless it was acked or nacked
// explicitly), [RemoteInbox.Handle] acknowledges when the handler returns
// nil; if the worker dies first, the message goes back to the mailbox with
// its attempt count raised and is delivered to the next incarnation (after
// MaxDeliveryAttempts it becomes a poison dead letter). With several
// goroutines receiving, use [RemoteInbox.Fetch] and explicit acks.
type RemoteInbox struct{ r *remote }

// Recv blocks until a message arrives and returns it, after acknowledging
// the message the previous Recv returned. It returns ctx's error when ctx
// is done first, or an error wrapping [ErrInboxClosed] when the worker has
// no host mailbox or the connection to the host is gone. Expired messages
// are never returned (the host dead-letters them).
func (in *RemoteInbox) Recv(ctx context.Context) (*Message, error) {
	return in.r.recv(ctx, nil, true)
}

// RecvTimeout is like [RemoteInbox.Recv] but gives up after d: it then
// returns a nil message and a nil error, as [Inbox.RecvTimeout] does.
func (in *RemoteInbox) RecvTimeout(d time.Duration) (*Message, error) {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	m, err := in.r.recv(context.Background(), t.C, true)
	if errors.Is(err, errRecvTimedOut) {
		return nil, nil
	}
	return m, err
}

// Fetch is like [RemoteInbox.Recv] but acknowledges nothing: the caller
// must [RemoteInbox.Ack] or [RemoteInbox.Nack] the message.
func (in *RemoteInbox) Fetch(ctx context.Context) (*Message, error) {
	return in.r.recv(ctx, nil, false)
}

// Ack acknowledges m: the host forgets it. It does not block (acks are
// batched). It returns an error wrapping [ErrNotInFlight] when m is not an
// unacknowledged message of this inbox.
func (in *RemoteInbox) Ack(m *Message) error {
	d, err := in.take(m, "ack")
	if err != nil {
		return err
	}
	in.r.addAck(d.tag, false)
	return nil
}

// Nack gives m back to the host mailbox with reason: it is delivered again
// (with its attempts raised), or dead-lettered as poison after
// MaxDeliveryAttempts. It does not block. It returns an error wrapping
// [ErrNotInFlight] when m is not an unacknowledged message of this inbox.
func (in *RemoteInbox) Nack(m *Message, reason string) error {
	d, err := in.take(m, "nack")
	if err != nil {
		return err
	}
	in.r.addNack(d.tag, reason)
	return nil
}

func (in *RemoteInbox) take(m *Message, what string) (delivery, error) {
	in.r.imu.Lock()
	defer in.r.imu.Unlock()
	if m != nil && in.r.last == m {
		in.r.last = nil
		return in.r.lastD, nil
	}
	d, ok := in.r.inflight[m]
	if !ok {
		return delivery{}, fmt.Errorf("%w: %s of %v", ErrNotInFlight, what, m)
	}
	delete(in.r.inflight, m)
	return d, nil
}

// Attempts returns how many times the host has delivered m (this delivery
// included), or 0 when m is not an unacknowledged message of this inbox.
// (m.Attempts() counts deliveries in this process only.)
func (in *RemoteInbox) Attempts(m *Message) int {
	in.r.imu.Lock()
	defer in.r.imu.Unlock()
	if m != nil && in.r.last == m {
		return in.r.lastD.attempts
	}
	return in.r.inflight[m].attempts
}

// Handle receives messages and calls h for each, one at a time, until ctx
// is done (it then returns ctx's error) or the connection to the host is
// gone. A nil result acknowledges the message; an error nacks it with the
// error's text as the reason (so it is delivered again, up to
// MaxDeliveryAttempts).
func (in *RemoteInbox) Handle(ctx context.Context, h func(context.Context, *Message) error) error {
	for {
		m, err := in.Fetch(ctx)
		if err != nil {
			return err
		}
		if herr := h(ctx, m); herr != nil {
			_ = in.Nack(m, herr.Error())
		} else if d, err := in.take(m, "ack"); err == nil {
			in.r.addAck(d.tag, true) // sent in a batch, or when the queue runs dry
		}
	}
}

// Stats returns the statistics of the worker's own host-side mailbox. It
// blocks for one round trip to the host, at most until ctx is done.
func (in *RemoteInbox) Stats(ctx context.Context) (MailboxStats, error) {
	r := in.r
	if err := r.open(); err != nil {
		return MailboxStats{}, err
	}
	seq := r.seq.Add(1)
	ch := make(chan protocol.StatsResult, 1)
	r.pmu.Lock()
	r.stats[seq] = ch
	r.pmu.Unlock()
	r.enqueueOut(func(u *protocol.Up) { u.Stats = append(u.Stats, seq) })
	select {
	case res := <-ch:
		if res.Err != nil {
			return MailboxStats{}, res.Err
		}
		var st MailboxStats
		if err := json.Unmarshal(res.Stats, &st); err != nil {
			return MailboxStats{}, fmt.Errorf("vigil: mailbox stats: %w", err)
		}
		return st, nil
	case <-r.done:
		return MailboxStats{}, r.failErr
	case <-ctx.Done():
		r.pmu.Lock()
		delete(r.stats, seq)
		r.pmu.Unlock()
		return MailboxStats{}, ctx.Err()
	}
}

// LateReplies counts replies that arrived after their call had given up
// (they are dropped).
func (in *RemoteInbox) LateReplies() uint64 { return in.r.late.Load() }

// Inbox returns the worker's inbox, backed by its host-side mailbox. The
// host starts pushing messages to the worker at its first receive. Safe
// for concurrent use; always returns the same inbox.
func (rt *Runtime) Inbox() *RemoteInbox { return &RemoteInbox{r: rt.remote} }

// Send queues m in the host-side mailbox named to: a worker ID, or a pool
// name (the pool's shared mailbox, from which whichever member is free
// takes it). A message whose sender is [DefaultSender] is sent as from
// this worker. It blocks for one round trip to the host, at most until
// ctx is done, and returns the host mailbox's error: one wrapping
// [ErrMailboxFull], [ErrMessageTooLarge], [ErrMessageExpired],
// [ErrDuplicateMessage], [ErrInboxClosed]…, [ErrWorkerNotFound] for an
// unknown name, or ctx's error (the message may then still arrive).
// Safe for concurrent use.
func (rt *Runtime) Send(ctx context.Context, to string, m *Message) error {
	return rt.remote.send(ctx, to, protocol.SendPlain, m)
}

// Broadcast queues a copy of m in the own mailbox of every member of the
// pool named pool. It blocks like [Runtime.Send] and returns the members'
// errors joined, or one wrapping [ErrWorkerNotFound] when pool names no
// pool.
func (rt *Runtime) Broadcast(ctx context.Context, pool string, m *Message) error {
	return rt.remote.send(ctx, pool, protocol.SendBroadcast, m)
}

// Call sends m to to as a request and waits for the reply: it sets m's
// correlation ID (a fresh one) and reply-to (this worker), so m must not be
// shared. The reply is routed straight back to this call; a reply that
// arrives after the call gave up is dropped (see
// [RemoteInbox.LateReplies]), never handed to a later call or to the
// inbox. timeout ≤ 0 means no limit but ctx's. It returns the errors of
// [Runtime.Send], an error wrapping [ErrTimeout] when no reply came within
// timeout, or ctx's error. Safe for concurrent use.
func (rt *Runtime) Call(ctx context.Context, to string, m *Message, timeout time.Duration) (*Message, error) {
	r := rt.remote
	if m == nil {
		return nil, fmt.Errorf("%w: nil message", ErrInvalidMessage)
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	r.listenReplies()
	corr := r.callPrefix + strconv.FormatUint(r.seq.Add(1), 16)
	m.SetCorrelationID(corr)
	m.SetReplyTo(rt.id)
	ch := make(chan *Message, 1)
	r.pmu.Lock()
	r.calls[corr] = ch
	r.pmu.Unlock()
	forget := func() {
		r.pmu.Lock()
		delete(r.calls, corr)
		r.pmu.Unlock()
	}
	var expire <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expire = t.C
	}
	sent, seq, err := r.post(to, protocol.SendPlain, m, errorsOnly)
	if err != nil {
		forget()
		return nil, err
	}
	defer r.forgetSend(seq)
	select {
	case rep := <-ch:
		return rep, nil
	case err := <-sent: // only failures are answered
		forget()
		return nil, fmt.Errorf("vigil: call %s to %q: %w", corr, to, err)
	case <-expire:
		forget()
		return nil, fmt.Errorf("%w: call %s to %q: no reply within %v", ErrTimeout, corr, to, timeout)
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("vigil: call %s to %q: %w", corr, to, ctx.Err())
	case <-r.done:
		forget()
		return nil, r.failErr
	}
}

// Reply sends reply as the answer to req: to req's reply-to address, with
// req's correlation ID, straight to the waiting call. When req came from
// another plugin's call and the host passed on that plugin's reply
// address, the reply goes directly to it over a local socket (one process
// hop less); otherwise, or if that fails, through the host, which hands it
// to the waiting call (worker or host). A reply nobody waits for any more
// (the call timed out, or its worker is gone) is dropped, and nothing
// orders a reply with other messages from the same worker to the caller.
// Replies are fire-and-forget: Reply waits for no answer, only, on the
// direct route, for the local socket to take the reply (at most about 2 s,
// when the calling plugin has stopped reading, before it falls back on the
// host), and returns only local errors: one wrapping
// [ErrInvalidMessage] when req has no reply-to, [ErrMessageTooLarge], or
// [ErrInboxClosed] when the connection to the host is gone. ctx is not
// waited on.
func (rt *Runtime) Reply(ctx context.Context, req, reply *Message) error {
	if req == nil || reply == nil {
		return fmt.Errorf("%w: nil message", ErrInvalidMessage)
	}
	if req.ReplyTo() == "" {
		return fmt.Errorf("%w: %v has no reply-to address", ErrInvalidMessage, req)
	}
	reply.SetCorrelationID(req.CorrelationID())
	if req.via != "" && rt.remote.replyDirect(req.via, reply) {
		return nil
	}
	_, _, err := rt.remote.post(req.ReplyTo(), protocol.SendReply, reply, fireAndForget)
	return err
}

// EnvelopeFromMessage puts m on the wire (the worker SDK and the host use
// it; not for worker authors); a [DefaultSender] becomes from.
func EnvelopeFromMessage(m *Message, from string) protocol.Envelope {
	sender := m.Sender()
	if sender == DefaultSender || sender == "" {
		sender = from
	}
	var remaining time.Duration
	if d, ok := m.Deadline(); ok {
		remaining = max(time.Until(d), 1) // 1 ns: expired, the host rejects it
	}
	return protocol.Envelope{
		ID: m.ID(), Sender: sender, Payload: m.Payload(), CorrelationID: m.CorrelationID(), ReplyTo: m.ReplyTo(),
		Priority: int32(m.Priority()), Signal: int32(m.Signal()), TTL: m.TTL(), Remaining: remaining, ReplyVia: m.via,
	}
}

// MessageFromEnvelope rebuilds a message from the wire (see
// [EnvelopeFromMessage]). It returns an error wrapping [ErrInvalidMessage]
// for a malformed envelope. Its TTL is the
// time it had left, so its deadline matches the sender's (to within the
// transit time).
func MessageFromEnvelope(e *protocol.Envelope) (*Message, error) {
	m, err := NewMessage(e.ID, e.Sender, e.Payload, Signal(e.Signal), Priority(e.Priority), e.Remaining)
	if err != nil {
		return nil, err
	}
	if e.CorrelationID != "" {
		m.SetCorrelationID(e.CorrelationID)
	}
	if e.ReplyTo != "" {
		m.SetReplyTo(e.ReplyTo)
	}
	m.via = e.ReplyVia
	return m, nil
}
