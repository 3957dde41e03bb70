package sdk

import "context"

// FetchBatchAs is [Mailbox.FetchAs] for several messages at a time, with one
// lock round for the lot instead of one per message. It blocks like FetchAs
// until a first message can be fetched, ctx is done (ctx's error is
// returned) or the mailbox is closed and drained ([ErrInboxClosed]); then,
// without waiting, it also takes what else is ready, in the order FetchAs
// would have returned it, while fewer than max messages were taken and
// their total [Message.Size] is below maxBytes (maxBytes ≤ 0: no byte
// limit; the first message is taken whatever its size). max < 1 counts as
// 1. As with FetchAs, a message is returned when one is ready even if ctx
// is already done, so a done ctx takes what is there without waiting.
//
// The messages are appended to dst, which is returned (dst unchanged on
// error); each is in flight for consumer exactly as if fetched by FetchAs:
// [Mailbox.Ack], [Mailbox.AckBatch], [Mailbox.Nack] and
// [Mailbox.ReleaseConsumer] apply. Safe for concurrent use.
func (mb *Mailbox) FetchBatchAs(ctx context.Context, consumer string, max, maxBytes int, dst []*Message) ([]*Message, error) {
	if max < 1 {
		max = 1
	}
	mb.mu.Lock()
	m, owned := mb.popLocked(true)
	if m != nil {
		mb.deliverLocked(m, true, consumer, owned)
	} else {
		mb.unlockWake() // expired messages may have made room
		var err error
		if m, err = mb.recv(ctx, nil, true, consumer); err != nil {
			return dst, err
		}
		if max == 1 || (maxBytes > 0 && m.Size() >= maxBytes) {
			return append(dst, m), nil
		}
		mb.mu.Lock()
	}
	dst = append(dst, m)
	size := m.Size()
	for n := 1; n < max && (maxBytes <= 0 || size < maxBytes); n++ {
		m, owned := mb.popLocked(true)
		if m == nil {
			break
		}
		mb.deliverLocked(m, true, consumer, owned)
		dst = append(dst, m)
		size += m.Size()
	}
	mb.unlockWake()
	return dst, nil
}

// AckBatch acknowledges each in-flight message whose ID is in ids, as
// [Mailbox.Ack] would one by one, under one lock, and returns how many it
// acknowledged. IDs that are not in flight are skipped (Ack would return
// [ErrNotInFlight] for them); an ID listed twice is acknowledged once.
// Safe for concurrent use; never blocks for long.
func (mb *Mailbox) AckBatch(ids []string) int {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	n := 0
	for _, id := range ids {
		if f, ok := mb.inflight[id]; ok {
			mb.ackLocked(f)
			n++
		}
	}
	return n
}
