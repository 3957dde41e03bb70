package sdk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Mailbox defaults, applied to zero (or negative, where noted) fields of
// [MailboxConfig].
const (
	// DefaultMaxMessageSize is the default MaxMessageSize: 1 MiB.
	DefaultMaxMessageSize = 1 << 20
	// DefaultDeadLetterCapacity is the default DeadLetterCapacity.
	DefaultDeadLetterCapacity = 1000
	// DefaultMaxDeliveryAttempts is the default MaxDeliveryAttempts.
	DefaultMaxDeliveryAttempts = 5
)

// MailboxConfig configures a [Mailbox]. The zero value is a valid
// configuration: every zero field means its documented default.
//
// The seed's two boolean options (priority_queues and enable_deadletter,
// both on by default) are spelled as Disable* here so that the zero value
// keeps them on.
type MailboxConfig struct {
	// Capacity bounds the number of queued messages, all priorities
	// together. In-flight messages (fetched, not yet acknowledged) do not
	// count. ≤0 means the production preset's MailboxCapacity (1000).
	Capacity int
	// DisablePriorityQueues makes the mailbox one FIFO queue that ignores
	// message priorities. By default messages are received in strict
	// priority order (critical first), FIFO within a priority.
	DisablePriorityQueues bool
	// DisableDeadLetter turns the dead-letter list off: messages that would
	// be dead-lettered (expired, poison) are discarded and counted in
	// MessagesDropped.
	DisableDeadLetter bool
	// DeadLetterCapacity bounds the dead-letter list. When it is full the
	// oldest dead letter is evicted and counted in MessagesDropped.
	// ≤0 means [DefaultDeadLetterCapacity].
	DeadLetterCapacity int
	// DefaultTTL is the deadline given to accepted messages that have no
	// TTL of their own. ≤0 means none: such messages never expire.
	DefaultTTL time.Duration
	// MaxMessageSize is the largest accepted [Message.Size] in bytes.
	// 0 means [DefaultMaxMessageSize]; negative means no limit.
	MaxMessageSize int
	// MaxDeliveryAttempts is how many deliveries a message may have before
	// a [Mailbox.Nack] marks it poison and moves it to the dead letters with
	// [ReasonMaxAttempts]. 0 means [DefaultMaxDeliveryAttempts]; negative
	// means no limit.
	MaxDeliveryAttempts int
}

// MailboxStats is a snapshot of a mailbox's counters: the seed's
// MailboxStats fields plus dead-letter, acknowledgement and gauge values.
// Counters (uint64) only grow; gauges (int) are current values.
type MailboxStats struct {
	// MessagesSent counts messages accepted by Send or SendContext
	// (lifecycle messages above capacity included). Not replays.
	MessagesSent uint64
	// MessagesReceived counts deliveries: messages handed out by Receive,
	// ReceiveContext, Fetch or FetchAs. A redelivery after a nack counts
	// again.
	MessagesReceived uint64
	// MessagesRejected counts sends (and replays) that returned an error.
	MessagesRejected uint64
	// MessagesExpired counts accepted messages whose deadline passed
	// before delivery (found at receive, sweep, full-mailbox send or nack)
	// and that were moved to the dead letters with [ReasonExpired] (or
	// dropped, when dead letters are disabled). Sends of already-expired
	// messages are rejected with [ErrMessageExpired] and counted in
	// MessagesRejected instead.
	MessagesExpired uint64
	// MessagesDropped counts messages the mailbox lost: dead letters
	// evicted because the list was full, and messages that would have been
	// dead-lettered while dead letters are disabled. Nothing else is ever
	// dropped: a full mailbox rejects the send.
	MessagesDropped uint64
	// MessagesAcked and MessagesNacked count Ack and Nack calls that found
	// their message in flight (ReleaseConsumer and NackAll count as nacks).
	MessagesAcked  uint64
	MessagesNacked uint64
	// DeadLettered counts messages moved to the dead letters, for any
	// reason; DeadLettersReplayed and DeadLettersDiscarded count successful
	// Replay and Discard calls; PoisonMessages counts messages that
	// exhausted MaxDeliveryAttempts.
	DeadLettered         uint64
	DeadLettersReplayed  uint64
	DeadLettersDiscarded uint64
	PoisonMessages       uint64
	// PeakUsage is the highest Len ever reached.
	PeakUsage int
	// TotalSizeBytes is the total Size of the messages currently queued or
	// in flight.
	TotalSizeBytes int
	// Len, InFlight and DeadLetters are the current number of queued
	// messages, in-flight messages and dead letters.
	Len         int
	InFlight    int
	DeadLetters int
	// Capacity is the effective capacity.
	Capacity int
}

