// Package control is the operator interface of a running Vigil host: a
// small JSON-over-HTTP API served on a unix socket (mode 0600) by
// `vigil run`, and the client used by the `vigil status`, `start`, `stop`,
// `restart`, `send`, `deadletters`, `events`, `reload` and `swap` commands.
//
// The socket path is given by `--control PATH` or derived from the config
// file by [SocketPath]. The protocol is plain net/http on the socket:
//
//	GET    /v1/status                              → [Status]
//	POST   /v1/workers/{id}/start|stop|restart|swap → {}
//	POST   /v1/workers/{id}/send                   [SendRequest] → [SendResult]
//	GET    /v1/workers/{id}/deadletters            → [][DeadLetter]
//	POST   /v1/workers/{id}/deadletters/{dl}/replay → {}
//	DELETE /v1/workers/{id}/deadletters/{dl}       → {}
//	GET    /v1/events                              → [Event] lines (NDJSON stream)
//	POST   /v1/reload                              → [ReloadResult]
//
// `vigil run --control-tcp 127.0.0.1:PORT` serves the same API over TCP
// as well ([ListenTCP]): loopback only, and every request must carry
// "Authorization: Bearer TOKEN" with the token the host writes to
// [TokenPath] (mode 0600). Control commands reach it with
// `--control tcp://127.0.0.1:PORT`.
//
// Errors are returned as {"error": "..."} with a 4xx/5xx status.
package control

import (
	"strings"

	"github.com/vigil-run/vigil/host"

	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"time"
)

// Errors of the control client.
var (
	// ErrNoHost: nothing listens on the control socket.
	ErrNoHost = errors.New("vigil: no vigil host is running")
	// ErrHostRunning: a live host already serves the control socket.
	ErrHostRunning = errors.New("vigil: a vigil host is already running")
	// ErrUnauthorized: a TCP control request without the host's token.
	ErrUnauthorized = errors.New("vigil: unauthorized")
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// holds 108 bytes including the terminating NUL).
const maxSocketPath = 107

// SocketPath returns the default control socket of the config file at
// config: "<config dir>/.<config base name>.vigil.sock". When that path is
// too long for a unix socket (over 107 bytes) it falls back to
// "$XDG_RUNTIME_DIR/vigil-<hash>.sock" (os.TempDir() when XDG_RUNTIME_DIR
// is unset), where hash is the first 16 hex digits of the sha256 of the
// config's absolute path, so `run` and the other commands agree. It does
// not block and touches no file.
func SocketPath(config string) string {
	abs, err := filepath.Abs(config)
	if err != nil {
		abs = filepath.Clean(config)
	}
	p := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+".vigil.sock")
	if len(p) <= maxSocketPath {
		return p
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(dir, "vigil-"+hex.EncodeToString(sum[:8])+".sock")
}

// TokenPath returns the file in which a host running config keeps the
// bearer token of its TCP control API ([ListenTCP]): next to its socket
// (see [SocketPath]), ending in ".token" instead of ".sock".
func TokenPath(config string) string {
	return strings.TrimSuffix(SocketPath(config), ".sock") + ".token"
}

// Status is the answer of GET /v1/status: the supervision tree, depth
// first, supervisors before their children.
type Status struct {
	// PID is the host process's PID.
	PID int `json:"pid"`
	// Config is the config file the host runs (may be empty).
	Config string `json:"config,omitempty"`
	// Nodes lists supervisors and workers in tree order.
	Nodes []Node `json:"nodes"`
}

// Node kinds.
const (
	KindSupervisor = "supervisor"
	KindWorker     = "worker"
)

// Node is one supervisor or worker of the tree.
type Node struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Supervisor is the path of the parent supervisors ("main/db");
	// empty for the root.
	Supervisor string `json:"supervisor,omitempty"`
	Depth      int    `json:"depth"`
	State      string `json:"state"`
	PID        int    `json:"pid,omitempty"`
	// Uptime of the current incarnation (0 when not running).
	Uptime   Duration `json:"uptime"`
	Restarts int      `json:"restarts"`
	// LastExit is the last failure's message ("" if none).
	LastExit string `json:"last_exit,omitempty"`
	// Mailbox fields (workers only).
	Mailbox     int `json:"mailbox"`
	InFlight    int `json:"in_flight"`
	DeadLetters int `json:"dead_letters"`
	// RSSBytes is the resident set size of the worker's process (0 if
	// unknown or not running).
	RSSBytes int64  `json:"rss_bytes"`
	Plugin   string `json:"plugin,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
}

// SendRequest is the body of POST /v1/workers/{id}/send.
type SendRequest struct {
	Payload  string   `json:"payload"`
	Priority string   `json:"priority,omitempty"` // sdk.ParsePriority syntax
	TTL      Duration `json:"ttl,omitempty"`
	ID       string   `json:"id,omitempty"` // message ID; generated if empty
}

// SendResult is the answer of a send.
type SendResult struct {
	ID string `json:"id"`
}

// ReloadResult is the answer of POST /v1/reload: what was done, and the
// error of the changes that failed (empty: none).
type ReloadResult struct {
	Report host.ReloadReport `json:"report"`
	Error  string            `json:"error,omitempty"`
}

// DeadLetter is one dead letter as listed by the API.
type DeadLetter struct {
	ID        string    `json:"id"`
	MessageID string    `json:"message_id"`
	Sender    string    `json:"sender,omitempty"`
	Payload   string    `json:"payload"`
	Priority  string    `json:"priority"`
	Reason    string    `json:"reason"`
	Detail    string    `json:"detail,omitempty"`
	Poison    bool      `json:"poison,omitempty"`
	Attempts  int       `json:"attempts"`
	At        time.Time `json:"at"`
}

// Event is one line of GET /v1/events: a lifecycle event of the tree
// (Kind set), or a report that Dropped events were lost because the
// reader was too slow (only Dropped set).
type Event struct {
	Time        time.Time `json:"time,omitzero"`  // RFC 3339 with nanoseconds
	Kind        string    `json:"kind,omitempty"` // sdk.EventKind.String(), e.g. "child_exited"
	Supervisor  string    `json:"supervisor,omitempty"`
	Child       string    `json:"child,omitempty"`
	PID         int       `json:"pid,omitempty"`
	Incarnation int       `json:"incarnation,omitempty"`
	Delay       Duration  `json:"delay,omitempty"`
	Error       string    `json:"error,omitempty"`
	Dropped     int64     `json:"dropped,omitempty"`
}

// Duration is a time.Duration encoded in JSON as a Go duration string
// ("1.5s").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

type errorBody struct {
	Error string `json:"error"`
}
