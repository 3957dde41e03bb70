package process

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/protocol"
)

// Child is a process worker: each Start launches the plugin binary anew.
// It implements [sdk.Child]. Safe for concurrent use, although a supervisor
// starts one incarnation at a time.
type Child struct {
	spec    Spec
	logger  hclog.Logger
	starts  atomic.Uint64
	current atomic.Pointer[Incarnation]
	standby atomic.Pointer[Incarnation] // a hot swap's new incarnation, until activated
	killed  atomic.Bool                 // Kill was called: no more starts, no graceful stops
}

// New returns a Child for spec. logger names the worker's log lines; the
// plugin's own stderr lines are re-emitted under logger.Named(binary name).
// A nil logger discards. New does not start anything.
func New(spec Spec, logger hclog.Logger) *Child {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Child{spec: spec.withDefaults(), logger: logger}
}

// Spec returns the child's spec with defaults filled in.
func (c *Child) Spec() Spec { return c.spec }

// Check verifies, without running it, that spec's plugin binary exists, is
// an executable regular file and matches its SHA256 pin. It returns an error
// naming the file and wrapping [ErrBadPlugin] or [ErrChecksumMismatch].
func Check(spec Spec) error {
	fi, err := os.Stat(spec.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %s does not exist (check the worker's plugin path; `make plugins` builds the bundled plugins)", ErrBadPlugin, spec.Path)
	case err != nil:
		return fmt.Errorf("%w: %v", ErrBadPlugin, err)
	case fi.IsDir():
		return fmt.Errorf("%w: %s is a directory, not a plugin binary", ErrBadPlugin, spec.Path)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%w: %s is not executable (chmod +x it)", ErrBadPlugin, spec.Path)
	}
	if len(spec.SHA256) == 0 {
		return nil
	}
	// Hashed again only when the file changed (see Sum), so restarts of a
	// pinned worker do not pay for it.
	sum, err := Sum(spec.Path)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadPlugin, spec.Path, err)
	}
	if !bytes.Equal(sum, spec.SHA256) {
		return fmt.Errorf("%w: %s has sha256 %s, the config pins %s; refusing to start it (rebuild the binary or update the pin)",
			ErrChecksumMismatch, spec.Path, hex.EncodeToString(sum), hex.EncodeToString(spec.SHA256))
	}
	return nil
}

// SocketBase returns the directory in which incarnations' socket
// directories are created for a [Spec.TempDir] of dir: dir, or
// os.TempDir() when dir is empty. It never blocks.
func SocketBase(dir string) string { return cmp.Or(dir, os.TempDir()) }

// maxTempDirLen bounds Spec.TempDir: go-plugin adds about 50 bytes
// ("/v…/plugin-dir…/plugin…") to it for the socket path, whose limit is 107.
const maxTempDirLen = 50

// baseEnv returns the few host variables every worker gets.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Start launches a new incarnation and blocks until the plugin answered
// its first RPC (the Run stream's ready message), the start failed, ctx is
// done or the start timeout elapsed. It returns an error wrapping
// [sdk.ErrStartFailed] (and [ErrBadPlugin] or [ErrChecksumMismatch] when the
// binary was refused, [ErrBadTempDir]) naming the worker and the plugin
// file; nothing it started is left running on failure. The incarnation is
// an [*Incarnation] when [Spec.HealthCheckFailures] is positive; otherwise a
// wrapper with the same Done, Err, Stop and PID but no HealthCheck.
func (c *Child) Start(ctx context.Context) (sdk.Incarnation, error) { return c.start(ctx, false) }

// StartStandby is Start for a hot swap ([sdk.Supervisor.SwapChild]): the
// incarnation runs and is ready, but its mailbox stream receives no
// messages until its Activate method is called; until then [Child.Current]
// still returns the incarnation it is to replace. It implements
// [sdk.StandbyStarter]; blocking and errors are Start's.
func (c *Child) StartStandby(ctx context.Context) (sdk.Incarnation, error) { return c.start(ctx, true) }