// Mailbox is a bounded priority queue of messages with TTL expiry, dead
// letters, size limits, duplicate-ID detection, at-least-once delivery and
// statistics. Create one with [NewMailbox]. All methods are safe for
// concurrent use by any number of goroutines.
//
// Two ways to consume: [Mailbox.Receive] and [Mailbox.ReceiveContext] hand a
// message out and forget it (at-most-once); [Mailbox.Fetch] hands it out and
// keeps it in flight until [Mailbox.Ack], or [Mailbox.Nack] puts it back
// (at-least-once). Duplicate detection covers queued and in-flight IDs.
//
// Expired messages are never delivered: they are moved to the dead letters
// with [ReasonExpired]. Expiry is judged on the package clock (see
// [ClockResolution]): a message is delivered only while that clock is
// before its deadline. Messages carrying a lifecycle signal
// ([Signal.IsLifecycle]) are accepted even when the mailbox is full.
//
// A send or receive costs no allocation once the mailbox is warm; waiting
// receivers are woken only when someone waits, and a receiver that finds
// the mailbox empty yields the processor a few times before it parks.
type Mailbox struct {
	// Configuration and read-mostly state: one cache line that the hot
	// paths read but never write.
	capacity    int
	defaultTTL  int64
	maxSize     int
	now         func() int64 // the package clock; tests inject a fake
	priorities  bool
	spin        bool // GOMAXPROCS > 1 at creation: spinning before parking can pay off
	deadLetter  bool
	sawDeadline atomic.Bool // set once a message with a deadline was accepted; until then receives skip the clock
	_           [64]byte

	// Hot state, written by every send and receive under mu, packed so
	// that one operation moves few cache lines between cores.
	mu sync.Mutex
	// hint tells a receiver spinning before it parks whether the queue is
	// still empty, without the lock. It equals n whenever n ≤ 1 (larger
	// values may be stale but are never 0). Stores are skipped otherwise:
	// an atomic store is a locked instruction on amd64.
	hint     atomic.Int32
	nonEmpty uint8 // bit i set when rings[i] is not empty
	closed   bool
	n        int // queued messages
	sent     uint64
	received uint64
	size     int // TotalSizeBytes
	peak     int // PeakUsage
	// minDeadline is a lower bound of the deadlines of queued messages
	// (math.MaxInt64 when none may expire): a sweep before it is pointless.
	minDeadline int64
	recvq       waitq
	sendq       waitq
	rings       [numPriorities]ring
	_           [64]byte

	// Colder state.
	ids       idset // explicit-ID messages queued or in flight (see claimLocked)
	inflight  map[string]flight
	fetchSeq  uint64
	free      []*waiter
	dead      []DeadLetter
	dlSeq     uint64
	st        MailboxStats // the other counters; Stats fills in the rest
	dlCap     int
	maxAtt    int
	fullErr   error
	closedErr error
}

// flight is an in-flight message and who fetched it.
type flight struct {
	m        *Message
	consumer string
	seq      uint64
}

// NewMailbox returns an empty, open mailbox configured by cfg (zero fields
// take the defaults documented on [MailboxConfig]).
func NewMailbox(cfg MailboxConfig) *Mailbox {
	mb := &Mailbox{
		now:         clockNow,
		capacity:    cfg.Capacity,
		priorities:  !cfg.DisablePriorityQueues,
		deadLetter:  !cfg.DisableDeadLetter,
		dlCap:       cfg.DeadLetterCapacity,
		maxSize:     cfg.MaxMessageSize,
		maxAtt:      cfg.MaxDeliveryAttempts,
		inflight:    make(map[string]flight),
		minDeadline: math.MaxInt64,
		spin:        runtime.GOMAXPROCS(0) > 1,
	}
	if mb.capacity <= 0 {
		mb.capacity = PresetProduction.Values().MailboxCapacity
	}
	if mb.dlCap <= 0 {
		mb.dlCap = DefaultDeadLetterCapacity
	}
	if cfg.DefaultTTL > 0 {
		mb.defaultTTL = int64(cfg.DefaultTTL)
	}
	if mb.maxSize == 0 {
		mb.maxSize = DefaultMaxMessageSize
	}
	if mb.maxAtt == 0 {
		mb.maxAtt = DefaultMaxDeliveryAttempts
	}
	mb.fullErr = fmt.Errorf("%w (capacity %d)", ErrMailboxFull, mb.capacity)
	mb.closedErr = ErrInboxClosed
	return mb
}

// spinYields bounds the spin of a receiver that found the mailbox empty
// before it parks: a few yields of the processor, which let a just-woken
// partner goroutine run and often make the wait unnecessary (about the cost
// of one park and wake-up; it halves ping-pong latency). Senders that find
// the mailbox full do not spin: with several producers that only steals
// the consumer's processor.
const spinYields = 4

