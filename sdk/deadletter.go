package sdk

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrDeadLettersDisabled is returned by [Mailbox.DeadLetter] on a mailbox
// configured with DisableDeadLetter.
var ErrDeadLettersDisabled = errors.New("vigil: dead letters disabled")

// Reasons a message is dead-lettered, as found in [DeadLetter.Reason].
const (
	// ReasonExpired: the message's deadline passed before it was delivered.
	ReasonExpired = "expired"
	// ReasonDeliveryFailed: a consumer could not deliver or process it
	// (set by callers through [Mailbox.DeadLetter], e.g. the plugin bridge).
	ReasonDeliveryFailed = "delivery_failed"
	// ReasonMaxAttempts: it was nacked after MaxDeliveryAttempts deliveries.
	// Such a dead letter is poison and cannot be replayed.
	ReasonMaxAttempts = "max_attempts"
	// ReasonManual: dead-lettered by [Mailbox.DeadLetter] without a reason.
	ReasonManual = "manual"
	// ReasonRejected: a consumer rejected it as invalid.
	ReasonRejected = "rejected"
)

// DeadLetter is a message a mailbox could not deliver, kept for
// inspection, replay or discard.
type DeadLetter struct {
	// ID identifies the entry ("dl-1", "dl-2", …); it is stable for the
	// entry's life and distinct from the message's own ID, which may recur.
	ID string
	// Message is the dead message.
	Message *Message
	// Reason is one of the Reason constants, or a caller's reason.
	Reason string
	// Detail is extra context, e.g. the last nack's reason of a poison
	// message.
	Detail string
	// Poison is true when the message exhausted MaxDeliveryAttempts; poison
	// messages are never replayed.
	Poison bool
	// At is when the message was dead-lettered.
	At time.Time
}

// deadLetterLocked appends a dead letter, evicting the oldest one when the
// list is full; with dead letters disabled the message is dropped. It
// returns the new entry's ID, or "".
func (mb *Mailbox) deadLetterLocked(m *Message, reason, detail string, poison bool) string {
	if !mb.deadLetter {
		mb.st.MessagesDropped++
		return ""
	}
	if len(mb.dead) >= mb.dlCap {
		copy(mb.dead, mb.dead[1:])
		mb.dead[len(mb.dead)-1] = DeadLetter{}
		mb.dead = mb.dead[:len(mb.dead)-1]
		mb.st.MessagesDropped++
	}
	mb.dlSeq++
	id := "dl-" + strconv.FormatUint(mb.dlSeq, 10)
	mb.dead = append(mb.dead, DeadLetter{ID: id, Message: m, Reason: reason, Detail: detail, Poison: poison, At: time.Now()})
	mb.st.DeadLettered++
	return id
}

// DeadLetters returns a copy of the dead-letter list, oldest first. Safe
// for concurrent use; never blocks for long.
func (mb *Mailbox) DeadLetters() []DeadLetter {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return append([]DeadLetter(nil), mb.dead...)
}

// DeadLetter moves m to the dead letters by hand with the given reason (""
// means [ReasonManual], e.g. [ReasonDeliveryFailed]) and returns the entry's
// ID. If m is in flight in this mailbox it stops being in flight (the
// consumer gives up on it; its ID is free again). It returns an error
// wrapping [ErrInvalidMessage] for a nil message, or
// [ErrDeadLettersDisabled].
func (mb *Mailbox) DeadLetter(m *Message, reason string) (string, error) {
	if m == nil {
		return "", fmt.Errorf("%w: nil message", ErrInvalidMessage)
	}
	if reason == "" {
		reason = ReasonManual
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if !mb.deadLetter {
		return "", ErrDeadLettersDisabled
	}
	if f, ok := mb.inflight[m.id]; ok && f.m == m {
		delete(mb.inflight, m.id)
		mb.unclaimLocked(m, f.owned)
		mb.sizeOut += m.Size()
	}
	return mb.deadLetterLocked(m, reason, "", false), nil
}

func (mb *Mailbox) findDeadLocked(id string) int {
	for i := range mb.dead {
		if mb.dead[i].ID == id {
			return i
		}
	}
	return -1
}

// Replay puts a dead letter back in the queue (at the back of its
// priority) and removes it from the dead letters. Its TTL is renewed (its
// own TTL, else the mailbox's DefaultTTL, counted from now; none if neither)
// and its Attempts count restarts at zero. It returns an error wrapping
// [ErrDeadLetterNotFound], [ErrPoisonMessage] (poison messages are never
// replayed), [ErrInboxClosed], [ErrMailboxFull] or [ErrDuplicateMessage]
// (its ID is queued or in flight again); on error the dead letter stays.
func (mb *Mailbox) Replay(id string) error {
	mb.mu.Lock()
	i := mb.findDeadLocked(id)
	if i < 0 {
		mb.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrDeadLetterNotFound, id)
	}
	e := mb.dead[i]
	m := e.Message
	lifecycle := m.signal.IsLifecycle()
	var err error
	switch {
	case e.Poison:
		err = fmt.Errorf("%w: dead letter %s (message %s) exhausted its delivery attempts", ErrPoisonMessage, id, m.id)
	case mb.closed:
		err = fmt.Errorf("%w: replay of %s", ErrInboxClosed, id)
	case mb.n >= mb.capacity && !lifecycle && mb.sweepDueLocked():
		// Expired queued messages made room; the sweep may have evicted
		// old dead letters, ours included.
		if i = mb.findDeadLocked(id); i < 0 {
			err = fmt.Errorf("%w: %q was evicted", ErrDeadLetterNotFound, id)
		}
	}
	if err == nil && mb.n >= mb.capacity && !lifecycle {
		err = fmt.Errorf("%w: replay of %s", mb.fullErr, id)
	}
	if err == nil {
		if _, ok := mb.claimLocked(m); !ok {
			err = fmt.Errorf("%w: replay of %s: id %q is already queued or in flight", ErrDuplicateMessage, id, m.id)
		}
	}
	if err != nil {
		mb.st.MessagesRejected++
		mb.mu.Unlock()
		return err
	}
	mb.dead = append(mb.dead[:i], mb.dead[i+1:]...)
	ttl := int64(m.ttl)
	if ttl == 0 {
		ttl = mb.defaultTTL
	}
	var d int64
	if ttl > 0 {
		d = mb.clock() + ttl
	}
	m.deadline.Store(d)
	m.attempts.Store(0)
	mb.pushLocked(m, d, false)
	mb.sizeIn += m.Size()
	mb.st.DeadLettersReplayed++
	w := mb.recvq.pop()
	ws := mb.wakeSendersLocked() // a sweep may have made room
	mb.mu.Unlock()
	signal(w)
	signal(ws)
	return nil
}

// Discard deletes a dead letter (poison or not). It returns an error
// wrapping [ErrDeadLetterNotFound] for an unknown ID.
func (mb *Mailbox) Discard(id string) error {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	i := mb.findDeadLocked(id)
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrDeadLetterNotFound, id)
	}
	mb.dead = append(mb.dead[:i], mb.dead[i+1:]...)
	mb.st.DeadLettersDiscarded++
	return nil
}
