package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigil-run/vigil/sdk"
)

func ExampleMsg() {
	m, err := sdk.Msg("Request data").
		From("client_service").
		Priority(sdk.PriorityHigh).
		TTL(5 * time.Second).
		Signal(sdk.SignalHealthCheck).
		WithCorrelation("request_123").
		ReplyTo("response_queue").
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.PayloadString(), "from", m.Sender())
	fmt.Println("priority:", m.Priority(), "signal:", m.Signal(), "ttl:", m.TTL())
	fmt.Println("correlation:", m.CorrelationID(), "reply to:", m.ReplyTo())
	fmt.Println("expired:", m.IsExpired())
	// Output:
	// Request data from client_service
	// priority: high signal: healthCheck ttl: 5s
	// correlation: request_123 reply to: response_queue
	// expired: false
}

func ExampleNewMessage() {
	m, err := sdk.NewMessage("msg_id", "sender", []byte("payload"), sdk.SignalAlert, sdk.PriorityHigh, 5*time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	m.SetCorrelationID("correlation_123")
	m.SetReplyTo("response_mailbox")
	fmt.Println(m.ID(), m.Size(), "bytes")
	// Output: msg_id 50 bytes
}

func ExampleNewMailbox() {
	mb := sdk.NewMailbox(sdk.MailboxConfig{Capacity: 3})
	for _, p := range []sdk.Priority{sdk.PriorityLow, sdk.PriorityCritical, sdk.PriorityNormal} {
		if err := mb.Send(sdk.Msg(p.String()).Priority(p).MustBuild()); err != nil {
			fmt.Println(err)
		}
	}
	// Full: the sender is told; nothing is dropped.
	err := mb.Send(sdk.Msg("one too many").MustBuild())
	fmt.Println(errors.Is(err, sdk.ErrMailboxFull))
	// Lifecycle signals get through anyway.
	fmt.Println(mb.Send(sdk.Msg("stop").Signal(sdk.SignalShutdown).Priority(sdk.PriorityCritical).MustBuild()))

	for {
		m, err := mb.Receive()
		if errors.Is(err, sdk.ErrEmptyMailbox) {
			break
		}
		fmt.Println(m.PayloadString())
	}
	st := mb.Stats()
	fmt.Println("sent", st.MessagesSent, "received", st.MessagesReceived, "rejected", st.MessagesRejected, "peak", st.PeakUsage)
	// Output:
	// true
	// <nil>
	// critical
	// stop
	// normal
	// low
	// sent 4 received 4 rejected 1 peak 4
}

func ExampleMailbox_Fetch() {
	mb := sdk.NewMailbox(sdk.MailboxConfig{MaxDeliveryAttempts: 2})
	ctx := context.Background()
	_ = mb.Send(sdk.Msg("job").ID("job-1").MustBuild())

	// At-least-once: a fetched message stays in flight until acked.
	m, _ := mb.Fetch(ctx)
	fmt.Println(m.ID(), "attempt", m.Attempts(), "in flight", mb.InFlight())
	_ = mb.Nack(m.ID(), "handler failed") // back to the front of the queue

	m, _ = mb.Fetch(ctx)
	fmt.Println(m.ID(), "attempt", m.Attempts())
	_ = mb.Nack(m.ID(), "handler failed again") // MaxDeliveryAttempts reached: poison

	for _, dl := range mb.DeadLetters() {
		fmt.Println(dl.ID, dl.Reason, "poison:", dl.Poison, "replay:", mb.Replay(dl.ID) != nil)
	}
	// Output:
	// job-1 attempt 1 in flight 1
	// job-1 attempt 2
	// dl-1 max_attempts poison: true replay: true
}

func ExampleNewInbox() {
	inbox := sdk.NewInbox(sdk.MailboxConfig{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := inbox.Recv()
			if errors.Is(err, sdk.ErrInboxClosed) {
				fmt.Println("inbox closed")
				return
			}
			fmt.Println("received:", m.PayloadString())
		}
	}()
	_ = inbox.SendString("message 1")
	_ = inbox.Send([]byte("message 2"))
	inbox.Close() // queued messages are still delivered, then Recv reports ErrInboxClosed
	<-done

	m, err := inbox.RecvTimeout(10 * time.Millisecond)
	fmt.Println(m, err)
	// Output:
	// received: message 1
	// received: message 2
	// inbox closed
	// <nil> vigil: inbox closed
}
