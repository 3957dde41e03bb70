// Package protocol is the wire between the Vigil host and a worker plugin
// process: the versioned go-plugin plugin ([WorkerPlugin], [Handshake],
// [HostPlugins]), the host's handle on a running worker ([Client], [Run]),
// the plugin-side server ([Server], [Serve]) and the mapping of sentinel
// errors to gRPC statuses and back ([RegisterSentinels], [ToStatus],
// [FromStatus]). Both the host and package sdk import it; worker authors
// never need to: they call sdk.Serve. Generated protobuf code lives in
// internal/pb and does not leak out of this package.
//
// CHANGES FOR HOST (relative to the contract):
//   - Additions only, no renames. New: [NewClientConfig] (the recommended
//     plugin.ClientConfig; it also appends VIGIL_HOST_PID to cmd.Env),
//     [DialOptions], [MaxMessageSize], [NewLogger], [EnvLogLevel] (set
//     VIGIL_LOG_LEVEL in the worker's env to pick its log level),
//     [EnvHostPID], [WithLogger], exit codes [ExitOK]/[ExitError]/[ExitPanic],
//     [RemoteError] (what FromStatus and HealthCheck failures are) and
//     [WorkerError] (what Run.Err is for a failed worker; it has Message,
//     Panicked, ExitCode).
//   - Performance: every connection between host and plugin uses a static
//     4 MiB flow-control window ([DialOptions] and the servers' options),
//     which turns off gRPC's BDP pings (a PING and its ACK per data frame
//     of a request/reply exchange); [Down.AcksWanted] tells the plugin
//     when the host waits for acks; [EnvCPUProfile] makes a plugin write
//     a CPU profile. The mailbox stream's deliveries skip the generated
//     protobuf code: the host encodes them directly ([HostStream.SendFrame])
//     and the plugin decodes them straight from gRPC's buffer
//     ([PluginStream.RecvEach], one [DeliveryView] at a time). The bytes on
//     the wire and the content-subtype are those of the generated code
//     (a peer of either kind understands them); [HostStream.Send] and
//     [PluginStream.Recv] still use the generated code.
//   - Set VIGIL_HOST_PID=<host pid> ([EnvHostPID]) in the worker's env if
//     you do not use NewClientConfig: the plugin then also exits when that
//     PID is gone (a host that died before the plugin started watching, or
//     a wrapper process between host and plugin).
//   - Put each incarnation's socket in its own directory: add
//     PLUGIN_UNIX_SOCKET_DIR=<dir> to cmd.Env (go-plugin's plugin side
//     listens there) and remove the directory after the process exited; a
//     SIGKILLed plugin cannot remove its socket.
//   - Stop before Kill: go-plugin's Kill cuts the Run stream, so a run ended
//     by Kill alone reports ErrConnectionLost even if the worker returned nil.
//   - A failed start (sdk.Initializer's Init returned an error, or the
//     worker ended before READY) is returned by Client.Run wrapping a
//     *WorkerError; map it to sdk.ErrStartFailed.
//   - Client.Run: if the worker ends before READY with nil, Run returns an
//     already-done *Run and no error; with an error, it returns that error.
//   - Client.Stop returns nil once the run ended (whatever the worker
//     returned), an error wrapping ctx.Err() when ctx expired first (map it
//     to sdk.ErrShutdownTimeout and kill the process group).
//
// # Life of one incarnation
//
// The host launches the plugin binary with a fresh go-plugin client
// ([NewClientConfig]), dispenses [PluginName] to get a [*Client] and calls
// [Client.Run], which opens a server stream and returns once the worker has
// begun (the stream's READY event). The stream stays open while the worker
// runs; it is the crash signal: its last event is EXITED with the worker's
// result, and if the process dies first the stream breaks (about 1.6 ms
// after a SIGKILL) and [Run.Done] closes with [ErrConnectionLost]. There is
// no polling anywhere. [Client.Stop] cancels the worker's context and waits
// for its Run to return; [Client.HealthCheck] calls the worker's optional
// health check.
//
// On the plugin side, [Serve] runs go-plugin's server and ends the process
// when the worker's Run has returned: exit status [ExitOK] for nil,
// [ExitError] for an error, [ExitPanic] for a panic. It also exits on its
// own when the host goes away (connection closed, or parent process gone).
//
// # Mailbox stream
//
// When [RunRequest.Mailbox] is set, [Client.Run] serves the host's Mailbox
// service on a fresh go-plugin broker ID (gRPC limits raised to
// [MaxMessageSize]) and passes the ID in the Run request; the plugin side
// dials it once, at once, and hands the worker a [MailboxConn] in its
// RunRequest. [MailboxConn.Open] opens the incarnation's one bidirectional
// stream: [Down] frames (deliveries, replies, send and stats results) from
// the host, [Up] frames (acks, nacks, sends, stats requests, the credit
// grant) from the plugin. Send results carry sentinel codes, so errors.Is
// works on them too.
//
// # Errors across the wire
//
// Sentinel errors are registered on both sides with [RegisterSentinels]
// (package sdk registers all of its own). An error that wraps registered
// sentinels keeps its text and its sentinels across the wire, so
// errors.Is(err, sdk.ErrMailboxFull) works in a plugin exactly as in
// process. The sentinel's identity travels as its Error() text in a status
// detail. A broken connection is [ErrConnectionLost].
//
// # Versioning
//
// [ProtocolVersion] keys the go-plugin VersionedPlugins map on both sides,
// so a host and a plugin of different protocol versions fail at the
// handshake. Within a version, messages only gain fields.
package protocol
