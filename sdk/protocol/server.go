package protocol

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigil-run/vigil/sdk/protocol/internal/pb"
)

// Server is the plugin side of the protocol: what [Serve] serves. Package
// sdk implements it around the author's Worker; authors do not implement it
// themselves.
type Server interface {
	// Run runs the worker and blocks until it is done. It must call ready
	// once, when the worker has begun (calls after the first, and calls
	// after Run returned, are ignored). ctx is cancelled when the host
	// calls Stop, abandons the run, closes the connection, or dies. A panic
	// is recovered by Serve only to report it.
	Run(ctx context.Context, req RunRequest, ready func()) error
	// HealthCheck reports the worker's health: nil is healthy. It may be
	// called concurrently with Run and with itself.
	HealthCheck(ctx context.Context) error
}

// Process exit codes of a plugin served by [Serve].
const (
	// ExitOK: the worker's Run returned nil, or no run was started.
	ExitOK = 0
	// ExitError: the worker's Run returned an error, did not return in time
	// after the host went away, or the binary was not launched by a host.
	ExitError = 1
	// ExitPanic: the worker's Run panicked (Go's own exit status for an
	// unrecovered panic is also 2).
	ExitPanic = 2
)

// Timings of the plugin process's life; see Serve.
const (
	parentPollInterval = 250 * time.Millisecond
	exitAckTimeout     = time.Second
	stopGrace          = time.Second
	exitFallback       = 3 * time.Second
)

// ServeOpt is an option for [Serve]. An option that returns an error makes
// Serve return that error before doing anything.
type ServeOpt func(*serveConfig) error

type serveConfig struct {
	logger hclog.Logger
}

// WithLogger makes Serve log (and go-plugin log) through l instead of
// [NewLogger]. l must write hclog JSON to the process's original standard
// error for the host to re-emit the lines.
func WithLogger(l hclog.Logger) ServeOpt {
	return func(c *serveConfig) error {
		if l == nil {
			return errors.New("vigil: protocol: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// Serve runs the plugin server for srv and does not return when launched
// by a Vigil host: it ends the process. It returns only an error from opts,
// or an error for a nil srv.
//
// What it does: go-plugin's plugin.Serve with [Handshake], VersionedPlugins
// {[ProtocolVersion]: [PluginName]}, gRPC only, max message sizes raised to
// [MaxMessageSize], and the logger ([NewLogger] unless [WithLogger]).
// Without the host's magic cookie in the environment, go-plugin prints that
// the binary is a plugin and exits with status 1.
//
// Process life:
//   - The host's Run call runs srv.Run once. When it returns, the host gets
//     the final EXITED status on the Run stream, the server stops and the
//     process exits with [ExitOK] (nil) or [ExitError] (error; logged). A
//     panic in srv.Run is recovered only to report it: its value and stack
//     are logged, sent to the host, and the process exits with [ExitPanic].
//   - The host's Stop call, or the host abandoning the Run stream, cancels
//     srv.Run's context; the process then exits as above once Run returns.
//   - When the host closes the connection (go-plugin's Kill) or dies (the
//     parent PID changes or $VIGIL_HOST_PID is gone; checked every 250 ms),
//     Run's context is cancelled, Run gets one second to return, then the
//     process exits (with ExitError if Run did not return).
//
// Panics in goroutines other than Run's crash the process (Go exits with
// status 2 and its stack on stderr); the host sees the Run stream break.
func Serve(srv Server, opts ...ServeOpt) error {
	if srv == nil {
		return errors.New("vigil: protocol: Serve: nil Server")
	}
	var cfg serveConfig
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return err
		}
	}
	if cfg.logger == nil {
		cfg.logger = NewLogger()
	}
	exit := os.Exit
	if path := os.Getenv(EnvCPUProfile); path != "" {
		if stop, err := startCPUProfile(path); err != nil {
			cfg.logger.Warn("cannot write the CPU profile", "path", path, "error", err)
		} else {
			exit = func(code int) { stop(); os.Exit(code) }
		}
	}
	s := newServer(srv, cfg.logger, exit)
	if os.Getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue {
		go s.watchParent(envHostPID(), os.Getppid())
	}

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			ProtocolVersion: {PluginName: &WorkerPlugin{server: s}},
		},
		GRPCServer: s.newGRPCServer,
		Logger:     cfg.logger,
	})

	// The gRPC server stopped: the run ended, the host closed the
	// connection, or the host died.
	code := s.awaitRun()
	s.logger.Debug("plugin server stopped; exiting", "exit_code", code)
	s.exitWith(code)
	return nil
}