// errTimedOut is an internal result of a receive with a timer.
var errTimedOut = errors.New("vigil: receive timed out")

// prio maps a message to its ring.
func (mb *Mailbox) prio(m *Message) int {
	if !mb.priorities {
		return PriorityNormal.index()
	}
	return m.priority.index()
}

// Send queues m without blocking, at the back of its priority. A message
// without a deadline gets one from DefaultTTL, if set, counted from the
// call. It returns an error wrapping [ErrInvalidMessage] (nil message or
// empty ID), [ErrMessageTooLarge],
// [ErrMessageExpired] (its deadline already passed), [ErrInboxClosed],
// [ErrMailboxFull] (Capacity messages are queued; lifecycle-signal messages
// are accepted anyway) or [ErrDuplicateMessage] (a message with the same ID
// is queued or in flight). On error nothing was queued.
func (mb *Mailbox) Send(m *Message) error { return mb.send(context.Background(), false, m) }

// SendContext is like [Mailbox.Send] but, when the mailbox is full, blocks
// until there is room, ctx is done (its error is returned), or the mailbox
// is closed ([ErrInboxClosed]). A message that expires while waiting
// returns [ErrMessageExpired].
func (mb *Mailbox) SendContext(ctx context.Context, m *Message) error {
	if ctx == nil {
		ctx = context.Background()
	}
	return mb.send(ctx, true, m)
}

func (mb *Mailbox) send(ctx context.Context, block bool, m *Message) error {
	if m == nil || m.id == "" {
		return mb.reject(fmt.Errorf("%w: nil message or empty id", ErrInvalidMessage))
	}
	size := m.Size()
	if mb.maxSize > 0 && size > mb.maxSize {
		return mb.reject(fmt.Errorf("%w: message %s is %d bytes (max %d)", ErrMessageTooLarge, m.id, size, mb.maxSize))
	}
	// Effective deadline; the clock is read outside the lock, and only for
	// messages that can expire.
	d := m.deadline.Load()
	stamp := false
	if d == 0 && mb.defaultTTL > 0 {
		d, stamp = mb.now()+mb.defaultTTL, true
	} else if d != 0 && mb.now() >= d {
		return mb.reject(fmt.Errorf("%w: message %s (ttl %v)", ErrMessageExpired, m.id, m.ttl))
	}
	lifecycle := m.signal.IsLifecycle()

	mb.mu.Lock()
	for {
		if mb.closed {
			mb.st.MessagesRejected++
			mb.mu.Unlock()
			return fmt.Errorf("%w: message %s not sent", ErrInboxClosed, m.id)
		}
		if mb.n < mb.capacity || lifecycle {
			break
		}
		if mb.sweepDueLocked() && mb.n < mb.capacity {
			break
		}
		if !block {
			mb.st.MessagesRejected++
			mb.mu.Unlock()
			return fmt.Errorf("%w: message %s not sent", mb.fullErr, m.id)
		}
		if err := ctx.Err(); err != nil {
			mb.st.MessagesRejected++
			mb.mu.Unlock()
			return err
		}
		w := mb.getWaiterLocked()
		mb.waitLocked(&mb.sendq, w, ctx.Done(), nil)
		mb.putWaiterLocked(w)
		if d != 0 && mb.now() >= d {
			mb.st.MessagesRejected++
			mb.mu.Unlock()
			return fmt.Errorf("%w: message %s expired while waiting for room", ErrMessageExpired, m.id)
		}
	}
	wr, err := mb.admitLocked(m, d, stamp, size)
	ws := mb.wakeSendersLocked() // a sweep may have made room for more
	mb.mu.Unlock()
	signal(wr)
	signal(ws)
	return err
}

// admitLocked is the end of a send once there is room: the duplicate check
// and the push. When a receiver is parked (so the queue is empty) the
// message is handed to it directly, as a channel does, sparing it the
// relock and pop; the receiver is returned for signalling after unlock.
func (mb *Mailbox) admitLocked(m *Message, d int64, stamp bool, size int) (*waiter, error) {
	if !mb.claimLocked(m) {
		mb.st.MessagesRejected++
		return nil, fmt.Errorf("%w: id %q is already queued or in flight", ErrDuplicateMessage, m.id)
	}
	if d != 0 {
		if stamp {
			m.deadline.CompareAndSwap(0, d)
		}
		if !mb.sawDeadline.Load() {
			mb.sawDeadline.Store(true)
		}
	}
	mb.sent++
	mb.size += size
	if w := mb.recvq.pop(); w != nil {
		mb.deliverLocked(m, w.fetch, w.consumer)
		w.m = m
		return w, nil
	}
	mb.pushLocked(m, false)
	return nil, nil
}

