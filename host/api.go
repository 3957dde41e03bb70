package host

import (
	"context"
	"time"

	"github.com/vigil-run/vigil/sdk"
)

// Mailbox returns the host-side mailbox named name: a worker ID's own
// mailbox, or a pool's shared one (under the pool's name). Mailboxes are
// created with the host and outlive every incarnation of their worker.
// Use it to inspect dead letters, stats, or to send with back-pressure
// ([sdk.Mailbox.SendContext]). Safe for concurrent use.
func (h *Host) Mailbox(name string) (*sdk.Mailbox, bool) {
	mb := h.bridge.box(name)
	return mb, mb != nil
}

// MailboxNames returns the names of every host-side mailbox (worker IDs
// and pool names), in no particular order.
func (h *Host) MailboxNames() []string {
	boxes := h.bridge.routes.Load().boxes
	names := make([]string, 0, len(boxes))
	for n := range boxes {
		names = append(names, n)
	}
	return names
}

// Send queues m in the mailbox named to (a worker ID or a pool name)
// without blocking. It returns an error wrapping [sdk.ErrWorkerNotFound]
// for an unknown name, or the mailbox's error ([sdk.ErrMailboxFull],
// [sdk.ErrMessageTooLarge], [sdk.ErrMessageExpired], …). ctx is accepted
// for symmetry with the worker SDK and is not waited on. Safe for
// concurrent use.
func (h *Host) Send(ctx context.Context, to string, m *sdk.Message) error {
	return h.bridge.send(to, m)
}

// Broadcast queues a copy of m in the own mailbox of every member of the
// pool named pool, without blocking. It returns the members' errors
// joined, or one wrapping [sdk.ErrWorkerNotFound] when there is no such
// pool.
func (h *Host) Broadcast(ctx context.Context, pool string, m *sdk.Message) error {
	return h.bridge.broadcast(pool, m)
}

// Call sends m to to as a request from the host (setting its correlation
// ID and reply-to [sdk.ReplyAddressHost]) and blocks until the reply
// arrives, timeout elapses (an error wrapping [sdk.ErrTimeout]; a later
// reply is dropped) or ctx is done. timeout ≤ 0 means no limit but ctx's.
// Send errors are those of [Host.Send].
func (h *Host) Call(ctx context.Context, to string, m *sdk.Message, timeout time.Duration) (*sdk.Message, error) {
	return h.bridge.call(ctx, to, m, timeout)
}

// RepliesDropped counts replies that reached the host after their caller
// had given up or was gone.
func (h *Host) RepliesDropped() uint64 { return h.bridge.repliesDropped.Load() }

// RepliesRouted counts replies to workers' calls that came through the
// host rather than straight from the answering plugin (see the README's
// direct replies): those from or to plugins of an older SDK, and those
// whose direct route failed. Safe for concurrent use;
// never blocks.
func (h *Host) RepliesRouted() uint64 { return h.bridge.repliesRouted.Load() }
