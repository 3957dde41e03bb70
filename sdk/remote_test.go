package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/sdk/protocol"
)

// idleRemote returns a remote whose stream is never touched: it is
// "open", its credits are granted, and sendMu is held so that every
// flush is left to the (absent) writer; frames accumulate in r.out.
func idleRemote(t *testing.T, msgs ...queued) *remote {
	t.Helper()
	r := newRemote("w", nil)
	r.openOnce.Do(func() {})
	r.granted.Store(true)
	r.done, r.readDone = make(chan struct{}), make(chan struct{})
	r.ackTimer = time.AfterFunc(time.Hour, r.ackTimerFired)
	r.ackTimer.Stop()
	t.Cleanup(func() { r.ackTimer.Stop() })
	r.sendMu.Lock()
	r.queue = append(r.queue, msgs...)
	return r
}

func q(t *testing.T, tag uint64, attempts int) queued {
	t.Helper()
	return queued{m: Msg("x").MustBuild(), d: delivery{tag: tag, attempts: attempts}}
}

// The inbox's bookkeeping of in-flight messages: the last Recv's message
// (kept outside the in-flight map) is auto-acked by the next Recv, and
// can be acked, nacked or asked its attempts explicitly, exactly once.
func TestRemoteInboxTracksInFlightMessages(t *testing.T) {
	tests := map[string]struct {
		run       func(t *testing.T, in *RemoteInbox, ms []*Message)
		acks      []uint64
		nackedTag []uint64
	}{
		"recv auto-acks the previous message": {
			run: func(t *testing.T, in *RemoteInbox, ms []*Message) {
				mustRecv(t, in.Recv, ms[0])
				mustRecv(t, in.Recv, ms[1])
			},
			acks: []uint64{1},
		},
		"explicit ack of the last recv is not repeated by the next": {
			run: func(t *testing.T, in *RemoteInbox, ms []*Message) {
				mustRecv(t, in.Recv, ms[0])
				if err := in.Ack(ms[0]); err != nil {
					t.Fatal(err)
				}
				if err := in.Ack(ms[0]); !errors.Is(err, ErrNotInFlight) {
					t.Fatalf("second ack: %v, want ErrNotInFlight", err)
				}
				mustRecv(t, in.Recv, ms[1])
			},
			acks: []uint64{1},
		},
		"nack of the last recv": {
			run: func(t *testing.T, in *RemoteInbox, ms []*Message) {
				mustRecv(t, in.Recv, ms[0])
				if got := in.Attempts(ms[0]); got != 2 {
					t.Fatalf("attempts %d, want 2", got)
				}
				if err := in.Nack(ms[0], "no"); err != nil {
					t.Fatal(err)
				}
				if got := in.Attempts(ms[0]); got != 0 {
					t.Fatalf("attempts after nack %d, want 0", got)
				}
				mustRecv(t, in.Recv, ms[1])
			},
			nackedTag: []uint64{1},
		},
		"fetch keeps messages until acked": {
			run: func(t *testing.T, in *RemoteInbox, ms []*Message) {
				mustRecv(t, in.Fetch, ms[0])
				mustRecv(t, in.Fetch, ms[1])
				if got := in.Attempts(ms[0]); got != 2 {
					t.Fatalf("attempts %d, want 2", got)
				}
				if err := in.Ack(ms[1]); err != nil {
					t.Fatal(err)
				}
				if err := in.Ack(ms[0]); err != nil {
					t.Fatal(err)
				}
			},
			acks: []uint64{2, 1},
		},
		"recv after fetch leaves the fetched message in flight": {
			run: func(t *testing.T, in *RemoteInbox, ms []*Message) {
				mustRecv(t, in.Fetch, ms[0])
				mustRecv(t, in.Recv, ms[1])
				in.r.ackLast(true)
				if err := in.Ack(ms[0]); err != nil {
					t.Fatal(err)
				}
			},
			acks: []uint64{2, 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := idleRemote(t, q(t, 1, 2), q(t, 2, 1))
			ms := []*Message{r.queue[0].m, r.queue[1].m}
			in := &RemoteInbox{r: r}
			tc.run(t, in, ms)
			if !slices.Equal(r.out.Acks, tc.acks) {
				t.Fatalf("acks %v, want %v", r.out.Acks, tc.acks)
			}
			var nacked []uint64
			for _, n := range r.out.Nacks {
				nacked = append(nacked, n.Tag)
			}
			if !slices.Equal(nacked, tc.nackedTag) {
				t.Fatalf("nacks %v, want %v", nacked, tc.nackedTag)
			}
		})
	}
}

