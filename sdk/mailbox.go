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
	// The layout keeps apart, one cache line each (TestMailboxLayout
	// checks that they are): the configuration, read by every operation and written
	// only by NewMailbox; the state every send and receive writes; the
	// counters only sends write; those only receives write; and the
	// read-mostly state. A send or receive then moves one line of mailbox
	// state between cores (the mutex's).
	//
	// The allocator puts an 8-byte header before an object this large,
	// in a slot whose size (768) is a multiple of 64: 56 bytes here align
	// what follows.
	_ [56]byte

	// Configuration.
	capacity   int
	defaultTTL int64
	maxSize    int
	now        func() int64 // clock override for tests; nil = the package clock
	fullErr    error
	num        uint32 // the mailbox's number, for the owner bits of messages (see claimLocked)
	priorities bool
	deadLetter bool
	spin       bool // GOMAXPROCS > 1 at creation: yielding before parking can pay off
	_          [9]byte

	// Everything below is guarded by mu.
	mu       sync.Mutex
	n        int                    // queued messages
	pos      [numPriorities]ringPos // where each priority's queue is in bufs[p]
	nonEmpty uint8                  // bit p set when ring p is not empty
	closed   bool
	_        [6]byte

	// Written by sends. TotalSizeBytes is sizeIn - sizeOut.
	sent   uint64
	sizeIn int
	peak   int // PeakUsage
	_      [40]byte

	// Written by receives (and the rarer operations that release).
	received uint64
	sizeOut  int
	_        [48]byte

	// Read-mostly: written only when a queue grows or a goroutine parks,
	// or for rarer kinds of messages.
	bufs        [numPriorities][]*Message // ring buffers, power-of-two sizes
	recvq       waitq
	sendq       waitq
	minDeadline int64 // a lower bound of queued deadlines (math.MaxInt64: none); no sweep is due before it
	// genLike and genShared count the messages in ids with explicit IDs of
	// the generated form and with generated IDs (see claimLocked).
	genLike   int
	genShared int

	// Colder state.
	ids      idset // the messages queued or in flight that mb does not own
	inflight map[string]flight
	fetchSeq uint64
	dead     []DeadLetter
	dlSeq    uint64
	dlCap    int
	maxAtt   int
	st       MailboxStats // the other counters; Stats fills in the rest
}

// flight is an in-flight message and who fetched it.
type flight struct {
	m        *Message
	consumer string
	seq      uint64
	owned    bool // mb holds m through its owner bits, not mb.ids
}

// mailboxNums numbers mailboxes for the owner bits of messages. After 2³²
// mailboxes numbers recur; mailboxes sharing a number stay correct
// (claimLocked checks before it trusts the owner bits), only slower.
var mailboxNums atomic.Uint32