func (c *Child) start(ctx context.Context, standby bool) (sdk.Incarnation, error) {
	counter := &c.starts
	if c.spec.Incarnations != nil {
		counter = c.spec.Incarnations
	}
	n := counter.Add(1)
	s := c.spec
	fail := func(err error) (sdk.Incarnation, error) {
		return nil, &StartError{Worker: s.ID, Origin: s.Origin, Err: err}
	}
	if c.killed.Load() {
		return fail(errKilled)
	}
	if err := Check(s); err != nil {
		return fail(err)
	}
	binID, _ := statID(s.Path) // what this incarnation runs, for BinaryChanged
	base := SocketBase(s.TempDir)
	if len(base) > maxTempDirLen {
		return fail(fmt.Errorf("%w: socket base directory %s is %d bytes long; unix socket paths are limited to 107 bytes, so keep it within %d (set TMPDIR to a shorter directory)",
			ErrBadTempDir, base, len(base), maxTempDirLen))
	}
	dir, err := os.MkdirTemp(base, "v")
	if err != nil {
		return fail(err)
	}
	// The plugin exits by itself when this PID is gone, even if it was
	// reparented before it could watch its parent.
	env := append(baseEnv(), protocol.EnvHostPID+"="+strconv.Itoa(os.Getpid()))
	if s.LogLevel != "" {
		env = append(env, protocol.EnvLogLevel+"="+s.LogLevel)
	}
	for k, v := range s.Env {
		env = append(env, k+"="+v)
	}
	r := &procRunner{logger: c.logger, path: s.Path, args: s.Args, env: env, nice: s.Priority.Nice()}
	stderr := newRing()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  protocol.Handshake,
		VersionedPlugins: protocol.HostPlugins(),
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, _ string) (runner.Runner, error) {
			r.prepare(cmd.Env)
			return r, nil
		},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  protocol.DialOptions(),
		Logger:           quietLogger{c.logger},
		// Ours (startCtx below) covers the handshake and the Run stream's
		// ready and must be the one that fires, so the error names
		// start_timeout; go-plugin's own is a backstop.
		StartTimeout:     2*s.StartTimeout + time.Second,
		Stderr:           stderr,
		SkipHostEnv:      true,
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: dir},
	})
	inc := &Incarnation{
		owner: c, killed: &c.killed, binID: binID,
		spec: s, n: n, logger: c.logger, client: client, runner: r,
		dir: dir, stderr: stderr, done: make(chan struct{}), clientClosed: make(chan struct{}),
	}
	startCtx, cancel := context.WithTimeout(ctx, s.StartTimeout)
	defer cancel()
	type result struct {
		pc  *protocol.Client
		run *protocol.Run
		err error
	}
	ch := make(chan result, 1)
	go func() {
		rpc, err := client.Client()
		if err != nil {
			ch <- result{err: handshakeError(s.Path, err)}
			return
		}
		raw, err := rpc.Dispense(protocol.PluginName)
		if err != nil {
			ch <- result{err: fmt.Errorf("plugin %s: dispense %q: %w", s.Path, protocol.PluginName, err)}
			return
		}
		pc, ok := raw.(*protocol.Client)
		if !ok {
			ch <- result{err: fmt.Errorf("plugin %s: dispensed %T, not a Vigil worker", s.Path, raw)}
			return
		}
		req := protocol.RunRequest{WorkerID: s.ID, Incarnation: n, Config: s.Config}
		if s.Mailbox != nil {
			req.Mailbox = s.Mailbox.Handler(n, standby)
		}
		run, err := pc.Run(startCtx, req)
		if err != nil {
			err = fmt.Errorf("plugin %s: worker did not start: %w", s.Path, err)
		}
		ch <- result{pc: pc, run: run, err: err}
	}()
	var res result
	select {
	case res = <-ch:
	case <-startCtx.Done():
		r.signal(syscall.SIGKILL)
		res = <-ch // bounded: the process is dead, so the handshake or Run fails now
		if ctx.Err() != nil {
			res.err = fmt.Errorf("plugin %s: start abandoned: %w", s.Path, ctx.Err())
		} else {
			res.err = fmt.Errorf("plugin %s: not ready within %v (start_timeout): %w", s.Path, s.StartTimeout, startCtx.Err())
		}
	}
	if err := r.niceError(); err != nil {
		c.logger.Warn("cannot set the worker's priority (raising it needs CAP_SYS_NICE); running at nice 0",
			"priority", s.Priority, "nice", s.Priority.Nice(), "error", err)
	}
	if res.err != nil {
		// A plugin that died during the handshake is reported by go-plugin
		// before it is reaped: give it a moment, to report its real exit
		// status rather than the SIGKILL below.
		wait := 250 * time.Millisecond
		if startCtx.Err() != nil {
			wait = 0 // it hung: nothing to wait for
		}
		t := time.NewTimer(wait)
		select {
		case <-r.exited:
			if st := r.exitState(); st != nil {
				res.err = fmt.Errorf("%w (the process exited: %v)", res.err, st)
			}
		case <-t.C:
		}
		t.Stop()
		r.signal(syscall.SIGKILL)
		inc.closeClient()
		os.RemoveAll(dir)
		if tail := stderr.Lines(); len(tail) > 0 {
			res.err = fmt.Errorf("%w; last stderr lines:\n    %s", res.err, strings.Join(tail, "\n    "))
		}
		return fail(res.err)
	}
	inc.pc, inc.run = res.pc, res.run
	c.logger.Info("worker started", "pid", r.PID(), "incarnation", n)
	go inc.monitor()
	if s.MaxMemory > 0 {
		go inc.watchMemory()
	}
	if standby {
		c.standby.Store(inc)
	} else {
		c.current.Store(inc)
	}
	if c.killed.Load() { // Kill raced with this start
		inc.runner.signal(syscall.SIGKILL)
	}
	if s.HealthCheckFailures == 0 {
		return unchecked{inc}, nil
	}
	return inc, nil
}