func (mb *Mailbox) reject(err error) error {
	mb.mu.Lock()
	mb.st.MessagesRejected++
	mb.mu.Unlock()
	return err
}

// pushLocked queues m at the back (or front) of its priority.
func (mb *Mailbox) pushLocked(m *Message, front bool) {
	p := mb.prio(m)
	if front {
		mb.rings[p].pushFront(m)
	} else {
		mb.rings[p].push(m)
	}
	mb.nonEmpty |= 1 << p
	mb.n++
	mb.setHintLocked()
	if d := m.deadline.Load(); d != 0 && d < mb.minDeadline {
		mb.minDeadline = d
	}
	if mb.n > mb.peak {
		mb.peak = mb.n
	}
}

func (mb *Mailbox) setHintLocked() {
	if mb.n <= 1 {
		mb.hint.Store(int32(mb.n))
	}
}

// popLocked removes the next deliverable message, moving expired ones to
// the dead letters. now is a clock reading taken during this call, or 0 to
// read the clock lazily. It returns nil when the queue is empty.
func (mb *Mailbox) popLocked(now int64) *Message {
	for mb.nonEmpty != 0 {
		p := bits.TrailingZeros8(mb.nonEmpty)
		r := &mb.rings[p]
		m := r.pop()
		if r.n == 0 {
			mb.nonEmpty &^= 1 << p
		}
		mb.n--
		mb.setHintLocked()
		if d := m.deadline.Load(); d != 0 {
			if now == 0 {
				now = mb.now()
			}
			if now >= d {
				mb.expireLocked(m)
				continue
			}
		}
		return m
	}
	return nil
}

// expireLocked dead-letters a message that expired while held (queued or in
// flight); the caller already took it out of the queue or the flight map.
func (mb *Mailbox) expireLocked(m *Message) {
	mb.unclaimLocked(m)
	mb.size -= m.Size()
	mb.st.MessagesExpired++
	mb.deadLetterLocked(m, ReasonExpired, "", false)
}

// sweepDueLocked sweeps when some queued message may have expired and
// reports whether it removed any.
func (mb *Mailbox) sweepDueLocked() bool {
	if mb.minDeadline == math.MaxInt64 {
		return false
	}
	now := mb.now()
	if now < mb.minDeadline {
		return false
	}
	return mb.sweepLocked(now) > 0
}

// sweepLocked moves every expired queued message to the dead letters and
// returns how many it moved.
func (mb *Mailbox) sweepLocked(now int64) int {
	moved := 0
	mb.minDeadline = math.MaxInt64
	for p := range mb.rings {
		r := &mb.rings[p]
		if r.n == 0 {
			continue
		}
		moved += r.filter(func(m *Message) bool {
			d := m.deadline.Load()
			if d != 0 && now >= d {
				mb.expireLocked(m)
				return false
			}
			if d != 0 && d < mb.minDeadline {
				mb.minDeadline = d
			}
			return true
		})
		if r.n == 0 {
			mb.nonEmpty &^= 1 << p
		}
	}
	mb.n -= moved
	mb.hint.Store(int32(mb.n))
	return moved
}

// SweepExpired moves every expired queued message to the dead letters now,
// rather than when a receive reaches it, and returns how many it moved. It
// never blocks for long (O(Len)).
func (mb *Mailbox) SweepExpired() int {
	mb.mu.Lock()
	n := mb.sweepLocked(mb.now())
	w := mb.wakeSendersLocked() // the sweep may have made room
	mb.mu.Unlock()
	signal(w)
	return n
}

// preNow reads the clock before taking the lock when the mailbox may hold
// messages with deadlines; otherwise it returns 0 (read lazily if needed).
func (mb *Mailbox) preNow() int64 {
	if mb.sawDeadline.Load() {
		return mb.now()
	}
	return 0
}

// Receive removes and returns the next message without blocking: the
// oldest message of the highest priority that is not expired. The message
// is delivered and acknowledged at once. It returns [ErrEmptyMailbox] when
// nothing is queued, or an error wrapping [ErrInboxClosed] when the mailbox
// is closed and drained.
func (mb *Mailbox) Receive() (*Message, error) {
	now := mb.preNow()
	mb.mu.Lock()
	m, pre := mb.takeLocked(now)
	if m == nil {
		closed := mb.closed
		mb.mu.Unlock()
		signal(pre)
		if closed {
			return nil, mb.closedErr
		}
		return nil, ErrEmptyMailbox
	}
	mb.deliverLocked(m, false, "")
	w := mb.wakeSendersLocked()
	mb.mu.Unlock()
	signal(pre)
	signal(w)
	return m, nil
}

