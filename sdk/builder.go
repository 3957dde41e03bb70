package sdk

import (
	"fmt"
	"time"
)

// Builder builds messages with a fluent API; start one with [Msg]:
//
//	m, err := sdk.Msg("ping").From("client").Priority(sdk.PriorityHigh).TTL(5 * time.Second).Build()
//
// The setters may be called in any order; the last call of a setter wins.
// A builder is reusable: each [Builder.Build] returns a new message with a
// fresh generated ID (unless [Builder.ID] fixed one) whose TTL counts from
// that Build. A Builder is not safe for concurrent use.
type Builder struct {
	payload       []byte
	sender        string
	id            string
	correlationID string
	replyTo       string
	ttl           time.Duration
	priority      Priority
	signal        Signal
}

// Msg starts a [Builder] for a message carrying payload, a string or a byte
// slice. A byte slice is kept, not copied (do not modify it afterwards); a
// string is copied once. Defaults: sender [DefaultSender], [PriorityNormal],
// no TTL, no signal, a generated ID.
func Msg[P ~string | ~[]byte](payload P) *Builder {
	return &Builder{payload: []byte(payload), sender: DefaultSender}
}

// From sets the sender.
func (b *Builder) From(sender string) *Builder { b.sender = sender; return b }

// Priority sets the priority.
func (b *Builder) Priority(p Priority) *Builder { b.priority = p; return b }

// TTL sets the time-to-live; 0 means none. It counts from Build.
func (b *Builder) TTL(d time.Duration) *Builder { b.ttl = d; return b }

// Signal attaches a signal.
func (b *Builder) Signal(s Signal) *Builder { b.signal = s; return b }

// WithCorrelation sets the correlation ID used to match replies to requests.
func (b *Builder) WithCorrelation(id string) *Builder { b.correlationID = id; return b }

// ReplyTo sets the address replies should go to.
func (b *Builder) ReplyTo(addr string) *Builder { b.replyTo = addr; return b }

// ID fixes the message ID instead of generating one. Every message built
// afterwards has this ID, so a mailbox rejects all but one of them while
// the first is queued ([ErrDuplicateMessage]). "" restores generated IDs.
func (b *Builder) ID(id string) *Builder { b.id = id; return b }

// Build returns a new message. It returns an error wrapping
// [ErrInvalidMessage] for an unknown priority or signal or a negative TTL.
// It never blocks; a built message costs one allocation.
func (b *Builder) Build() (*Message, error) {
	if err := validateMessage(b.priority, b.signal, b.ttl); err != nil {
		return nil, err
	}
	sender := b.sender
	if sender == "" {
		sender = DefaultSender
	}
	m := &Message{
		id:            b.id,
		sender:        sender,
		payload:       b.payload,
		correlationID: b.correlationID,
		replyTo:       b.replyTo,
		ttl:           b.ttl,
		priority:      b.priority,
		signal:        b.signal,
	}
	m.init(0)
	return m, nil
}

// MustBuild is like [Builder.Build] but panics on an invalid message. Use it
// for messages whose fields are constants.
func (b *Builder) MustBuild() *Message {
	m, err := b.Build()
	if err != nil {
		panic(fmt.Sprintf("sdk: Builder.MustBuild: %v", err))
	}
	return m
}
