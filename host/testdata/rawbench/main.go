// Command rawbench is the baseline of the mailbox bridge's benchmarks: a
// plugin that speaks the raw mailbox stream (same go-plugin broker, same
// gRPC stream, same frames) with no mailbox, no SDK inbox and no
// acknowledgement bookkeeping. For every delivery whose message ID is
// "sync" it sends back one frame acknowledging that delivery's tag; it
// ignores every other delivery.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/vigil-run/vigil/sdk/protocol"
)

type server struct{}

func (server) Run(ctx context.Context, req protocol.RunRequest, ready func()) error {
	s, err := req.MailboxConn.Open(ctx)
	if err != nil {
		return err
	}
	ready()
	for {
		d, err := s.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for i := range d.Deliveries {
			if d.Deliveries[i].Msg.ID == "sync" {
				if err := s.Send(&protocol.Up{Acks: []uint64{d.Deliveries[i].Tag}}); err != nil {
					return err
				}
			}
		}
	}
}

func (server) HealthCheck(context.Context) error { return nil }

func main() {
	if err := protocol.Serve(server{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