// A worker that runs out of messages returns its acks at once when the
// host said it waits for them, else holds them for ackDelay at most (for
// a reply to carry them).
func TestRemoteAcksWhenIdle(t *testing.T) {
	for _, wanted := range []bool{true, false} {
		t.Run(fmt.Sprintf("wanted=%t", wanted), func(t *testing.T) {
			r := idleRemote(t, q(t, 1, 1))
			r.acksWanted = wanted
			in := &RemoteInbox{r: r}
			mustRecv(t, in.Recv, r.queue[0].m)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := in.Recv(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("recv on an empty queue: %v", err)
			}
			if !slices.Equal(r.out.Acks, []uint64{1}) {
				t.Fatalf("acks %v, want [1]", r.out.Acks)
			}
			woken := false
			select {
			case <-r.wake: // flushNow left the frame to the writer
				woken = true
			default:
			}
			if woken != wanted || r.ackArmed.Load() == wanted {
				t.Fatalf("flushed at once: %t, timer armed: %t; want flushed %t", woken, r.ackArmed.Load(), wanted)
			}
			if wanted {
				return
			}
			select {
			case <-r.wake: // the timer flushed the held ack
			case <-time.After(10 * time.Second):
				t.Fatal("the held ack was never flushed")
			}
		})
	}
}

func mustRecv(t *testing.T, recv func(context.Context) (*Message, error), want *Message) {
	t.Helper()
	m, err := recv(context.Background())
	if err != nil || m != want {
		t.Fatalf("got %v, %v; want %v", m, err, want)
	}
}

// messageFromView (the worker's decoding of a delivery, one allocation)
// builds what MessageFromEnvelope builds from the same fields, whatever
// the size, and refuses what it refuses.
func TestMessageFromView(t *testing.T) {
	long := func(n int) []byte { return []byte(strings.Repeat("p", n)) }
	tests := map[string]protocol.Envelope{
		"small":        {ID: "m-1", Sender: "host", Payload: long(10)},
		"bench-sized":  {ID: "0a1b2c3d-1f4a3", Sender: DefaultSender, Payload: long(64)},
		"all fields":   {ID: "m-2", Sender: "s", Payload: long(100), CorrelationID: "c-1", ReplyTo: "@host", Priority: int32(PriorityHigh), Signal: int32(SignalShutdown), TTL: time.Hour, Remaining: time.Minute},
		"320 bytes":    {ID: "m-3", Payload: long(317)},
		"large":        {ID: "m-4", Sender: "x", Payload: long(100_000)},
		"no payload":   {ID: "m-5"},
		"empty id":     {Sender: "x"},
		"bad priority": {ID: "m-6", Priority: 99},
		"bad signal":   {ID: "m-7", Signal: -5},
		"negative ttl": {ID: "m-8", Remaining: -1},
	}
	for name, e := range tests {
		t.Run(name, func(t *testing.T) {
			v := protocol.DeliveryView{ID: []byte(e.ID), Sender: []byte(e.Sender), Payload: slices.Clone(e.Payload),
				CorrelationID: []byte(e.CorrelationID), ReplyTo: []byte(e.ReplyTo), Priority: e.Priority,
				Signal: e.Signal, TTL: e.TTL, Remaining: e.Remaining}
			want, werr := MessageFromEnvelope(&e)
			got, gerr := messageFromView(&v)
			if (werr == nil) != (gerr == nil) || (gerr != nil && !errors.Is(gerr, ErrInvalidMessage)) {
				t.Fatalf("errors: from the view %v, from the envelope %v", gerr, werr)
			}
			if werr != nil {
				return
			}
			// The view's buffer is reused by the next frame: the message
			// must not share it.
			for _, b := range [][]byte{v.ID, v.Sender, v.Payload, v.CorrelationID, v.ReplyTo} {
				clear(b)
			}
			if got.ID() != want.ID() || got.Sender() != want.Sender() || string(got.Payload()) != string(want.Payload()) ||
				got.CorrelationID() != want.CorrelationID() || got.ReplyTo() != want.ReplyTo() || got.Priority() != want.Priority() ||
				got.Signal() != want.Signal() || got.TTL() != want.TTL() || got.Size() != want.Size() || got.Attempts() != 0 {
				t.Fatalf("got %v (%+v), want %v (%+v)", got, got, want, want)
			}
			if _, ok := got.Deadline(); ok != (e.Remaining > 0) {
				t.Fatalf("deadline set: %v, remaining %v", ok, e.Remaining)
			}
			if p := got.Payload(); len(p) > 0 {
				_ = append(p, 'x') // must copy, not write over the message's other bytes
				if got.ID() != e.ID || string(got.Payload()) != string(e.Payload) {
					t.Fatalf("an append to the payload changed the message: %v", got)
				}
			}
		})
	}
}
