package sdk

import "errors"

// Sentinel errors. Every error returned by this package (and by the host, and
// across the plugin wire) wraps exactly one of these with %w, so callers test
// them with [errors.Is]. Messages are lowercase and prefixed "vigil:".
//
// The names follow the seed API: MailboxFull, MessageExpired, …
var (
	// ErrEmptyMailbox is returned by a non-blocking receive on an empty mailbox.
	ErrEmptyMailbox = errors.New("vigil: mailbox empty")
	// ErrMailboxFull is returned by a send when the mailbox holds Capacity
	// messages. The message was not queued; nothing is dropped silently.
	ErrMailboxFull = errors.New("vigil: mailbox full")
	// ErrMessageExpired is returned by a send whose message's TTL already
	// elapsed.
	ErrMessageExpired = errors.New("vigil: message expired")
	// ErrMessageTooLarge is returned by a send whose message is larger than
	// the mailbox's MaxMessageSize.
	ErrMessageTooLarge = errors.New("vigil: message too large")
	// ErrDuplicateMessage is returned by a send whose message ID is already
	// queued or in flight in the mailbox.
	ErrDuplicateMessage = errors.New("vigil: duplicate message")
	// ErrInboxClosed is returned by sends and receives on a closed inbox or
	// mailbox (receives return it only once the queue is drained).
	ErrInboxClosed = errors.New("vigil: inbox closed")
	// ErrInvalidMessage is returned by the message builder and by mailbox
	// operations given a malformed message (nil, empty ID, bad priority…).
	ErrInvalidMessage = errors.New("vigil: invalid message")
	// ErrDeadLetterNotFound is returned when a dead-letter ID is unknown.
	ErrDeadLetterNotFound = errors.New("vigil: dead letter not found")
	// ErrPoisonMessage is returned when replaying a dead letter that was
	// marked poison (it exhausted MaxDeliveryAttempts).
	ErrPoisonMessage = errors.New("vigil: poison message")
	// ErrNotInFlight is returned by Ack/Nack of a message that is not
	// currently in flight (already acknowledged, or never delivered).
	ErrNotInFlight = errors.New("vigil: message not in flight")

	// ErrTooManyRestarts ends a supervisor whose children restarted more than
	// MaxRestarts times within MaxSeconds. See [RestartLimitError].
	ErrTooManyRestarts = errors.New("vigil: too many restarts")
	// ErrShutdownTimeout reports a child that did not stop within its
	// ShutdownTimeout.
	ErrShutdownTimeout = errors.New("vigil: shutdown timeout")
	// ErrAlreadyMonitoring is returned by a second StartMonitoring.
	ErrAlreadyMonitoring = errors.New("vigil: already monitoring")
	// ErrChildNotFound is returned when no child has the given ID.
	ErrChildNotFound = errors.New("vigil: child not found")
	// ErrDuplicateChild is returned when adding a child whose ID is taken.
	ErrDuplicateChild = errors.New("vigil: duplicate child id")
	// ErrChildRunning is returned by DeleteChild on a running child.
	ErrChildRunning = errors.New("vigil: child is running")
	// ErrInvalidSpec is returned for a malformed ChildSpec or supervisor
	// option (empty ID, no start function, negative durations, …).
	ErrInvalidSpec = errors.New("vigil: invalid spec")
	// ErrAlreadyStarted is returned by Start on a running supervisor or app.
	ErrAlreadyStarted = errors.New("vigil: already started")
	// ErrNotStarted is returned by operations that need a running supervisor.
	ErrNotStarted = errors.New("vigil: not started")
	// ErrStartFailed reports a child that failed to start.
	ErrStartFailed = errors.New("vigil: child failed to start")
	// ErrHealthCheckFailed reports a child whose health check failed.
	ErrHealthCheckFailed = errors.New("vigil: health check failed")
	// ErrSwapFailed: a hot swap did not take place; the old incarnation
	// keeps running (see [Supervisor.SwapChild]).
	ErrSwapFailed = errors.New("vigil: swap failed")
	// ErrSwapInProgress: another swap of the same child has not finished.
	ErrSwapInProgress = errors.New("vigil: swap in progress")

	// ErrWorkerNotFound is returned when sending to a worker or pool name
	// that does not exist.
	ErrWorkerNotFound = errors.New("vigil: worker not found")
	// ErrTimeout is returned by request/reply calls that got no reply in time.
	ErrTimeout = errors.New("vigil: timeout")
)