// takeLocked pops the next deliverable message. When it finds none only
// after dropping expired messages, the room they freed goes to parked
// senders, returned for signalling after unlock.
func (mb *Mailbox) takeLocked(now int64) (*Message, *waiter) {
	m := mb.popLocked(now)
	if m != nil || mb.sendq.len() == 0 {
		return m, nil
	}
	return nil, mb.wakeSendersLocked()
}

// ReceiveContext is like [Mailbox.Receive] but blocks until a message
// arrives, ctx is done (ctx's error is returned), or the mailbox is closed
// and drained ([ErrInboxClosed]).
func (mb *Mailbox) ReceiveContext(ctx context.Context) (*Message, error) {
	return mb.recv(ctx, nil, false, "")
}

// Fetch is the at-least-once receive: it blocks like
// [Mailbox.ReceiveContext], then keeps the message in flight (its ID stays
// taken, its Attempts count grew) until [Mailbox.Ack] removes it or
// [Mailbox.Nack] puts it back. Same errors as ReceiveContext.
func (mb *Mailbox) Fetch(ctx context.Context) (*Message, error) {
	return mb.recv(ctx, nil, true, "")
}

// FetchAs is [Mailbox.Fetch] on behalf of a named consumer, so that
// [Mailbox.ReleaseConsumer] can return all of its in-flight messages when
// that consumer dies.
func (mb *Mailbox) FetchAs(ctx context.Context, consumer string) (*Message, error) {
	return mb.recv(ctx, nil, true, consumer)
}

// recv is the blocking receive. timeout may be nil; when it fires recv
// returns errTimedOut.
func (mb *Mailbox) recv(ctx context.Context, timeout <-chan time.Time, fetch bool, consumer string) (*Message, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	done := ctx.Done()
	now := mb.preNow()
	spun := !mb.spin
	mb.mu.Lock()
	for {
		m, pre := mb.takeLocked(now)
		if m != nil {
			mb.deliverLocked(m, fetch, consumer)
			w := mb.wakeSendersLocked()
			mb.mu.Unlock()
			signal(pre)
			signal(w)
			return m, nil
		}
		if pre != nil {
			mb.mu.Unlock()
			signal(pre)
			mb.mu.Lock()
		}
		if mb.closed {
			mb.mu.Unlock()
			return nil, mb.closedErr
		}
		if done != nil {
			if err := ctx.Err(); err != nil {
				mb.mu.Unlock()
				return nil, err
			}
		}
		if !spun {
			// A message often arrives within a wake-up's cost: wait for it
			// on the spot once before parking.
			spun = true
			mb.mu.Unlock()
			for i := 0; i < spinYields && mb.hint.Load() == 0; i++ {
				runtime.Gosched()
			}
			now = mb.preNow()
			mb.mu.Lock()
			continue
		}
		w := mb.getWaiterLocked()
		w.fetch, w.consumer = fetch, consumer
		woken := mb.waitLocked(&mb.recvq, w, done, timeout)
		handed := w.m
		mb.putWaiterLocked(w)
		if handed != nil { // a sender delivered to us directly
			ws := mb.wakeSendersLocked()
			mb.mu.Unlock()
			signal(ws)
			return handed, nil
		}
		if !woken && (done == nil || ctx.Err() == nil) {
			// The timer fired; take what is there, if anything.
			m, pre := mb.takeLocked(0)
			if m != nil {
				mb.deliverLocked(m, fetch, consumer)
			}
			w := mb.wakeSendersLocked()
			mb.mu.Unlock()
			signal(pre)
			signal(w)
			if m == nil {
				return nil, errTimedOut
			}
			return m, nil
		}
		now = 0 // time passed while waiting: read the clock again
	}
}

// deliverLocked hands m out: counts it and either forgets it or records it
// in flight.
func (mb *Mailbox) deliverLocked(m *Message, fetch bool, consumer string) {
	m.attempts.Add(1)
	mb.received++
	if fetch {
		mb.fetchSeq++
		mb.inflight[m.id] = flight{m: m, consumer: consumer, seq: mb.fetchSeq}
		return
	}
	mb.unclaimLocked(m)
	mb.size -= m.Size()
}

// wakeSendersLocked picks as many parked senders as there is room for and
// returns them, chained through next, for signalling after unlock (nil if
// none). Each retries its send itself: on two cores that beats completing
// the send on its behalf, which would put both halves of the work on the
// consumer.
func (mb *Mailbox) wakeSendersLocked() *waiter {
	var head *waiter
	for room := mb.capacity - mb.n; room > 0 && mb.sendq.len() > 0; room-- {
		w := mb.sendq.pop()
		w.next, head = head, w
	}
	return head
}