// NewMailbox returns an empty, open mailbox configured by cfg (zero fields
// take the defaults documented on [MailboxConfig]).
func NewMailbox(cfg MailboxConfig) *Mailbox {
	mb := &Mailbox{
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
	for mb.num == 0 {
		mb.num = mailboxNums.Add(1)
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
	return mb
}

// clock returns the mailbox's clock: the package clock unless a test
// replaced it.
func (mb *Mailbox) clock() int64 {
	if mb.now != nil {
		return mb.now()
	}
	return clockNow()
}

// spinYields bounds the spin of a receiver that found the mailbox empty
// before it parks: a few yields of the processor, each followed by a look
// at the queue, which let a just-woken partner goroutine run and often make
// the wait unnecessary (a yield costs less than a park and a wake-up; it
// halves ping-pong latency). Senders that find the mailbox full do not
// spin: with several producers that only steals the consumer's processor.
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

// send is Send (wait false: a full mailbox refuses at once; ctx unused)
// and SendContext (wait true). Its common case (valid, open, room,
// generated ID) stays in this small function; everything rarer is in
// functions of its own, which keeps the time spent holding mb.mu short.
func (mb *Mailbox) send(ctx context.Context, wait bool, m *Message) error {
	if m == nil || (!m.generated && m.id == "") {
		return mb.reject(fmt.Errorf("%w: nil message or empty id", ErrInvalidMessage))
	}
	size := int(m.size)
	if mb.maxSize > 0 && size > mb.maxSize {
		return mb.rejectTooLarge(m)
	}
	// Effective deadline; the clock is read outside the lock, and only for
	// messages that can expire.
	d := m.deadline.Load()
	stamp := false
	if d == 0 {
		if mb.defaultTTL > 0 {
			d, stamp = mb.clock()+mb.defaultTTL, true
		}
	} else if mb.clock() >= d {
		return mb.rejectExpired(m)
	}

	mb.mu.Lock()
	if mb.closed || (mb.n >= mb.capacity && !m.signal.IsLifecycle()) {
		if err := mb.waitRoomLocked(ctx, wait, m, d); err != nil {
			mb.st.MessagesRejected++
			mb.mu.Unlock()
			return err
		}
	}
	owned, ok := mb.claimLocked(m)
	if !ok {
		return mb.rejectDuplicateLocked(m)
	}
	if stamp && !m.deadline.CompareAndSwap(0, d) {
		d = m.deadline.Load() // another mailbox stamped it first
	}
	mb.sent++
	mb.sizeIn += size
	if mb.recvq.len() != 0 {
		mb.handOffLocked(m, owned) // unlocks
		return nil
	}
	mb.pushLocked(m, d, false)
	if mb.sendq.len() == 0 {
		mb.mu.Unlock()
		return nil
	}
	ws := mb.wakeSendersLocked() // a sweep may have made room for more
	mb.mu.Unlock()
	signal(ws)
	return nil
}

// handOffLocked delivers m, just accepted (owned as claimLocked said), to
// the first parked receiver, as that receiver's Receive or Fetch would: a
// parked receiver means an empty queue, so m goes to it directly, as a
// channel does, and the woken receiver need not take the lock at all (see
// waitLocked). It unlocks mb.mu.
func (mb *Mailbox) handOffLocked(m *Message, owned bool) {
	w := mb.recvq.pop()
	if !w.fetch {
		mb.countReceiveLocked(m, owned)
	}
	mb.deliverLocked(m, w.fetch, w.consumer, owned)
	w.m = m
	mb.mu.Unlock()
	signal(w)
}

func (mb *Mailbox) rejectTooLarge(m *Message) error {
	return mb.reject(fmt.Errorf("%w: message %s is %d bytes (max %d)", ErrMessageTooLarge, m.id, m.size, mb.maxSize))
}

func (mb *Mailbox) rejectExpired(m *Message) error {
	return mb.reject(fmt.Errorf("%w: message %s (ttl %v)", ErrMessageExpired, m.id, m.ttl))
}

// rejectDuplicateLocked counts and returns the refusal of m, whose ID is
// held; it unlocks mb.mu.
func (mb *Mailbox) rejectDuplicateLocked(m *Message) error {
	mb.st.MessagesRejected++
	mb.mu.Unlock()
	return fmt.Errorf("%w: id %q is already queued or in flight", ErrDuplicateMessage, m.id)
}

// waitRoomLocked is the slow path of a send that found the mailbox closed
// or full: it sweeps expired messages and, for SendContext, waits for room.
// It returns nil when m may be admitted, or the error to return (the caller
// counts the rejection). Called and returns with mb.mu held.
func (mb *Mailbox) waitRoomLocked(ctx context.Context, wait bool, m *Message, d int64) error {
	lifecycle := m.signal.IsLifecycle()
	for {
		if mb.closed {
			return fmt.Errorf("%w: message %s not sent", ErrInboxClosed, m.id)
		}
		if mb.n < mb.capacity || lifecycle {
			return nil
		}
		if mb.sweepDueLocked() && mb.n < mb.capacity {
			return nil
		}
		if !wait {
			return fmt.Errorf("%w: message %s not sent", mb.fullErr, m.id)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		w := getWaiter()
		mb.waitLocked(&mb.sendq, w, ctx.Done(), nil)
		putWaiter(w)
		if d != 0 && mb.clock() >= d {
			return fmt.Errorf("%w: message %s expired while waiting for room", ErrMessageExpired, m.id)
		}
	}
}

func (mb *Mailbox) reject(err error) error {
	mb.mu.Lock()
	mb.st.MessagesRejected++
	mb.mu.Unlock()
	return err
}

// pushLocked queues m, whose deadline is d, at the back (or front) of its
// priority.
func (mb *Mailbox) pushLocked(m *Message, d int64, front bool) {
	p := mb.prio(m)
	mb.ringPush(p, m, front)
	mb.nonEmpty |= 1 << p
	mb.n++
	if d != 0 && d < mb.minDeadline {
		mb.minDeadline = d
	}
	if mb.n > mb.peak {
		mb.peak = mb.n
	}
}

// popLocked removes the next deliverable message, moving expired ones to
// the dead letters, and returns it, or nil when the queue is empty; owned
// says how mb held it. The clock is read only for messages that can
// expire.
//
// For a receive (fetch false) it also counts the delivery and releases
// mb's claim, whatever comes next, in one atomic add on the message's
// state word (undone if the message turns out expired): the consumer's
// first touch of the message's cache line is then that write, so the line
// comes over once, writable, instead of readable and then again writable,
// and a receive makes one atomic operation on the message in all.
func (mb *Mailbox) popLocked(fetch bool) (m *Message, owned bool) {
	for mb.nonEmpty != 0 {
		m = mb.popFrontLocked()
		if fetch {
			owned = mb.ownsLocked(m)
		} else {
			owned = mb.receivedLocked(m)
		}
		if mb.live(m) {
			return m, owned
		}
		mb.poppedExpiredLocked(m, fetch, owned)
	}
	return nil, false
}

// receivedLocked counts a receive's delivery of m, just popped, releases
// mb's claim on it, and reports how mb held it (see ownsLocked).
func (mb *Mailbox) receivedLocked(m *Message) (owned bool) {
	owned = mb.ownsLocked(m)
	mb.countReceiveLocked(m, owned)
	return owned
}

// countReceiveLocked counts a receive's delivery of m and releases mb's
// claim on it (owned says how mb held it): for a message mb owns, one
// atomic add does both.
func (mb *Mailbox) countReceiveLocked(m *Message, owned bool) {
	var num uint32
	if owned {
		num = mb.num
	} else {
		mb.unclaimLocked(m, false)
	}
	m.attempts.delivered(num)
}

// live reports whether m has not expired; it reads the clock only when m
// can expire.
func (mb *Mailbox) live(m *Message) bool {
	d := m.deadline.Load()
	return d == 0 || mb.clock() < d
}

// popFrontLocked removes and returns the front message of the highest
// priority that has one; the mailbox is not empty.
func (mb *Mailbox) popFrontLocked() *Message {
	p := bits.TrailingZeros8(mb.nonEmpty)
	m := mb.ringPop(p)
	if mb.pos[p].n == 0 {
		mb.nonEmpty &^= 1 << p
	}
	mb.n--
	return m
}

// poppedExpiredLocked dead-letters m, which popLocked (fetch as given;
// owned as ownsLocked said) took out of the queue and found expired,
// undoing what it did to m for a receive.
func (mb *Mailbox) poppedExpiredLocked(m *Message, fetch, owned bool) {
	if fetch {
		mb.unclaimLocked(m, owned)
	} else {
		m.attempts.undeliver()
	}
	mb.deadLetterExpiredLocked(m)
}

// expireLocked dead-letters a message that expired while held (queued or in
// flight; owned says how mb holds it); the caller already took it out of
// the queue or the flight map.
func (mb *Mailbox) expireLocked(m *Message, owned bool) {
	mb.unclaimLocked(m, owned)
	mb.deadLetterExpiredLocked(m)
}

// deadLetterExpiredLocked is expireLocked for a message already unclaimed.
func (mb *Mailbox) deadLetterExpiredLocked(m *Message) {
	mb.sizeOut += m.Size()
	mb.st.MessagesExpired++
	mb.deadLetterLocked(m, ReasonExpired, "", false)
}

// sweepDueLocked sweeps when some queued message may have expired and
// reports whether it removed any.
func (mb *Mailbox) sweepDueLocked() bool {
	if mb.minDeadline == math.MaxInt64 {
		return false
	}
	now := mb.clock()
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
	for p := range mb.pos {
		if mb.pos[p].n == 0 {
			continue
		}
		moved += mb.ringFilter(p, func(m *Message) bool {
			d := m.deadline.Load()
			if d != 0 && now >= d {
				mb.expireLocked(m, mb.ownsLocked(m))
				return false
			}
			if d != 0 && d < mb.minDeadline {
				mb.minDeadline = d
			}
			return true
		})
		if mb.pos[p].n == 0 {
			mb.nonEmpty &^= 1 << p
		}
	}
	mb.n -= moved
	return moved
}

// SweepExpired moves every expired queued message to the dead letters now,
// rather than when a receive reaches it, and returns how many it moved. It
// never blocks for long (O(Len)).
func (mb *Mailbox) SweepExpired() int {
	mb.mu.Lock()
	n := mb.sweepLocked(mb.clock())
	w := mb.wakeSendersLocked() // the sweep may have made room
	mb.mu.Unlock()
	signal(w)
	return n
}

// Receive removes and returns the next message without blocking: the
// oldest message of the highest priority that is not expired. The message
// is delivered and acknowledged at once. It returns [ErrEmptyMailbox] when
// nothing is queued, or an error wrapping [ErrInboxClosed] when the mailbox
// is closed and drained.
func (mb *Mailbox) Receive() (*Message, error) {
	mb.mu.Lock()
	m, _ := mb.popLocked(false)
	if m == nil {
		closed := mb.closed
		ws := mb.wakeSendersLocked() // expired messages may have made room
		mb.mu.Unlock()
		signal(ws)
		if closed {
			return nil, ErrInboxClosed
		}
		return nil, ErrEmptyMailbox
	}
	mb.deliverLocked(m, false, "", false)
	mb.unlockWake()
	return m, nil
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
// returns errTimedOut. Its common case (a receive that finds a message
// that has not expired) stays in this small function, as send's does;
// recvLocked does the rest.
func (mb *Mailbox) recv(ctx context.Context, timeout <-chan time.Time, fetch bool, consumer string) (*Message, error) {
	mb.mu.Lock()
	if !fetch && mb.nonEmpty != 0 {
		// popLocked's receive case, with receivedLocked written out: the
		// call costs measurably here, inside the lock on the hottest path
		// (BenchmarkMailboxVsChan, 4 producers: ratio 1.08 inline against
		// 1.12 with the call, 1.17 against 1.24 prebuilt).
		m := mb.popFrontLocked()
		owned := mb.ownsLocked(m)
		var num uint32
		if owned {
			num = mb.num
		} else {
			mb.unclaimLocked(m, false)
		}
		m.attempts.delivered(num)
		if mb.live(m) {
			mb.received++
			mb.sizeOut += int(m.size)
			mb.unlockWake()
			return m, nil
		}
		mb.poppedExpiredLocked(m, false, owned)
	}
	return mb.recvLocked(ctx, timeout, fetch, consumer)
}

// recvLocked is recv from the point where it holds mb.mu; it returns
// without it.
func (mb *Mailbox) recvLocked(ctx context.Context, timeout <-chan time.Time, fetch bool, consumer string) (*Message, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	done := ctx.Done()
	spins := 0
	if !mb.spin {
		spins = spinYields
	}
	for {
		if m, owned := mb.popLocked(fetch); m != nil {
			mb.deliverLocked(m, fetch, consumer, owned)
			mb.unlockWake()
			return m, nil
		}
		if mb.sendq.len() > 0 { // expired messages made room
			ws := mb.wakeSendersLocked()
			mb.mu.Unlock()
			signal(ws)
			mb.mu.Lock()
			continue
		}
		if mb.closed {
			mb.mu.Unlock()
			return nil, ErrInboxClosed
		}
		if done != nil {
			if err := ctx.Err(); err != nil {
				mb.mu.Unlock()
				return nil, err
			}
		}
		if spins < spinYields {
			// A message often arrives within a wake-up's cost: yield and
			// look again a few times before parking.
			spins++
			mb.mu.Unlock()
			runtime.Gosched()
			mb.mu.Lock()
			continue
		}
		w := getWaiter()
		w.fetch, w.consumer = fetch, consumer
		woken := mb.waitLocked(&mb.recvq, w, done, timeout)
		if m := w.m; m != nil { // a sender handed it to us; mb.mu is not held
			putWaiter(w)
			return m, nil
		}
		putWaiter(w)
		if !woken && (done == nil || ctx.Err() == nil) {
			// The timer fired; take what is there, if anything.
			m, owned := mb.popLocked(fetch)
			if m != nil {
				mb.deliverLocked(m, fetch, consumer, owned)
			}
			mb.unlockWake()
			if m == nil {
				return nil, errTimedOut
			}
			return m, nil
		}
	}
}

// deliverLocked hands out m, just popped (owned as popLocked said): counts
// it and, for a fetch, records it in flight and counts the delivery
// attempt on the message (a receive's popLocked counted it already, with
// the claim's release).
func (mb *Mailbox) deliverLocked(m *Message, fetch bool, consumer string, owned bool) {
	mb.received++
	if fetch {
		m.attempts.delivered(0) // counts, keeps the claim
		mb.fetchSeq++
		mb.inflight[m.id] = flight{m: m, consumer: consumer, seq: mb.fetchSeq, owned: owned}
		return
	}
	mb.sizeOut += int(m.size)
}

// unlockWake unlocks mb.mu and wakes the parked senders there is now room
// for.
func (mb *Mailbox) unlockWake() {
	if mb.sendq.len() == 0 {
		mb.mu.Unlock()
		return
	}
	ws := mb.wakeSendersLocked()
	mb.mu.Unlock()
	signal(ws)
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
	mb.ackLocked(f)
	return nil
}

// ackLocked acknowledges the in-flight message f.
func (mb *Mailbox) ackLocked(f flight) {
	delete(mb.inflight, f.m.id)
	mb.unclaimLocked(f.m, f.owned)
	mb.sizeOut += f.m.Size()
	mb.st.MessagesAcked++
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
	mb.nackLocked(f, reason, 0)
	var w *waiter
	if mb.n > 0 { // requeued, not dead-lettered
		w = mb.recvq.pop()
	}
	mb.mu.Unlock()
	signal(w)
	return nil
}

// nackLocked gives back the in-flight message f; now is a clock reading,
// or 0 to read the clock only if the message can expire.
func (mb *Mailbox) nackLocked(f flight, reason string, now int64) {
	m := f.m
	delete(mb.inflight, m.id)
	mb.st.MessagesNacked++
	d := m.deadline.Load()
	if d != 0 && now == 0 {
		now = mb.clock()
	}
	switch {
	case mb.maxAtt > 0 && m.Attempts() >= mb.maxAtt:
		mb.unclaimLocked(m, f.owned)
		mb.sizeOut += m.Size()
		mb.st.PoisonMessages++
		mb.deadLetterLocked(m, ReasonMaxAttempts, reason, true)
	case d != 0 && now >= d:
		mb.expireLocked(m, f.owned)
	default:
		mb.pushLocked(m, d, true)
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
	now := mb.clock()
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
	s.MessagesSent, s.MessagesReceived, s.TotalSizeBytes, s.PeakUsage = mb.sent, mb.received, mb.sizeIn-mb.sizeOut, mb.peak
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

// waiters recycles waiters: a goroutine parks on a waiter it owns, so
// they need no lock of a mailbox.
var waiters = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

func getWaiter() *waiter { return waiters.Get().(*waiter) }

// putWaiter recycles w, which must be idle: out of every queue and with
// no signal on its way (its channel is empty).
func putWaiter(w *waiter) {
	*w = waiter{ch: w.ch}
	waiters.Put(w)
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
// done or timeout fires first (false). It is called with mb.mu held and
// returns with it held, except when a sender handed w a message (w.m is
// set: see handOffLocked): then it returns true without taking mb.mu again,
// so that a receiver woken with its message does not contend for the lock
// with the sender's next send. A wake-up that races with done/timeout is consumed and reported as
// true, so the caller's loop re-checks the queue (and w.done) and no
// wake-up is lost. The caller owns w before and after.
func (mb *Mailbox) waitLocked(q *waitq, w *waiter, done <-chan struct{}, timeout <-chan time.Time) bool {
	q.push(w)
	mb.mu.Unlock()
	if done == nil && timeout == nil {
		<-w.ch
		mb.relockUnlessHanded(w)
		return true
	}
	select {
	case <-w.ch:
		mb.relockUnlessHanded(w)
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
	mb.relockUnlessHanded(w)
	return true
}

// relockUnlessHanded takes mb.mu again after w's wake-up, unless the waker
// handed w a message. The waker set w.m before signalling, so reading it
// after the wake-up needs no lock.
func (mb *Mailbox) relockUnlessHanded(w *waiter) {
	if w.m == nil {
		mb.mu.Lock()
	}
}

// ---- per-priority ring buffers ----

// ringPos locates priority p's FIFO in mb.bufs[p]: n messages from head.
type ringPos struct{ head, n uint32 }

func (mb *Mailbox) ringGrow(p int) {
	old, pos := mb.bufs[p], mb.pos[p]
	size := 2 * len(old)
	if size == 0 {
		size = 16
	}
	nb := make([]*Message, size)
	for i := range pos.n {
		nb[i] = old[(pos.head+i)&uint32(len(old)-1)]
	}
	mb.bufs[p], mb.pos[p].head = nb, 0
}

// ringPush queues m at the back (or front) of priority p's FIFO. It
// allocates only when the FIFO grows.
func (mb *Mailbox) ringPush(p int, m *Message, front bool) {
	if int(mb.pos[p].n) == len(mb.bufs[p]) {
		mb.ringGrow(p)
	}
	buf, pos := mb.bufs[p], &mb.pos[p]
	mask := uint32(len(buf) - 1)
	if front {
		pos.head = (pos.head - 1) & mask
		buf[pos.head] = m
	} else {
		buf[(pos.head+pos.n)&mask] = m
	}
	pos.n++
}

// ringPop removes the front of priority p's FIFO, which is not empty.
func (mb *Mailbox) ringPop(p int) *Message {
	buf, pos := mb.bufs[p], &mb.pos[p]
	m := buf[pos.head]
	buf[pos.head] = nil
	pos.head = (pos.head + 1) & uint32(len(buf)-1)
	pos.n--
	return m
}

// ringFilter keeps the messages of priority p for which keep is true, in
// order, and returns how many it removed.
func (mb *Mailbox) ringFilter(p int, keep func(*Message) bool) int {
	buf, pos := mb.bufs[p], &mb.pos[p]
	mask := uint32(len(buf) - 1)
	w := uint32(0)
	for i := range pos.n {
		m := buf[(pos.head+i)&mask]
		buf[(pos.head+i)&mask] = nil
		if keep(m) {
			buf[(pos.head+w)&mask] = m
			w++
		}
	}
	removed := int(pos.n - w)
	pos.n = w
	return removed
}

// ---- duplicate detection ----

// claimLocked records that mb holds m (queued or in flight) and reports
// ok false if mb already holds m or another message with m's ID; owned
// says how mb holds it (see ownsLocked).
//
// A generated ID is unique to its Message, so such a message can only
// collide with itself (sent twice) or with a message given its ID
// explicitly. The first mailbox to hold it writes its number in the owner
// bits of m's state word (owned), in the cache line a send and a receive
// touch anyway: the hot path of a generated-ID message touches no hash
// table, and a receive releases the claim with the same atomic add that
// counts the delivery. Every other message (explicit ID, or generated but
// already owned by another mailbox) goes in mb.ids, keyed by ID. An
// explicit ID of the generated form (a retry reusing an ID) is also
// looked for among the owned messages, by a scan: O(Len + InFlight), only
// for such IDs. Owner bits that already name mb are checked the same way
// before m is called a duplicate, because mailbox numbers recur after 2³²
// mailboxes: then mb holds m through mb.ids.
func (mb *Mailbox) claimLocked(m *Message) (owned, ok bool) {
	if !m.generated {
		if !mb.ids.insert(m) {
			return false, false
		}
		if isGeneratedForm(m.id) {
			if mb.holdsGeneratedLocked(m.id) {
				mb.ids.remove(m)
				return false, false
			}
			mb.genLike++
		}
		return false, true
	}
	if mb.genLike+mb.genShared > 0 && mb.ids.contains(m) {
		return false, false
	}
	if m.attempts.claim(mb.num) {
		return true, true
	}
	if m.attempts.owner() == mb.num && mb.holdsLocked(m) {
		return false, false
	}
	mb.ids.insert(m) // owned by another mailbox: a broadcast
	mb.genShared++
	return false, true
}

// ownsLocked reports whether mb holds m, which it holds, through m's owner
// bits rather than mb.ids. It reads m only when mb.ids is not empty.
func (mb *Mailbox) ownsLocked(m *Message) bool {
	return mb.ids.n == 0 || mb.ids.find(m.hash, m, true) < 0
}

// unclaimLocked forgets that mb holds m; owned says how it held it.
func (mb *Mailbox) unclaimLocked(m *Message, owned bool) {
	if owned {
		m.attempts.release(mb.num)
		return
	}
	mb.ids.remove(m)
	if m.generated {
		mb.genShared--
	} else if isGeneratedForm(m.id) {
		mb.genLike--
	}
}

// holdsLocked reports whether m itself is queued or in flight in mb, by a
// look at the flights and a scan of the queue.
func (mb *Mailbox) holdsLocked(m *Message) bool {
	if f, ok := mb.inflight[m.id]; ok && f.m == m {
		return true
	}
	for p, pos := range mb.pos {
		buf := mb.bufs[p]
		for i := range pos.n {
			if buf[(pos.head+i)&uint32(len(buf)-1)] == m {
				return true
			}
		}
	}
	return false
}

// isGeneratedForm reports whether id could be an ID generated by this
// process.
func isGeneratedForm(id string) bool {
	return len(id) > len(idPrefix) && id[len(idPrefix)] == '-' && id[:len(idPrefix)] == string(idPrefix[:])
}

// holdsGeneratedLocked reports whether a message with the generated ID id
// is queued or in flight.
func (mb *Mailbox) holdsGeneratedLocked(id string) bool {
	if f, ok := mb.inflight[id]; ok && f.m.generated {
		return true
	}
	for p, pos := range mb.pos {
		buf := mb.bufs[p]
		for i := range pos.n {
			if m := buf[(pos.head+i)&uint32(len(buf)-1)]; m.generated && m.id == id {
				return true
			}
		}
	}
	return false
}

// idset is a set of messages keyed by ID: an open-addressing hash table
// with linear probing in Robin Hood order (the entries of a probe run
// sorted by home slot, so a lookup stops early and a removal shifts back
// only the displaced entries that follow), using the hash cached in each
// message, so a send hashes nothing and compares strings only on equal
// hashes. Load factor ≤ 1/2; after warm-up nothing allocates.
type idset struct {
	slots []idslot
	n     int
}

type idslot struct {
	h uint64
	m *Message // nil: empty slot
}

// insert adds m and reports true, or reports false if a message with the
// same ID is already in the set.
func (s *idset) insert(m *Message) bool {
	if 2*(s.n+1) > len(s.slots) {
		s.resize()
	}
	mask := uint64(len(s.slots) - 1)
	h := m.hash
	i, d := h&mask, uint64(0)
	for ; ; i, d = (i+1)&mask, d+1 {
		e := &s.slots[i]
		if e.m == nil {
			e.h, e.m = h, m
			s.n++
			return true
		}
		if (i-e.h)&mask < d {
			break // an entry with m's ID would be before this one: absent
		}
		if e.h == h && (e.m == m || e.m.id == m.id) {
			return false
		}
	}
	// m takes slot i; each displaced entry moves on to the next slot
	// whose entry is closer to its home.
	cur := idslot{h: h, m: m}
	for ; ; i, d = (i+1)&mask, d+1 {
		e := &s.slots[i]
		if e.m == nil {
			*e = cur
			s.n++
			return true
		}
		if ed := (i - e.h) & mask; ed < d {
			*e, cur = cur, *e
			d = ed
		}
	}
}

// find returns the slot of m itself (exact is true) or of another message
// with m's ID, or -1. h is m.hash.
func (s *idset) find(h uint64, m *Message, exact bool) int {
	if s.n == 0 {
		return -1
	}
	mask := uint64(len(s.slots) - 1)
	for i, d := h&mask, uint64(0); ; i, d = (i+1)&mask, d+1 {
		e := &s.slots[i]
		if e.m == nil || (i-e.h)&mask < d {
			return -1
		}
		if e.m == m || (!exact && e.h == h && e.m.id == m.id) {
			return int(i)
		}
	}
}

// contains reports whether a message with m's ID is in the set.
func (s *idset) contains(m *Message) bool { return s.find(m.hash, m, false) >= 0 }

// remove deletes m itself, if present.
func (s *idset) remove(m *Message) {
	k := s.find(m.hash, m, true)
	if k < 0 {
		return
	}
	mask := uint64(len(s.slots) - 1)
	i := uint64(k)
	// Shift the displaced entries that follow back by one.
	for {
		j := (i + 1) & mask
		e := &s.slots[j]
		if e.m == nil || (j-e.h)&mask == 0 {
			break
		}
		s.slots[i] = *e
		i = j
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
