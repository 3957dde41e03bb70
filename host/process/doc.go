// Package process runs one Vigil worker as an OS process: a go-plugin
// client over gRPC, wrapped as an [sdk.Child] so the same supervision engine
// that restarts goroutines restarts plugin processes.
//
// Each [Child.Start] creates one [Incarnation] from scratch: a fresh
// go-plugin client, a fresh exec.Cmd, a fresh checksum verifier, its own
// unix-socket directory (removed after the process exits) and its own
// process group. The process is forked from a goroutine locked to its own OS
// thread that lives exactly as long as the process, so Pdeathsig (SIGKILL)
// fires only when the host dies, not when the Go runtime retires a thread.
// The environment is explicit (PATH, HOME, TMPDIR, LANG from the host, then
// the worker's env); the host's environment never overrides a worker's.
//
// The process is launched through go-plugin's RunnerFunc hook with this
// package's runner rather than ClientConfig.Cmd: that is what lets the host
// fork from a locked thread, set the nice value, own the process group and
// reap the process itself (so it learns the exit status at once, without
// polling go-plugin's Exited). go-plugin checks ClientConfig.SecureConfig
// only on the Cmd path, so Start checks a sha256 pin itself just before the
// fork, with [Sum] (which hashes a binary again only when the file changed);
// a mismatch refuses the start with [ErrChecksumMismatch].
//
// An incarnation is ready when the plugin has answered its first RPC: the
// Run stream's ready message. A crash is seen from the process's exit
// (cmd.Wait returning) or the Run stream ending, never by polling. How the
// incarnation ended is in its Err: nil for a clean return or exit status 0,
// otherwise an [*ExitError] with the exit code or signal and the last lines
// of the process's stderr.
//
// Limits are enforced, not just stored: Stop sends a graceful Stop RPC
// within the shutdown timeout, then SIGTERM, then SIGKILL to the whole
// process group; [Spec.MaxMemory] is the RSS of the process group, sampled
// at least every second from /proc (over the limit: SIGKILL, Err wraps
// [ErrMemoryLimit]); [Spec.Priority] becomes the nice value the process is
// forked with (raising priority needs CAP_SYS_NICE: without it the worker
// runs at nice 0 and a warning is logged); health checks go to the plugin
// over RPC and fail after [Spec.HealthCheckFailures] consecutive failures.
package process