// Ack acknowledges an in-flight message: it is done and its ID is free
// again. It returns an error wrapping [ErrNotInFlight] when no message with
// that ID is in flight.
func (mb *Mailbox) Ack(id string) error {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	f, ok := mb.inflight[id]
	if !ok {
		return fmt.Errorf("%w: ack of %q", ErrNotInFlight, id)
	}
	delete(mb.inflight, id)
	mb.unclaimLocked(f.m)
	mb.size -= f.m.Size()
	mb.st.MessagesAcked++
	return nil
}

// Nack gives an in-flight message back: it is queued again at the front of
// its priority (capacity does not apply: it was already accepted), unless
// it has been delivered MaxDeliveryAttempts times, in which case it is
// marked poison and moved to the dead letters with [ReasonMaxAttempts]
// (reason is kept as the dead letter's Detail), or it has expired
// ([ReasonExpired]). It returns an error wrapping [ErrNotInFlight] when no
// message with that ID is in flight.
func (mb *Mailbox) Nack(id, reason string) error {
	mb.mu.Lock()
	f, ok := mb.inflight[id]
	if !ok {
		mb.mu.Unlock()
		return fmt.Errorf("%w: nack of %q", ErrNotInFlight, id)
	}
	mb.nackLocked(f, reason, mb.preNowLocked(f.m))
	var w *waiter
	if mb.n > 0 { // requeued, not dead-lettered
		w = mb.recvq.pop()
	}
	mb.mu.Unlock()
	signal(w)
	return nil
}

func (mb *Mailbox) preNowLocked(m *Message) int64 {
	if m.deadline.Load() != 0 {
		return mb.now()
	}
	return 0
}

func (mb *Mailbox) nackLocked(f flight, reason string, now int64) {
	m := f.m
	delete(mb.inflight, m.id)
	mb.st.MessagesNacked++
	switch {
	case mb.maxAtt > 0 && m.Attempts() >= mb.maxAtt:
		mb.unclaimLocked(m)
		mb.size -= m.Size()
		mb.st.PoisonMessages++
		mb.deadLetterLocked(m, ReasonMaxAttempts, reason, true)
	case now != 0 && m.expiredAt(now):
		mb.expireLocked(m)
	default:
		mb.pushLocked(m, true)
	}
}

// ReleaseConsumer nacks every message in flight for consumer (see
// [Mailbox.FetchAs]), as when that consumer died, and returns how many it
// released. They are queued again in their original order, ahead of the
// other messages of their priority.
func (mb *Mailbox) ReleaseConsumer(consumer, reason string) int {
	return mb.release(func(f flight) bool { return f.consumer == consumer }, reason)
}

// NackAll nacks every in-flight message, as [Mailbox.ReleaseConsumer] does
// for one consumer, and returns how many it released.
func (mb *Mailbox) NackAll(reason string) int {
	return mb.release(func(flight) bool { return true }, reason)
}

func (mb *Mailbox) release(match func(flight) bool, reason string) int {
	mb.mu.Lock()
	var fs []flight
	for _, f := range mb.inflight {
		if match(f) {
			fs = append(fs, f)
		}
	}
	// Latest fetched first, so that pushing each to the front leaves them in
	// fetch order.
	slices.SortFunc(fs, func(a, b flight) int { return cmp.Compare(b.seq, a.seq) })
	now := mb.now()
	for _, f := range fs {
		mb.nackLocked(f, reason, now)
	}
	ws := mb.recvq.take(mb.n)
	mb.mu.Unlock()
	for _, w := range ws {
		signal(w)
	}
	return len(fs)
}

// Len returns the number of queued messages (not counting in-flight ones).
func (mb *Mailbox) Len() int {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.n
}

// InFlight returns the number of fetched, unacknowledged messages.
func (mb *Mailbox) InFlight() int {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return len(mb.inflight)
}

// Cap returns the mailbox's effective capacity.
func (mb *Mailbox) Cap() int { return mb.capacity }

// Stats returns a snapshot of the mailbox's counters (see [MailboxStats]).
func (mb *Mailbox) Stats() MailboxStats {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	s := mb.st
	s.MessagesSent, s.MessagesReceived, s.TotalSizeBytes, s.PeakUsage = mb.sent, mb.received, mb.size, mb.peak
	s.Len = mb.n
	s.InFlight = len(mb.inflight)
	s.DeadLetters = len(mb.dead)
	s.Capacity = mb.capacity
	return s
}

// Close closes the mailbox. It is idempotent and never blocks. Later sends
// fail with [ErrInboxClosed]; every goroutine blocked in a receive or a
// blocking send wakes up. Queued messages are not lost: receives keep
// returning them until the queue is empty, then return [ErrInboxClosed].
// In-flight messages may still be acked or nacked (a nacked message is
// queued again and can be drained).
func (mb *Mailbox) Close() {
	mb.mu.Lock()
	if mb.closed {
		mb.mu.Unlock()
		return
	}
	mb.closed = true
	ws := append(mb.recvq.take(-1), mb.sendq.take(-1)...)
	mb.mu.Unlock()
	for _, w := range ws {
		signal(w)
	}
}

