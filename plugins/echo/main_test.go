package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/plugintest"
	"github.com/vigil-run/vigil/sdk/protocol"
)

func TestMain(m *testing.M) { plugintest.Main(m, main) }

func TestEchoLogsTicksAnswersHealthAndStops(t *testing.T) {
	p := plugintest.Launch(t)
	c, log := p.Client, p.Log
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Run(ctx, protocol.RunRequest{WorkerID: "echo", Incarnation: 1, Config: []byte(`{"greeting":"hi there","interval":"10ms"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.HealthCheck(ctx); err != nil {
		t.Errorf("HealthCheck = %v, want nil", err)
	}
	if !log.WaitLine(10*time.Second, "hi there: ", "@module=echo", "tick=2 ") {
		t.Fatalf("no second tick in the host log:\n%s", log.String())
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	<-r.Done()
	if r.Err() != nil {
		t.Errorf("Err = %v, want nil", r.Err())
	}
	p.Kill() // waits for the log reader
	for _, want := range [][]string{
		{"echo started: ", "@module=echo", `greeting="hi there"`, "interval=10ms", "incarnation=1"},
		{"echo stopping: ", "@module=echo"},
	} {
		if !log.HasLine(want...) {
			t.Errorf("host log lacks a line with %q:\n%s", want, log.String())
		}
	}
}

func TestEchoRejectsBadConfig(t *testing.T) {
	c := plugintest.Launch(t).Client
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Run(ctx, protocol.RunRequest{WorkerID: "echo", Config: []byte(`{"interval":"-1s"}`)})
	if err != nil {
		t.Fatal(err)
	}
	<-r.Done()
	if !errors.Is(r.Err(), sdk.ErrInvalidSpec) {
		t.Errorf("Err = %v, want ErrInvalidSpec", r.Err())
	}
}
