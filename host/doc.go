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
// Use it as
//
//	app, err := config.Load("config.hcl")
//	h, err := host.New(app, host.Options{})
//	err = h.Serve(ctx) // until ctx is done or the root supervisor gives up
package host