// Closed reports whether [Mailbox.Close] was called.
func (mb *Mailbox) Closed() bool {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.closed
}

// ---- waiting ----

// waiter is one parked goroutine; ch has room for exactly one wake-up. A
// parked receiver may be handed its message directly (m), delivered as
// fetch/consumer say.
type waiter struct {
	ch       chan struct{}
	next     *waiter // chain of waiters to signal
	m        *Message
	fetch    bool
	consumer string
}

func (mb *Mailbox) getWaiterLocked() *waiter {
	if k := len(mb.free); k > 0 {
		w := mb.free[k-1]
		mb.free = mb.free[:k-1]
		return w
	}
	return &waiter{ch: make(chan struct{}, 1)}
}

func (mb *Mailbox) putWaiterLocked(w *waiter) {
	*w = waiter{ch: w.ch}
	mb.free = append(mb.free, w)
}

// signal wakes w and the waiters chained after it. Call it without mb.mu.
func signal(w *waiter) {
	for w != nil {
		next := w.next // w belongs to its goroutine again once signalled
		w.ch <- struct{}{}
		w = next
	}
}

// waitq is a FIFO of parked goroutines.
type waitq struct{ ws []*waiter }

func (q *waitq) len() int       { return len(q.ws) }
func (q *waitq) push(w *waiter) { q.ws = append(q.ws, w) }

func (q *waitq) pop() *waiter {
	if len(q.ws) == 0 {
		return nil
	}
	w := q.ws[0]
	copy(q.ws, q.ws[1:])
	q.ws[len(q.ws)-1] = nil
	q.ws = q.ws[:len(q.ws)-1]
	return w
}

// take removes and returns up to n waiters (all of them when n < 0).
func (q *waitq) take(n int) []*waiter {
	if n < 0 || n > len(q.ws) {
		n = len(q.ws)
	}
	out := make([]*waiter, n)
	for i := range out {
		out[i] = q.pop()
	}
	return out
}

func (q *waitq) remove(w *waiter) bool {
	for i, x := range q.ws {
		if x == w {
			q.ws = slices.Delete(q.ws, i, i+1)
			return true
		}
	}
	return false
}

// waitLocked parks the caller on q with w until it is woken (true), or
// done or timeout fires first (false). It is called and returns with mb.mu
// held. A wake-up that races with done/timeout is consumed and reported as
// true, so the caller's loop re-checks the queue (and w.done) and no
// wake-up is lost. The caller owns w before and after.
func (mb *Mailbox) waitLocked(q *waitq, w *waiter, done <-chan struct{}, timeout <-chan time.Time) bool {
	q.push(w)
	mb.mu.Unlock()
	if done == nil && timeout == nil {
		<-w.ch
		mb.mu.Lock()
		return true
	}
	select {
	case <-w.ch:
		mb.mu.Lock()
		return true
	case <-done:
	case <-timeout:
	}
	mb.mu.Lock()
	if q.remove(w) {
		return false
	}
	// Already popped by a waker, whose signal is on its way (sent after it
	// unlocked): take it.
	mb.mu.Unlock()
	<-w.ch
	mb.mu.Lock()
	return true
}

// ---- per-priority ring buffer ----

// ring is a growable FIFO of messages with a power-of-two buffer. It
// allocates only when it grows.
type ring struct {
	buf  []*Message
	head int
	n    int
}

func (r *ring) grow() {
	size := 2 * len(r.buf)
	if size == 0 {
		size = 16
	}
	nb := make([]*Message, size)
	for i := range r.n {
		nb[i] = r.buf[(r.head+i)&(len(r.buf)-1)]
	}
	r.buf, r.head = nb, 0
}

func (r *ring) push(m *Message) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = m
	r.n++
}

func (r *ring) pushFront(m *Message) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.head = (r.head - 1) & (len(r.buf) - 1)
	r.buf[r.head] = m
	r.n++
}

func (r *ring) pop() *Message {
	m := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return m
}

// filter keeps the messages for which keep is true, in order, and returns
// how many it removed.
func (r *ring) filter(keep func(*Message) bool) int {
	mask := len(r.buf) - 1
	w := 0
	for i := range r.n {
		m := r.buf[(r.head+i)&mask]
		r.buf[(r.head+i)&mask] = nil
		if keep(m) {
			r.buf[(r.head+w)&mask] = m
			w++
		}
	}
	removed := r.n - w
	r.n = w
	return removed
}

