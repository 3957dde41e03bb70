package control

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-run/vigil/host"
	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/sdk"
)

// A subscriber that does not read loses events (counted), never blocks the
// supervisors, and the EventHook still sees every event; the stream and
// the channel end when Serve returns.
func TestSubscriptionDropsWhenFullAndEndsWithServe(t *testing.T) {
	p := filepath.Join(t.TempDir(), "app.hcl")
	// The nested supervisor's worker cannot start: child_start_failed for
	// "a" (in "inner"), then for "inner" (in "x"): two events.
	body := `app "x" {
  supervisor "inner" {
    worker "a" {
      plugin = "/bin/false"
    }
  }
}`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	app, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	var hooked atomic.Int64
	h, err := host.New(app, host.Options{Output: io.Discard, EventHook: func(sdk.Event) { hooked.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	sub := h.Subscribe(1)
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Serve(ctx); err == nil {
		t.Fatal("Serve of an app whose worker cannot start returned nil")
	}
	var got []sdk.Event
	for e := range sub.Events() { // closed by Serve's return
		got = append(got, e)
	}
	dropped := sub.TakeDropped()
	if n := hooked.Load(); n < 2 || int64(len(got))+dropped != n || len(got) != 1 || dropped < 1 {
		t.Fatalf("hook saw %d events; subscriber got %d and dropped %d, want 1 and the rest", n, len(got), dropped)
	}
	if got[0].Kind != sdk.EventChildStartFailed || got[0].Child != "a" {
		t.Fatalf("first event %v, want child_start_failed of a", got[0])
	}
	if sub.TakeDropped() != 0 {
		t.Fatal("TakeDropped did not reset the count")
	}
	// After Serve: a new subscription is closed at once, and the HTTP
	// stream of a server on this host ends with no line.
	if _, ok := <-h.Subscribe(4).Events(); ok {
		t.Fatal("subscription after Serve is not closed")
	}
	srv, err := Listen(filepath.Join(filepath.Dir(p), "c.sock"), h, p)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	lines := 0
	if err := NewClient(srv.Path(), p).Events(ctx, func(Event) error { lines++; return nil }); err != nil || lines != 0 {
		t.Fatalf("Events after Serve: %v with %d lines, want nil and none", err, lines)
	}
}