// EnvCPUProfile names the environment variable that makes [Serve] write a
// CPU profile of the plugin process (pprof format) to the file it names,
// from start to exit. For performance work only (the benchmarks set it in
// the worker's env block when asked to); a profile is lost if the
// process is killed.
const EnvCPUProfile = "VIGIL_CPUPROFILE"

// startCPUProfile starts profiling into the file path and returns the
// function that ends the profile and closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// server implements pb.WorkerServer around a Server.
type server struct {
	pb.UnimplementedWorkerServer

	impl   Server
	logger hclog.Logger
	exit   func(code int)

	runCtx    context.Context
	cancelRun context.CancelFunc
	runDone   chan struct{} // closed when impl.Run returned; code is set before

	mu       sync.Mutex
	broker   *plugin.GRPCBroker
	started  bool
	grpc     *grpc.Server
	stopping bool // stopServing was called
	code     int

	stopOnce sync.Once
	exitOnce sync.Once
}

func newServer(impl Server, logger hclog.Logger, exit func(int)) *server {
	ctx, cancel := context.WithCancel(context.Background())
	return &server{
		impl:      impl,
		logger:    logger,
		exit:      exit,
		runCtx:    ctx,
		cancelRun: cancel,
		runDone:   make(chan struct{}),
	}
}

func (s *server) newGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts, serverOptions()...)
	g := grpc.NewServer(opts...)
	s.mu.Lock()
	s.grpc = g
	stopping := s.stopping
	s.mu.Unlock()
	if stopping {
		// The host went away before the server existed: stopped before
		// it serves, its Serve returns at once.
		go g.Stop()
	}
	return g
}

// Run implements the Run RPC.
func (s *server) Run(req *pb.RunRequest, stream pb.Worker_RunServer) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return status.Error(codes.FailedPrecondition, "vigil: worker already ran in this process")
	}
	s.started = true
	s.mu.Unlock()

	// The host abandoning the stream (or the connection closing) stops the
	// worker.
	unlink := context.AfterFunc(stream.Context(), s.cancelRun)
	defer unlink()

	var readyOnce sync.Once
	ready := func() {
		readyOnce.Do(func() {
			if err := stream.Send(&pb.RunEvent{Kind: pb.RunEvent_KIND_READY}); err != nil {
				s.logger.Debug("sending ready", "error", err)
			}
		})
	}
	panicked, err := s.call(req, ready)
	readyOnce.Do(func() {}) // no READY after this point

	code := ExitOK
	switch {
	case panicked:
		code = ExitPanic
	case err != nil:
		code = ExitError
		s.logger.Error("worker returned an error", "error", err)
	default:
		s.logger.Debug("worker returned")
	}
	s.mu.Lock()
	s.code = code
	s.mu.Unlock()
	close(s.runDone)

	ev := &pb.RunEvent{Kind: pb.RunEvent_KIND_EXITED, Exit: exitStatus(err, panicked, code)}
	if serr := stream.Send(ev); serr == nil {
		// Wait for the host to have read EXITED (it then cancels the
		// stream) so that exiting cannot lose it.
		t := time.NewTimer(exitAckTimeout)
		select {
		case <-stream.Context().Done():
		case <-t.C:
		}
		t.Stop()
	} else {
		s.logger.Debug("sending exit status", "error", serr)
	}
	s.stopServing()
	return nil
}

func (s *server) setBroker(b *plugin.GRPCBroker) {
	s.mu.Lock()
	s.broker = b
	s.mu.Unlock()
}

