package process

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
)

// procRunner is the go-plugin runner.Runner of one incarnation. It replaces
// go-plugin's cmd runner so that the host controls how the process is
// forked (locked OS thread for Pdeathsig, nice value, process group) and
// learns of its exit from cmd.Wait at once, with the exit status, without
// racing go-plugin's own goroutines.
type procRunner struct {
	logger hclog.Logger
	path   string
	args   []string
	env    []string // the worker's explicit env; go-plugin's is appended
	nice   int

	cmd              *exec.Cmd
	stdoutR, stderrR *os.File

	exited chan struct{} // closed once cmd.Wait returned and the group was swept

	mu      sync.Mutex
	pid     int
	reaped  bool
	state   *os.ProcessState
	waitErr error
	niceErr error // setting the nice value failed; the process runs at nice 0
}

var _ runner.Runner = (*procRunner)(nil)

// prepare builds the exec.Cmd from go-plugin's env (magic cookie, protocol
// versions, socket dir). It is called from ClientConfig.RunnerFunc.
func (r *procRunner) prepare(pluginEnv []string) {
	cmd := exec.Command(r.path, r.args...)
	cmd.Env = append(append([]string(nil), r.env...), pluginEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r.cmd = cmd
	r.exited = make(chan struct{})
}

// Start forks the process from a goroutine locked to a fresh OS thread.
// That goroutine waits for the process and exits (taking its thread with
// it) only after the process has been reaped, so Pdeathsig fires only when
// the host itself dies.
func (r *procRunner) Start(context.Context) error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	r.cmd.Stdout, r.cmd.Stderr = outW, errW
	r.stdoutR, r.stderrR = outR, errR
	started := make(chan error, 1)
	go r.own(started)
	err = <-started
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return err
	}
	return nil
}

func (r *procRunner) own(started chan<- error) {
	runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
	if r.nice != 0 {
		// A forked process inherits its forking thread's nice value, so the
		// worker and every thread it creates run at it.
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), r.nice); err != nil {
			r.mu.Lock()
			r.niceErr = err
			r.mu.Unlock()
		}
	}
	if err := r.cmd.Start(); err != nil {
		started <- err
		return
	}
	pid := r.cmd.Process.Pid
	r.mu.Lock()
	r.pid = pid
	r.mu.Unlock()
	started <- nil
	err := r.cmd.Wait()
	// Sweep whatever the worker left in its group. The group ID cannot be
	// reused while any member lives, so this cannot hit a stranger.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	r.mu.Lock()
	r.reaped = true
	r.state = r.cmd.ProcessState
	r.waitErr = err
	r.mu.Unlock()
	close(r.exited)
	// go-plugin waits for EOF on both pipes before it calls Wait. A process
	// that left the group (setsid) may still hold them open: give the last
	// lines a moment, then close our read ends so nothing waits for it.
	time.AfterFunc(pipeGrace, func() {
		r.stdoutR.Close()
		r.stderrR.Close()
	})
}

// pipeGrace is how long the output pipes stay open after the worker was
// reaped, for lines still buffered in them.
const pipeGrace = 2 * time.Second

// signal sends sig to the process group unless the process was reaped.
func (r *procRunner) signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pid > 0 && !r.reaped {
		_ = syscall.Kill(-r.pid, sig)
	}
}

// PID returns the process ID (0 before Start).
func (r *procRunner) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pid
}

// Wait blocks until the process was reaped; go-plugin calls it once both
// pipes reached EOF.
func (r *procRunner) Wait(ctx context.Context) error {
	select {
	case <-r.exited:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.stdoutR.Close()
	r.stderrR.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waitErr
}

// Kill SIGKILLs the process group (go-plugin calls it on a failed start
// and at the end of Client.Kill).
func (r *procRunner) Kill(context.Context) error {
	r.signal(syscall.SIGKILL)
	return nil
}

func (r *procRunner) Diagnose(context.Context) string {
	return fmt.Sprintf("%s did not complete the Vigil plugin handshake: is it a Vigil plugin (its main must call sdk.Serve), built for this OS/architecture?", r.path)
}

func (r *procRunner) Stdout() io.ReadCloser { return r.stdoutR }
func (r *procRunner) Stderr() io.ReadCloser { return r.stderrR }
func (r *procRunner) Name() string          { return r.path }
func (r *procRunner) ID() string            { return strconv.Itoa(r.PID()) }

func (r *procRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *procRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }

// niceError returns why the nice value could not be set, if it could not.
func (r *procRunner) niceError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.niceErr
}

// exitStatus returns the reaped process's state (nil before exit).
func (r *procRunner) exitState() *os.ProcessState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// quietLogger is the logger handed to go-plugin: it demotes go-plugin's own
// "plugin process exited" lines to debug, because the incarnation reports
// every exit once, with its reason, and the supervisor logs it.
type quietLogger struct{ hclog.Logger }

func (q quietLogger) Info(msg string, args ...any) {
	if msg == "plugin process exited" {
		q.Logger.Debug(msg, args...)
		return
	}
	q.Logger.Info(msg, args...)
}

func (q quietLogger) Error(msg string, args ...any) {
	if msg == "plugin process exited" {
		q.Logger.Debug(msg, args...)
		return
	}
	q.Logger.Error(msg, args...)
}