// ---- duplicate detection ----

// claimLocked records that mb holds m (queued or in flight) and reports
// false if mb already holds m or another message with m's ID.
//
// Generated IDs are unique per Message, so a message with a generated ID
// can only collide with itself (a second send of the same pointer) or with
// a message given the same ID explicitly. The first case is caught by
// m.owners, which lives in the message's own cache line: the hot path of a
// generated-ID message touches no shared hash table. Messages with explicit
// IDs go in mb.ids; an explicit ID of the generated form (a retry reusing
// an ID) additionally scans the mailbox for the generated original.
func (mb *Mailbox) claimLocked(m *Message) bool {
	if !m.generated {
		if !mb.ids.insert(m) {
			return false
		}
		if isGeneratedForm(m.id) && mb.holdsGeneratedLocked(m.id) {
			mb.ids.remove(m)
			return false
		}
		return true
	}
	for i := range m.owners {
		if m.owners[i].Load() == mb {
			return false
		}
	}
	if mb.ids.n > 0 && mb.ids.contains(m) {
		return false
	}
	for i := range m.owners {
		if m.owners[i].CompareAndSwap(nil, mb) {
			return true
		}
	}
	// Held by more mailboxes than m has owner slots: record it here.
	return mb.ids.insert(m)
}

// unclaimLocked forgets that mb holds m.
func (mb *Mailbox) unclaimLocked(m *Message) {
	if m.generated {
		for i := range m.owners {
			if m.owners[i].Load() == mb {
				m.owners[i].Store(nil)
				return
			}
		}
	}
	mb.ids.remove(m)
}

// isGeneratedForm reports whether id could be an ID generated by this
// process.
func isGeneratedForm(id string) bool {
	return len(id) > len(idPrefix) && id[len(idPrefix)] == '-' && id[:len(idPrefix)] == string(idPrefix[:])
}

// holdsGeneratedLocked reports whether a message with a generated ID equal
// to id is queued or in flight. O(Len + InFlight).
func (mb *Mailbox) holdsGeneratedLocked(id string) bool {
	if f, ok := mb.inflight[id]; ok && f.m.generated {
		return true
	}
	for p := range mb.rings {
		r := &mb.rings[p]
		for i := range r.n {
			if m := r.buf[(r.head+i)&(len(r.buf)-1)]; m.generated && m.id == id {
				return true
			}
		}
	}
	return false
}

// idset is an open-addressing hash set of messages keyed by ID, using the
// hash cached in each message (so a send hashes nothing) and linear probing
// with backward-shift deletion (no tombstones): after warm-up, inserts and
// removes never allocate. Load factor ≤ 1/2.
type idset struct {
	slots []idslot
	n     int
}

type idslot struct {
	h uint64
	m *Message
}

// insert adds m and reports true, or reports false if a message with the
// same ID is already in the set.
func (s *idset) insert(m *Message) bool {
	if 2*(s.n+1) > len(s.slots) {
		s.resize()
	}
	mask := uint64(len(s.slots) - 1)
	for i := m.hash & mask; ; i = (i + 1) & mask {
		e := &s.slots[i]
		if e.m == nil {
			e.h, e.m = m.hash, m
			s.n++
			return true
		}
		if e.h == m.hash && (e.m == m || e.m.id == m.id) {
			return false
		}
	}
}

// contains reports whether a message with m's ID is in the set.
func (s *idset) contains(m *Message) bool {
	if s.n == 0 {
		return false
	}
	mask := uint64(len(s.slots) - 1)
	for i := m.hash & mask; s.slots[i].m != nil; i = (i + 1) & mask {
		if e := &s.slots[i]; e.h == m.hash && (e.m == m || e.m.id == m.id) {
			return true
		}
	}
	return false
}

// remove deletes the entry holding exactly m, if any.
func (s *idset) remove(m *Message) {
	if s.n == 0 {
		return
	}
	mask := uint64(len(s.slots) - 1)
	i := m.hash & mask
	for ; s.slots[i].m != m; i = (i + 1) & mask {
		if s.slots[i].m == nil {
			return
		}
	}
	// Backward-shift deletion: move later entries of the probe run into
	// the hole when that keeps them reachable from their home slot.
	for j := (i + 1) & mask; s.slots[j].m != nil; j = (j + 1) & mask {
		home := s.slots[j].h & mask
		if (j-home)&mask >= (j-i)&mask {
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = idslot{}
	s.n--
}

func (s *idset) resize() {
	size := 2 * len(s.slots)
	if size == 0 {
		size = 64
	}
	old := s.slots
	s.slots, s.n = make([]idslot, size), 0
	for _, e := range old {
		if e.m != nil {
			s.insert(e.m)
		}
	}
}
