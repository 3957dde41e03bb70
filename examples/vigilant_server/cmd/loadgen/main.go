// Command loadgen drives a running vigilant_server with a pool of
// persistent connections and prints requests/s and latency percentiles:
//
//	loadgen -addr 127.0.0.1:7070 -conns 8 -duration 5s
//
// It exits with status 1 if any request failed or went unanswered.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/vigil-run/vigil/examples/vigilant_server/loadgen"
)

func main() {
	var o loadgen.Options
	flag.StringVar(&o.Addr, "addr", "127.0.0.1:7070", "server address")
	flag.IntVar(&o.Conns, "conns", 8, "persistent connections")
	flag.DurationVar(&o.Duration, "duration", 5*time.Second, "how long to send requests")
	flag.DurationVar(&o.Timeout, "timeout", 10*time.Second, "bound of one request's round trip")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := loadgen.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(res)
	if res.Failed > 0 || res.ConnErrors > 0 || res.Sent != res.Answered {
		os.Exit(1)
	}
}
