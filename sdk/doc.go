// Package sdk is Vigil's library: Erlang/OTP-style messaging and supervision
// for Go, and the SDK that plugin workers are written against.
//
// # Messaging
//
// A [Message] carries a payload with a priority, an optional TTL, an
// optional [Signal], and correlation/reply-to fields for request/reply. Build
// one with [Msg]:
//
//	m, err := sdk.Msg("hello").From("client").Priority(sdk.PriorityHigh).TTL(5 * time.Second).Build()
//
// A [Mailbox] is a bounded priority queue of messages with TTL expiry,
// dead letters, size limits, duplicate-ID detection and statistics. An
// [Inbox] wraps a mailbox in a channel-like API whose Close wakes every
// blocked receiver with [ErrInboxClosed].
//
// # Supervision
//
// A Supervisor runs children and restarts them by strategy ([OneForOne],
// [OneForAll], [RestForOne]), restart type ([Permanent], [Transient],
// [Temporary]) and restart intensity; it gives up with [ErrTooManyRestarts].
// A child is anything that implements [Child]: a goroutine running a
// function, a nested supervisor, or, in the vigil host, an OS process.
//
// # Plugin workers
//
// The vigil host runs each worker of an HCL app definition as its own OS
// process. A worker author implements one method, [Worker.Run], and calls
// [Serve] from main:
//
//	type hello struct{}
//
//	func (hello) Run(ctx context.Context, rt *sdk.Runtime) error {
//		for {
//			m, err := rt.Inbox().Recv(ctx) // the worker's host-side mailbox
//			if err != nil {
//				return nil // ctx done: the host asked us to stop
//			}
//			rt.Logger().Info("got", "payload", m.PayloadString())
//		}
//	}
//
//	func main() { _ = sdk.Serve(hello{}) }
//
// [Runtime] gives the worker its ID, its config block ([Runtime.DecodeConfig]),
// a logger whose lines the host shows under the worker's name, its inbox,
// and Send, Call, Reply and Broadcast to other workers by name. Optional
// extras are detected by type assertion: [HealthChecker] and [Initializer].
//
// # Errors
//
// Every error wraps one of the package's sentinels (ErrMailboxFull,
// ErrTooManyRestarts, …); test with [errors.Is]. The same sentinels come back
// across the plugin wire.
package sdk
