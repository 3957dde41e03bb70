package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/vigil-run/vigil/sdk"
)

func ExampleSupervise() {
	running := make(chan struct{})
	sup, err := sdk.Supervise().
		Child("worker", func(ctx context.Context) error {
			fmt.Println("worker running")
			close(running)
			<-ctx.Done()
			fmt.Println("worker stopping")
			return nil
		}).
		Strategy(sdk.OneForAll).MaxRestarts(5).MaxSeconds(30).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := sup.Start(); err != nil {
		fmt.Println(err)
		return
	}
	<-running
	fmt.Println("active:", sup.Stats().ActiveChildren)
	if err := sup.Stop(); err != nil {
		fmt.Println(err)
	}
	fmt.Println("active:", sup.Stats().ActiveChildren)
	// Output:
	// worker running
	// active: 1
	// worker stopping
	// active: 0
}

func ExampleNewSupervisor() {
	second := make(chan struct{})
	runs := 0
	sup := sdk.NewSupervisor(sdk.SupervisorOptions{
		Name:        "example",
		MaxRestarts: 3,
		MaxSeconds:  5,
		Backoff:     sdk.NoBackoff,
		EventHook: func(e sdk.Event) {
			if e.Kind == sdk.EventChildExited || e.Kind == sdk.EventChildRestarting {
				fmt.Println(e)
			}
		},
	})
	err := sup.AddChild(sdk.ChildSpec{
		ID:      "flaky",
		Restart: sdk.Transient,
		Start: func(ctx context.Context) error {
			runs++ // incarnations never overlap
			if runs == 1 {
				return errors.New("first run fails")
			}
			close(second)
			<-ctx.Done()
			return nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := sup.Start(); err != nil {
		fmt.Println(err)
		return
	}
	<-second
	_ = sup.Stop()
	st, _ := sup.FindChild("flaky")
	fmt.Println("restarts:", st.Restarts)
	// Output:
	// supervisor "example": child "flaky" exited: first run fails
	// supervisor "example": child "flaky" restarting in 0s
	// restarts: 1
}

func ExampleApp() {
	done := make(chan struct{})
	app := sdk.NewAppWithPreset(sdk.PresetTesting).LogOutput(io.Discard).
		Worker("echo", func(ctx context.Context) error {
			m, err := sdk.InboxFromContext(ctx).RecvContext(ctx)
			if err != nil {
				return nil
			}
			fmt.Println("echo:", m.PayloadString())
			close(done)
			<-ctx.Done()
			return nil
		})
	if err := app.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer app.Shutdown()
	m, _ := sdk.Msg("hello").Build()
	if err := app.Send("echo", m); err != nil {
		fmt.Println(err)
	}
	<-done
	// Output: echo: hello
}
