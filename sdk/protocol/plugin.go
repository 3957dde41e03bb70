package protocol

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/vigil-run/vigil/sdk/protocol/internal/pb"
)

// ProtocolVersion is the version of the worker protocol spoken by this
// package. It keys [HostPlugins] and the plugin side's VersionedPlugins, so a
// host and a plugin built against different versions refuse each other at
// the handshake instead of failing at the first RPC.
const ProtocolVersion = 1

// PluginName is the name under which the worker plugin is dispensed:
// rpcClient.Dispense(PluginName) returns a [*Client].
const PluginName = "worker"

// MaxMessageSize is the largest gRPC message, in bytes, that host and plugin
// accept in either direction (gRPC's default is 4 MiB). The plugin's server
// is configured with it by [Serve]; the host gets it from [DialOptions] and
// from the call options [Client] adds to every call.
const MaxMessageSize = 64 << 20

// EnvLogLevel names the environment variable from which a plugin's default
// logger (see [NewLogger]) takes its level ("trace", "debug", "info",
// "warn", "error"; "info" when unset or unknown). The host sets it in the
// worker's environment.
const EnvLogLevel = "VIGIL_LOG_LEVEL"

// EnvHostPID names the environment variable in which the host passes its
// PID to the plugin (set by [NewClientConfig]). Besides watching its parent
// PID, the plugin's parent watch exits when that process no longer exists,
// so a host that died before the plugin began watching, or a host that
// started the plugin through a wrapper process, is still noticed.
const EnvHostPID = "VIGIL_HOST_PID"

// Handshake is the go-plugin handshake shared by the host and every Vigil
// plugin. Its magic cookie (VIGIL_PLUGIN=…) is set by the host in the
// plugin's environment; a plugin binary run any other way prints a message
// saying it is a plugin and exits with status 1.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "VIGIL_PLUGIN",
	MagicCookieValue: "b7c1f0e2-vigil-worker-9d4a",
}

// HostPlugins returns the VersionedPlugins map the host passes to
// plugin.ClientConfig. It returns a new map on each call.
func HostPlugins() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		ProtocolVersion: {PluginName: &WorkerPlugin{}},
	}
}

// windowSize is the static HTTP/2 flow-control window of every stream
// and connection between host and plugin. A static window turns off
// gRPC's bandwidth-delay estimation, which otherwise answers nearly every
// data frame of a request/reply exchange with a PING and its ACK: two
// more frames, and a wake-up of each process, per message on the wire.
// 4 MiB is past what the estimation reaches on a local socket.
const windowSize = 4 << 20

// DialOptions returns the gRPC dial options the host passes as
// plugin.ClientConfig.GRPCDialOptions, and the plugin uses to dial the
// host's mailbox service: message size limits raised to [MaxMessageSize]
// in both directions, and a static flow-control window (no BDP pings).
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(callOptions()...),
		grpc.WithStaticStreamWindowSize(windowSize),
		grpc.WithStaticConnWindowSize(windowSize),
	}
}

// serverOptions are the options of the gRPC servers of both sides (the
// plugin's, and the host's mailbox service), matching [DialOptions].
func serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.StaticStreamWindowSize(windowSize), grpc.StaticConnWindowSize(windowSize),
	}
}

func callOptions() []grpc.CallOption {
	return []grpc.CallOption{
		grpc.MaxCallRecvMsgSize(MaxMessageSize),
		grpc.MaxCallSendMsgSize(MaxMessageSize),
	}
}

// NewClientConfig returns the plugin.ClientConfig recommended for launching
// one incarnation of a worker plugin: cmd (a fresh *exec.Cmd per
// incarnation, its Env set explicitly), [Handshake], [HostPlugins], gRPC
// only, SkipHostEnv (so the host's environment does not override the
// worker's), [DialOptions], and logger, under which the plugin's log lines
// are re-emitted (name it after the worker). The caller may adjust the
// result (StartTimeout, SecureConfig, UnixSocketConfig, SyncStdout, …)
// before plugin.NewClient. It appends [EnvHostPID] to cmd.Env.
func NewClientConfig(cmd *exec.Cmd, logger hclog.Logger) *plugin.ClientConfig {
	cmd.Env = append(cmd.Env, EnvHostPID+"="+strconv.Itoa(os.Getpid()))
	return &plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: HostPlugins(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		SkipHostEnv:      true,
		Logger:           logger,
		GRPCDialOptions:  DialOptions(),
	}
}

// NewLogger returns the logger a plugin should use: hclog JSON lines on the
// process's standard error (the go-plugin host parses them and re-emits
// them under the worker's name), at the level named by $VIGIL_LOG_LEVEL
// ([EnvLogLevel]). Call it before [Serve], which redirects os.Stderr.
func NewLogger() hclog.Logger {
	level := hclog.LevelFromString(strings.TrimSpace(os.Getenv(EnvLogLevel)))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Level:      level,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// WorkerPlugin is the go-plugin plugin for a Vigil worker. The host uses it
// through [HostPlugins] (GRPCClient returns a [*Client]); the plugin side
// uses it through [Serve], which fills in the server. Its zero value is
// ready for the host side.
type WorkerPlugin struct {
	plugin.NetRPCUnsupportedPlugin

	// server is set by Serve; nil on the host side.
	server *server
}

var _ plugin.GRPCPlugin = (*WorkerPlugin)(nil)

// GRPCServer registers the worker service on s. It is called by go-plugin
// inside [Serve] and fails when the plugin was not built by Serve.
func (p *WorkerPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	if p.server == nil {
		return errors.New("vigil: protocol: WorkerPlugin served without protocol.Serve")
	}
	p.server.setBroker(broker)
	pb.RegisterWorkerServer(s, p.server)
	return nil
}

// GRPCClient returns the host's [*Client] for the plugin process behind
// conn. ctx is go-plugin's: it is done when the plugin process has exited.
// The broker carries the host-side mailbox service of each run (see
// [RunRequest.Mailbox]).
func (p *WorkerPlugin) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return newClient(ctx, broker, conn), nil
}