// Kill SIGKILLs the process group of the current incarnation, if one runs,
// without waiting, and is final: later Starts fail and Stops kill at once
// instead of asking the worker to stop. The incarnation then ends as a
// crash. It is for an impatient shutdown (a second Ctrl-C); safe for
// concurrent use.
func (c *Child) Kill() {
	c.killed.Store(true)
	for _, inc := range []*Incarnation{c.current.Load(), c.standby.Load()} {
		if inc != nil {
			inc.runner.signal(syscall.SIGKILL)
		}
	}
}

// errKilled refuses starts after [Child.Kill].
var errKilled = errors.New("the host is killing every worker; not starting it again")

// BinaryChanged reports whether the plugin file at the spec's path is no
// longer the file the current incarnation was started from (it was
// replaced, rewritten or touched), so a hot swap would run something new.
// It is false before the first start and while the file is missing. It
// does not block (one stat).
func (c *Child) BinaryChanged() bool {
	inc := c.current.Load()
	if inc == nil {
		return false
	}
	id, err := statID(c.spec.Path)
	return err == nil && id != inc.binID
}

// Current returns the last incarnation started (which may have ended), or
// nil before the first start. Safe for concurrent use.
func (c *Child) Current() *Incarnation { return c.current.Load() }

// unchecked is an incarnation without health checks: it hides
// Incarnation.HealthCheck from the supervisor.
type unchecked struct{ i *Incarnation }

func (u unchecked) Done() <-chan struct{}           { return u.i.Done() }
func (u unchecked) Err() error                      { return u.i.Err() }
func (u unchecked) Stop(ctx context.Context) error  { return u.i.Stop(ctx) }
func (u unchecked) PID() int                        { return u.i.PID() }
func (u unchecked) Activate()                       { u.i.Activate() }
func (u unchecked) Drain(ctx context.Context) error { return u.i.Drain(ctx) }

// handshakeError makes go-plugin's start errors say what to do.
func handshakeError(path string, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "Unrecognized remote plugin message") || strings.Contains(msg, "exited before we could connect") ||
		strings.Contains(msg, "timeout while waiting for plugin to start") || strings.Contains(msg, "incompatible API version") {
		first, _, _ := strings.Cut(msg, "\n")
		if rest, ok := strings.CutPrefix(first, "Unrecognized remote plugin message:"); ok && strings.TrimSpace(rest) == "" {
			first = "plugin exited before we could connect" // go-plugin saw its stdout close first
		}
		return fmt.Errorf("plugin %s did not complete the Vigil plugin handshake (%s): is it a Vigil plugin whose main calls sdk.Serve, built for this OS and architecture?", path, first)
	}
	return fmt.Errorf("plugin %s: %w", path, err)
}
