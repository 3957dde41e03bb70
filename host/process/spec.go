package process

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/protocol"
)

// Spec describes one process worker. The zero value of every optional field
// is a documented default.
type Spec struct {
	// ID is the worker's ID ("echo", "handlers_2"); it names logs and
	// errors and is sent to the plugin. Required.
	ID string
	// Path is the plugin binary (absolute, or relative to the working
	// directory). Required.
	Path string
	// Origin says where the worker is defined ("config.hcl:12,3-17"); start
	// errors mention it. Optional.
	Origin string
	// Args are the plugin's command-line arguments (without argv[0]).
	Args []string
	// Env is the worker's environment, added after PATH, HOME, TMPDIR and
	// LANG taken from the host. The host's other variables are not passed.
	Env map[string]string
	// LogLevel is the plugin's log level, passed as $VIGIL_LOG_LEVEL
	// (unless Env sets it); "" leaves the plugin's default (info).
	LogLevel string
	// Config is the worker's JSON config object; nil sends "{}".
	Config []byte
	// SHA256, when set, pins the binary: a start whose binary hashes to
	// anything else fails with [ErrChecksumMismatch] before running it.
	SHA256 []byte
	// StartTimeout bounds one start: fork, handshake, connect and the
	// worker's ready message. Default 10 s.
	StartTimeout time.Duration
	// ShutdownTimeout bounds how long the process may take to exit after
	// its worker returned by itself, before it is killed. (A supervisor's
	// Stop passes its own deadline.) Default 5 s.
	ShutdownTimeout time.Duration
	// Priority becomes the process's nice value ([sdk.ProcessPriority.Nice]).
	Priority sdk.ProcessPriority
	// MaxMemory is the RSS limit of the process group in bytes; 0 = none.
	MaxMemory uint64
	// MemoryCheckInterval is how often the RSS is sampled. Default and
	// maximum 1 s.
	MemoryCheckInterval time.Duration
	// HealthCheckFailures enables health checks when positive: it is how
	// many consecutive failed checks make the incarnation's HealthCheck
	// report a failure. 0 disables them: the incarnations Start returns then
	// do not implement [sdk.HealthChecker], so a monitoring supervisor does
	// not check them.
	HealthCheckFailures int
	// Mailbox, when set, connects the incarnations to the worker's
	// host-side mailbox. nil: no mailbox.
	Mailbox Mailbox
	// Incarnations, when set, numbers the incarnations (each start adds
	// one): Childs that replace one another for the same worker (a reload)
	// share it, so an incarnation number never recurs for a worker ID —
	// the mailbox bridge names its consumers by it. nil: the Child's own
	// counter, from 1.
	Incarnations *atomic.Uint64
	// TempDir is where per-incarnation socket directories are created.
	// Default os.TempDir(). At most 50 bytes long (unix socket paths are
	// limited to 107 bytes), else Start fails with [ErrBadTempDir].
	TempDir string
}

// Mailbox connects a worker's incarnations to its host-side mailbox (the
// host's bridge). Its methods must be safe for concurrent use and must not
// block.
type Mailbox interface {
	// Handler returns the handler of the mailbox stream of incarnation n
	// (see [protocol.RunRequest.Mailbox]), which the host serves to the
	// plugin through the go-plugin broker. A standby incarnation (a hot
	// swap's new one) receives no messages until Activate(n).
	Handler(n uint64, standby bool) protocol.MailboxHandler
	// Activate makes incarnation n the one messages are delivered to:
	// every other incarnation of the worker stops receiving new ones (it
	// keeps those it holds until it acknowledges them or ends).
	Activate(n uint64)
	// Drain blocks until incarnation n holds no unacknowledged message
	// (it ended, or acknowledged or nacked everything it was given), or
	// ctx is done (ctx.Err()). A hot swap calls it on the replaced
	// incarnation before stopping it, so that it finishes its work.
	Drain(ctx context.Context, n uint64) error
}

// MailboxFunc adapts a function returning the stream handler of
// incarnation n to a [Mailbox] without hot-swap support: a standby
// incarnation is served like any other and Activate does nothing.
type MailboxFunc func(n uint64) protocol.MailboxHandler

// Handler calls f(n).
func (f MailboxFunc) Handler(n uint64, _ bool) protocol.MailboxHandler { return f(n) }

// Activate does nothing.
func (MailboxFunc) Activate(uint64) {}

// Drain returns nil at once.
func (MailboxFunc) Drain(context.Context, uint64) error { return nil }

func (s Spec) withDefaults() Spec {
	if s.StartTimeout <= 0 {
		s.StartTimeout = 10 * time.Second
	}
	if s.ShutdownTimeout <= 0 {
		s.ShutdownTimeout = 5 * time.Second
	}
	if s.MemoryCheckInterval <= 0 || s.MemoryCheckInterval > time.Second {
		s.MemoryCheckInterval = time.Second
	}
	if s.HealthCheckFailures < 0 {
		s.HealthCheckFailures = 0
	}
	if len(s.Config) == 0 {
		s.Config = []byte("{}")
	}
	return s
}