// dialMailbox dials the host's mailbox service once, at once (a broker ID
// serves one Dial, and only within 5 s of the host's Accept).
func (s *server) dialMailbox(id uint32) *MailboxConn {
	s.mu.Lock()
	b := s.broker
	s.mu.Unlock()
	if id == 0 || b == nil {
		return nil
	}
	conn, err := b.DialWithOptions(id, DialOptions()...)
	if err != nil {
		s.logger.Error("cannot dial the host's mailbox service; the worker runs without a mailbox", "error", err)
		return nil
	}
	return &MailboxConn{conn: conn}
}

// call runs impl.Run, recovering a panic only to report it.
func (s *server) call(req *pb.RunRequest, ready func()) (panicked bool, err error) {
	mc := s.dialMailbox(req.GetMailboxBrokerId())
	defer mc.close()
	defer func() {
		if v := recover(); v != nil {
			s.logger.Error("worker panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			panicked = true
			if e, ok := v.(error); ok {
				err = e
			} else {
				err = fmt.Errorf("panic: %v", v)
			}
		}
	}()
	return false, s.impl.Run(s.runCtx, RunRequest{
		WorkerID:    req.GetWorkerId(),
		Incarnation: req.GetIncarnation(),
		Config:      req.GetConfig(),
		MailboxConn: mc,
	}, ready)
}

// Stop implements the Stop RPC: cancel the run, wait for it to return.
func (s *server) Stop(ctx context.Context, _ *pb.StopRequest) (*pb.StopResponse, error) {
	s.cancelRun()
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return &pb.StopResponse{}, nil
	}
	select {
	case <-s.runDone:
		return &pb.StopResponse{}, nil
	case <-ctx.Done():
		return nil, ToStatus(fmt.Errorf("vigil: worker did not return: %w", ctx.Err()))
	}
}

// Health implements the Health RPC.
func (s *server) Health(ctx context.Context, _ *pb.HealthRequest) (_ *pb.HealthResponse, err error) {
	defer func() {
		if v := recover(); v != nil {
			s.logger.Error("health check panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "health check panicked: %v", v)
		}
	}()
	if err := s.impl.HealthCheck(ctx); err != nil {
		return nil, ToStatus(err)
	}
	return &pb.HealthResponse{}, nil
}

// stopServing stops the gRPC server, which makes plugin.Serve return (and
// remove its socket); Serve then exits the process.
func (s *server) stopServing() {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		g := s.grpc
		s.stopping = true
		s.mu.Unlock()
		if g != nil {
			go g.Stop()
		}
		time.AfterFunc(exitFallback, func() {
			s.logger.Warn("plugin server did not stop; exiting")
			s.exitWith(ExitError)
		})
	})
}

// awaitRun cancels the run and returns the exit code once it has returned,
// ExitError if it does not return within stopGrace, ExitOK if none started.
func (s *server) awaitRun() int {
	s.cancelRun()
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return ExitOK
	}
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-s.runDone:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.code
	case <-t.C:
		s.logger.Warn("worker did not return after the host went away; exiting", "waited", stopGrace)
		return ExitError
	}
}

// watchParent ends the process when the host dies: an idle plugin would
// otherwise survive a SIGKILLed host with ppid 1 (go-plugin #210). The host
// is gone when the parent PID changes, or when the host PID given in
// $VIGIL_HOST_PID no longer exists (which also covers a host that died
// before the watch began, and a wrapper process between host and plugin).
func (s *server) watchParent(hostPID, ppid int) {
	t := time.NewTicker(parentPollInterval)
	defer t.Stop()
	for ; ; <-t.C {
		if os.Getppid() != ppid || (hostPID > 0 && processGone(hostPID)) {
			s.logger.Warn("host process is gone; stopping the worker", "host_pid", hostPID, "parent_pid", ppid)
			s.cancelRun()
			s.stopServing()
			return
		}
	}
}

// envHostPID returns $VIGIL_HOST_PID, or 0 if unset or malformed.
func envHostPID() int {
	pid, err := strconv.Atoi(os.Getenv(EnvHostPID))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

func (s *server) exitWith(code int) {
	s.exitOnce.Do(func() { s.exit(code) })
}
