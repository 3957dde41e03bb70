// Command badplugin is a plugin binary that fails the go-plugin handshake
// on purpose, for the host's bad-input matrix (host/badinput_test.go).
//
// Usage (as a worker's args): badplugin MODE [FLAG_FILE]
//
//	cookie   serves with the Vigil protocol version but another magic cookie
//	         value (a plugin of another application, or of an incompatible
//	         Vigil build): go-plugin's Serve says "This binary is a plugin"
//	         on stderr and exits 1 before any handshake line
//	version  serves with the Vigil magic cookie but only protocol version
//	         99: the host refuses the handshake line it prints
//	crash    prints a line on stderr and exits with status 3 before the
//	         handshake
//	hang     prints a line on stderr and then never completes the handshake
//
// With FLAG_FILE, the mode applies only while that file exists; otherwise
// the binary is a healthy Vigil worker that idles until it is stopped. That
// lets a test make a worker's restarts (not its first start) misbehave.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/protocol"
)

// badVersion is a protocol version no Vigil host speaks.
const badVersion = 99

func main() {
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	if len(os.Args) > 2 {
		if _, err := os.Stat(os.Args[2]); err != nil {
			serveHealthy()
			return
		}
	}
	switch mode {
	case "cookie":
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig: plugin.HandshakeConfig{
				ProtocolVersion:  protocol.ProtocolVersion,
				MagicCookieKey:   protocol.Handshake.MagicCookieKey,
				MagicCookieValue: "not-the-vigil-cookie",
			},
			VersionedPlugins: map[int]plugin.PluginSet{protocol.ProtocolVersion: {protocol.PluginName: stub{}}},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
	case "version":
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  plugin.HandshakeConfig{ProtocolVersion: badVersion, MagicCookieKey: protocol.Handshake.MagicCookieKey, MagicCookieValue: protocol.Handshake.MagicCookieValue},
			VersionedPlugins: map[int]plugin.PluginSet{badVersion: {protocol.PluginName: stub{}}},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
	case "crash":
		fmt.Fprintln(os.Stderr, "badplugin: crashing before the handshake as configured")
		os.Exit(3)
	case "hang":
		fmt.Fprintln(os.Stderr, "badplugin: hanging before the handshake as configured")
		// Not synchronisation: the process must simply never print its
		// handshake line. The host kills it at its start timeout.
		time.Sleep(24 * time.Hour)
	default:
		fmt.Fprintf(os.Stderr, "badplugin: unknown mode %q (want cookie, version, crash or hang)\n", mode)
		os.Exit(2)
	}
	os.Exit(1) // plugin.Serve returned: it could not serve
}

// serveHealthy runs a Vigil worker that idles until stopped.
func serveHealthy() {
	if err := sdk.Serve(idle{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type idle struct{}

func (idle) Run(ctx context.Context, _ *sdk.Runtime) error {
	<-ctx.Done()
	return nil
}

// stub is a gRPC plugin that registers nothing: the handshake fails before
// any RPC.
type stub struct{ plugin.NetRPCUnsupportedPlugin }

func (stub) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }

func (stub) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, fmt.Errorf("badplugin: not a client")
}
