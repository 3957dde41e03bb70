package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/plugintest"
	"github.com/vigil-run/vigil/sdk/protocol"
)

func TestMain(m *testing.M) { plugintest.Main(m, main) }

func TestTicker(t *testing.T) {
	tests := map[string]struct {
		config   string
		wantErr  error
		wantLogs []string
	}{
		"ticks then returns": {config: `{"interval":"10ms","ticks":3}`, wantLogs: []string{"tick 1", "tick 2", "tick 3", "done ticking"}},
		"bad interval":       {config: `{"interval":"0s"}`, wantErr: sdk.ErrInvalidSpec},
		"unknown field":      {config: `{"intervall":"1s"}`, wantErr: sdk.ErrInvalidSpec},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := plugintest.Launch(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := p.Client.Run(ctx, protocol.RunRequest{WorkerID: "ticker", Config: []byte(tc.config)})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-r.Done():
			case <-ctx.Done():
				t.Fatal("ticker did not end")
			}
			if tc.wantErr != nil && !errors.Is(r.Err(), tc.wantErr) || tc.wantErr == nil && r.Err() != nil {
				t.Errorf("Err = %v, want %v", r.Err(), tc.wantErr)
			}
			p.Kill() // waits for the log reader
			for _, want := range tc.wantLogs {
				if !strings.Contains(p.Log.String(), want) {
					t.Errorf("host log lacks %q:\n%s", want, p.Log.String())
				}
			}
		})
	}
}
