package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/vigil-run/vigil/sdk/protocol/internal/pb"
)

// RunRequest is what the host hands a new incarnation of a worker.
type RunRequest struct {
	// WorkerID is the worker's ID, e.g. "echo" or "handlers_2".
	WorkerID string
	// Incarnation numbers the runs of one worker ID: 1, 2, …
	Incarnation uint64
	// Config is the JSON object of the worker's HCL config block; nil or
	// empty is sent as "{}".
	Config []byte

	// Mailbox, on the host side, serves the incarnation's mailbox stream:
	// [Client.Run] serves it on a fresh go-plugin broker ID and passes the
	// ID to the plugin. nil offers no mailbox.
	Mailbox MailboxHandler
	// MailboxConn, on the plugin side, is the connection to the host's
	// mailbox service (dialled once when the run starts); nil when the
	// host offers none.
	MailboxConn *MailboxConn
}

// Client is the host's handle on one plugin process, i.e. one incarnation
// of a worker. Obtain it with rpcClient.Dispense([PluginName]) and a type
// assertion to *Client. It is safe for concurrent use. A plugin process
// runs its worker once: call [Client.Run] once per Client.
type Client struct {
	rpc    pb.WorkerClient
	broker *plugin.GRPCBroker
	// exited is go-plugin's context: done once the plugin process exited.
	exited context.Context

	mu  sync.Mutex
	run *Run
}

func newClient(exited context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) *Client {
	return &Client{rpc: pb.NewWorkerClient(conn), broker: broker, exited: exited}
}

// Run is one run of the worker in a plugin process, as the host sees it.
// Its methods are safe for concurrent use.
type Run struct {
	done   chan struct{}
	cancel context.CancelFunc
	err    error
}

// Done returns a channel that is closed when the run has ended: the
// worker's Run returned (the stream's final EXITED event), or the plugin
// process died (the stream broke, about 1.6 ms after a SIGKILL here). No
// polling is involved.
func (r *Run) Done() <-chan struct{} { return r.done }

// Err reports how the run ended; it is valid once [Run.Done] is closed and
// nil before. nil means the worker's Run returned nil. A [*WorkerError]
// means it returned an error or panicked (errors.Is to a registered
// sentinel works). An error wrapping [ErrConnectionLost] means the process
// died or the connection broke; one wrapping [context.Canceled] means the
// host abandoned the run during [Client.Run].
func (r *Run) Err() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

func (r *Run) finish(err error) {
	r.err = err
	r.cancel()
	close(r.done)
}

// errRunTwice is returned by a second Client.Run.
var errRunTwice = errors.New("vigil: protocol: Run called twice on one plugin process")

// Run starts the worker with req and blocks until it has begun (the
// stream's READY event), it ended before that, or ctx is done. ctx bounds
// the start only: the returned [*Run] tracks the worker until it ends,
// with its own goroutine that exits when the stream ends.
//
// If ctx is done first, the stream is cancelled (the plugin then cancels
// the worker's context and exits) and Run returns an error wrapping
// ctx.Err(). If the worker failed or the process died before READY, Run
// returns that error ([*WorkerError] or [ErrConnectionLost]). If the worker
// returned nil before READY, Run returns a *Run that is already done.
// Calling Run a second time on one Client is an error.
func (c *Client) Run(ctx context.Context, req RunRequest) (*Run, error) {
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &Run{done: make(chan struct{}), cancel: cancel}

	c.mu.Lock()
	if c.run != nil {
		c.mu.Unlock()
		cancel()
		return nil, errRunTwice
	}
	c.run = r
	c.mu.Unlock()

	config := req.Config
	if len(config) == 0 {
		config = []byte("{}")
	}
	var mailboxID uint32
	if req.Mailbox != nil && c.broker != nil {
		mailboxID = serveMailbox(c.broker, req.Mailbox)
	}
	stream, err := c.rpc.Run(streamCtx, &pb.RunRequest{
		WorkerId:        req.WorkerID,
		Incarnation:     req.Incarnation,
		Config:          config,
		MailboxBrokerId: mailboxID,
	}, callOptions()...)
	if err != nil {
		err = c.mapErr(err)
		r.finish(err)
		return nil, fmt.Errorf("vigil: start worker %q: %w", req.WorkerID, err)
	}

	ready := make(chan struct{})
	go c.watch(r, stream, ready)

	select {
	case <-ready:
		return r, nil
	case <-r.done:
		if r.err != nil {
			return nil, fmt.Errorf("vigil: start worker %q: %w", req.WorkerID, r.err)
		}
		return r, nil
	case <-ctx.Done():
		cancel()
		<-r.done
		return nil, fmt.Errorf("vigil: start worker %q: %w", req.WorkerID, ctx.Err())
	}
}

// watch reads the Run stream until it ends and finishes r.
func (c *Client) watch(r *Run, stream pb.Worker_RunClient, ready chan<- struct{}) {
	signalled := false
	for {
		ev, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: run stream ended without an exit status", ErrConnectionLost)
			} else {
				err = c.mapErr(err)
			}
			r.finish(err)
			return
		}
		switch ev.GetKind() {
		case pb.RunEvent_KIND_READY:
			if !signalled {
				signalled = true
				close(ready)
			}
		case pb.RunEvent_KIND_EXITED:
			r.finish(fromExitStatus(ev.GetExit()))
			return
		}
	}
}

// mapErr maps a gRPC error with FromStatus and, when the plugin process has
// exited, reports a plain transport failure as ErrConnectionLost.
func (c *Client) mapErr(err error) error {
	err = FromStatus(err)
	if err == nil || errors.Is(err, ErrConnectionLost) {
		return err
	}
	var remote *RemoteError
	if c.exited.Err() != nil && !errors.As(err, &remote) {
		return fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	return err
}

// Stop asks the worker to return from its Run (the plugin cancels the
// worker's context) and blocks until the run has ended or ctx is done. It
// returns nil once the run has ended, whatever the worker returned (that is
// [Run.Err]'s business), and nil when no run was started or the process is
// already gone. When ctx is done first it returns an error wrapping
// ctx.Err(); the worker may still be running and the caller should kill the
// process.
func (c *Client) Stop(ctx context.Context) error {
	c.mu.Lock()
	r := c.run
	c.mu.Unlock()

	_, err := c.rpc.Stop(ctx, &pb.StopRequest{}, callOptions()...)
	err = c.mapErr(err)
	if r == nil {
		if err == nil || errors.Is(err, ErrConnectionLost) {
			return nil
		}
		return fmt.Errorf("vigil: stop worker: %w", err)
	}
	if err != nil && !errors.Is(err, ErrConnectionLost) {
		select {
		case <-r.done:
			return nil
		default:
			return fmt.Errorf("vigil: stop worker: %w", err)
		}
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("vigil: stop worker: %w", ctx.Err())
	}
}

// HealthCheck runs the worker's optional health check and blocks until it
// answers or ctx is done. It returns nil when the worker is healthy or has
// no health check; the worker's error (a [*RemoteError], errors.Is to
// registered sentinels works) when the check failed; an error wrapping
// [ErrConnectionLost] when the process is gone; or one wrapping
// [context.DeadlineExceeded] when ctx expired.
func (c *Client) HealthCheck(ctx context.Context) error {
	_, err := c.rpc.Health(ctx, &pb.HealthRequest{}, callOptions()...)
	return c.mapErr(err)
}
