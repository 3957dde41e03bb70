package sdk

import (
	"context"
	"errors"
	"time"
)

// Inbox is a channel-like wrapper around a [Mailbox], the seed's Inbox API:
// send payloads, receive messages (blocking, with a timeout, or with a
// context), close. Create one with [NewInbox]. All methods are safe for
// concurrent use.
//
// [Inbox.Close] is safe from any goroutine: every goroutine blocked in a
// receive wakes with [ErrInboxClosed]; sends after Close fail with
// [ErrInboxClosed]; messages already queued are not lost — receivers drain
// them first, then get [ErrInboxClosed].
type Inbox struct {
	mb *Mailbox
}

// NewInbox returns an open inbox backed by a new mailbox configured by cfg;
// the zero MailboxConfig gives the defaults.
func NewInbox(cfg MailboxConfig) *Inbox { return &Inbox{mb: NewMailbox(cfg)} }

// Mailbox returns the inbox's mailbox, for dead letters, fetch/ack and the
// other mailbox operations.
func (in *Inbox) Mailbox() *Mailbox { return in.mb }

// Send sends payload (kept, not copied) as a new message from
// [DefaultSender] with [PriorityNormal] and a generated ID, without
// blocking. Errors are those of [Mailbox.Send], e.g. [ErrMailboxFull] or
// [ErrInboxClosed].
func (in *Inbox) Send(payload []byte) error {
	m := &Message{sender: DefaultSender, payload: payload}
	m.init(0)
	return in.mb.Send(m)
}

// SendString is [Inbox.Send] with a string payload.
func (in *Inbox) SendString(payload string) error { return in.Send([]byte(payload)) }

// SendMessage sends m without blocking; see [Mailbox.Send] for errors.
func (in *Inbox) SendMessage(m *Message) error { return in.mb.Send(m) }

// Recv blocks until a message arrives and returns it, or returns
// [ErrInboxClosed] once the inbox is closed and drained.
func (in *Inbox) Recv() (*Message, error) { return in.mb.recv(context.Background(), nil, false, "") }

// RecvTimeout is like [Inbox.Recv] but gives up after d: it then returns a
// nil message and a nil error. d ≤ 0 polls without waiting.
func (in *Inbox) RecvTimeout(d time.Duration) (*Message, error) {
	m, err := in.mb.Receive()
	if !errors.Is(err, ErrEmptyMailbox) {
		return m, err
	}
	if d <= 0 {
		return nil, nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	m, err = in.mb.recv(context.Background(), t.C, false, "")
	if errors.Is(err, errTimedOut) {
		return nil, nil
	}
	return m, err
}

// RecvContext is like [Inbox.Recv] but also returns ctx's error when ctx is
// done first.
func (in *Inbox) RecvContext(ctx context.Context) (*Message, error) {
	return in.mb.ReceiveContext(ctx)
}

// Len returns the number of queued messages.
func (in *Inbox) Len() int { return in.mb.Len() }

// IsClosed reports whether the inbox was closed.
func (in *Inbox) IsClosed() bool { return in.mb.Closed() }

// Stats returns the mailbox statistics (see [MailboxStats]).
func (in *Inbox) Stats() MailboxStats { return in.mb.Stats() }

// Close closes the inbox; see [Mailbox.Close]. It is idempotent and never
// blocks.
func (in *Inbox) Close() { in.mb.Close() }
