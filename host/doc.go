// Package host turns a loaded app definition ([config.App]) into a running
// supervision tree of plugin processes: the heart of the vigil binary.
//
// Every worker ID (a pool of N is N IDs, name_0 … name_{N-1}) becomes one
// [process.Child] under an [sdk.Supervisor]; every nested supervisor block
// becomes a nested sdk supervisor, added to its parent as a child. The same
// engine that supervises goroutines restarts the processes by strategy,
// intensity and backoff. Logging goes through go-hclog: the root logger is
// named "vigil", each supervisor logs its lifecycle events under
// "vigil.<supervisor>", and each worker under "vigil.<worker id>" (its
// plugin's own lines under "vigil.<worker id>.<binary>").
//
// Every worker ID, and every pool name, also has a host-side mailbox that
// outlives the worker's incarnations; workers reach theirs over the mailbox
// bridge (bridge.go: one go-plugin broker stream per incarnation,
// at-least-once delivery with a credit window), and [Host.Send],
// [Host.Broadcast], [Host.Call] and [Host.Mailbox] give the host side.
//
// A running host changes without a restart: [Host.Swap] hot-swaps a
// worker (a pool one member at a time) to its plugin binary as it is on
// disk, through [sdk.Supervisor.SwapChild] — the new incarnation starts in
// standby (its mailbox stream receives nothing), must be ready and
// healthy, then takes over delivery while the old one finishes and acks
// what it holds and is stopped; a failure leaves the old one serving.
// [Host.Reload] applies a new version of the app definition (workers
// added, removed, swapped or restarted; supervisors must stay as they
// are), and workers with watch = true are swapped when their binary is
// replaced (watch.go, fsnotify). The default logger's output never blocks
// the supervisors (logwriter.go).
//
// Use it as
//
//	app, err := config.Load("config.hcl")
//	h, err := host.New(app, host.Options{})
//	err = h.Serve(ctx) // until ctx is done or the root supervisor gives up
package host
