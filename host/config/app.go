package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/vigil-run/vigil/sdk"
)

// App is a loaded, validated app definition: the result of [Load]. Every
// default has been filled in (see the package documentation), so the host can
// use the values as they are. An App is plain data: it is safe for concurrent
// reads, and nothing in it changes after Load returns.
type App struct {
	Name     string     // the app block's label
	File     string     // absolute path of the config file
	Preset   sdk.Preset // the preset the defaults came from
	LogLevel string     // hclog level name: trace, debug, info, warn or error
	// Metrics is the loopback host:port of the Prometheus endpoint ("":
	// none).
	Metrics string
	Root    *Supervisor
}

// Supervisor is a supervisor of the tree. The app block itself is the root
// supervisor: its Name is the app's name.
type Supervisor struct {
	Name        string
	Strategy    sdk.RestartStrategy
	MaxRestarts int       // restarts tolerated within MaxSeconds (0 = none)
	MaxSeconds  int       // the sliding intensity window, in whole seconds (≥ 1)
	Children    []Node    // workers and supervisors in file order, which is start order
	Range       hcl.Range // the block's header, for messages about it
}

// Node is one child of a [Supervisor]: exactly one of Worker and Supervisor is
// set.
type Node struct {
	Worker     *Worker
	Supervisor *Supervisor
}

// Worker is a worker block: one plugin process per ID.
type Worker struct {
	Name string
	// Pool is the pool size, or 0 when the worker is not a pool.
	Pool int
	// IDs are the child IDs the block stands for: [Name] for a single
	// worker, Name_0 … Name_{Pool-1} for a pool, in start order.
	IDs []string
	// Plugin is the absolute path of the plugin binary; it existed, was a
	// regular file and was executable when the config was loaded.
	Plugin string
	Args   []string          // command-line arguments after the binary (nil = none)
	Env    map[string]string // the worker's own environment (nil = none)

	Restart         sdk.RestartType
	ShutdownTimeout time.Duration // graceful stop → SIGTERM → SIGKILL budget
	StartTimeout    time.Duration // launch until the first RPC is answered
	Priority        sdk.ProcessPriority
	MaxMemory       uint64 // RSS limit of the process group in bytes (0 = none)
	SHA256          []byte // pinned digest of the binary (nil = not pinned)
	// Watch hot-swaps the worker when its plugin binary is replaced on
	// disk.
	Watch bool

	HealthCheck *HealthCheck // nil = no health checks
	Backoff     Backoff
	Mailbox     Mailbox
	// Config is the worker's free-form config block as a JSON object ("{}"
	// when the block is absent), for the worker to decode with
	// encoding/json.
	Config []byte

	Range hcl.Range // the block's header, for messages about it
}

// HealthCheck says how often the host asks a worker whether it is healthy.
// Failures consecutive failed or timed-out checks get the worker killed and
// restarted.
type HealthCheck struct {
	Interval time.Duration
	Timeout  time.Duration
	Failures int
}

// Backoff is the restart delay of a worker: Min for the first restart,
// doubling up to Max for consecutive ones. Zero values restart at once.
type Backoff struct {
	Min time.Duration
	Max time.Duration
	// Jitter takes a random fraction, up to Jitter, off each delay (0 … 1),
	// so that workers restarted together do not restart in lockstep.
	Jitter float64
}

// Mailbox is the configuration of a worker's host-side mailbox.
type Mailbox struct {
	Capacity            int           // messages queued before sends fail with ErrMailboxFull
	PriorityQueues      bool          // honour message priorities (false = one FIFO)
	DeadLetter          bool          // keep undeliverable messages in a dead-letter list
	DefaultTTL          time.Duration // expiry of messages sent without a TTL (0 = none)
	MaxMessageSize      uint64        // bytes; larger messages are refused
	MaxDeliveryAttempts int           // deliveries before a message is dead-lettered
}

// Workers returns every worker of the tree, depth first in file order (the
// order in which they start). It does not block and allocates a new slice.
func (a *App) Workers() []*Worker {
	var out []*Worker
	var walk func(s *Supervisor)
	walk = func(s *Supervisor) {
		for _, c := range s.Children {
			if c.Worker != nil {
				out = append(out, c.Worker)
			} else if c.Supervisor != nil {
				walk(c.Supervisor)
			}
		}
	}
	if a != nil && a.Root != nil {
		walk(a.Root)
	}
	return out
}
