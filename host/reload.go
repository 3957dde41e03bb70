package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/host/process"
	"github.com/vigil-run/vigil/sdk"
)

// ErrRestartRequired: a reload asked for a change that cannot be applied
// to a running tree (a supervisor added, removed, moved or with other
// settings; a worker moved to another supervisor). Nothing was changed.
var ErrRestartRequired = errors.New("vigil: restart required")

// Swap hot-swaps the worker named name — a worker ID, or a worker block's
// name, whose pool members are swapped one at a time — to its plugin
// binary as it is on disk now, without losing a message: see
// [sdk.Supervisor.SwapChild] for the sequence (the binary is checked
// against its sha256 pin first; the new incarnation starts in standby,
// must be ready and healthy, then takes over delivery while the old one
// finishes what it holds and is stopped). If a member fails, the swap
// stops there: that member and the ones after it keep their old binary,
// and the error, wrapping [sdk.ErrSwapFailed] (and for instance
// [process.ErrChecksumMismatch]), names it. Other errors wrap
// [sdk.ErrWorkerNotFound]. It blocks until done; swaps and reloads run one
// at a time. Safe for concurrent use.
func (h *Host) Swap(ctx context.Context, name string) error {
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	ids, err := h.idsOf(name)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := h.swap(ctx, id, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// idsOf returns the worker IDs named by a worker ID or a block name.
func (h *Host) idsOf(name string) ([]string, error) {
	h.treeMu.RLock()
	defer h.treeMu.RUnlock()
	if _, ok := h.workers[name]; ok {
		return []string{name}, nil
	}
	for _, w := range h.app.Workers() {
		if w.Name == name {
			var ids []string
			for _, id := range w.IDs {
				if h.workers[id] != nil {
					ids = append(ids, id)
				}
			}
			if len(ids) > 0 {
				return ids, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: no worker or pool named %q (see `vigil status`)", sdk.ErrWorkerNotFound, name)
}

// swap swaps worker id to next (nil: its own child, i.e. the binary on
// disk now) and, when it took over, records next as the worker's child
// and w (if not nil) as the block it runs with.
func (h *Host) swap(ctx context.Context, id string, next *process.Child, w *config.Worker) error {
	h.treeMu.RLock()
	sup := h.owner[id]
	h.treeMu.RUnlock()
	if sup == nil { // in the config, but not running: an add that failed
		return fmt.Errorf("%w: worker %q is not running (its start failed; see `vigil status`, fix it, then `vigil reload`)", sdk.ErrWorkerNotFound, id)
	}
	var nc sdk.Child
	if next != nil {
		forget, err := h.admit(id, next)
		if err != nil {
			return err
		}
		defer forget()
		nc = next
	}
	if err := sup.SwapChild(ctx, id, nc); err != nil {
		if errors.Is(err, sdk.ErrNotStarted) {
			return fmt.Errorf("worker %q: %w", id, err)
		}
		return fmt.Errorf("worker %q: %w (the running incarnation was kept)", id, err)
	}
	h.treeMu.Lock()
	if next != nil {
		h.workers[id] = next
	}
	if w != nil {
		h.applied[id] = w
	}
	h.treeMu.Unlock()
	return nil
}

// ReloadReport says what a [Host.Reload] did, by worker ID.
type ReloadReport struct {
	Added     []string `json:"added,omitempty"`     // new workers, started
	Removed   []string `json:"removed,omitempty"`   // workers stopped and removed
	Swapped   []string `json:"swapped,omitempty"`   // hot-swapped: new binary or settings
	Restarted []string `json:"restarted,omitempty"` // restarted: their supervision settings changed
	Failed    []string `json:"failed,omitempty"`    // changes that failed (see the error); they keep running as before
	Unchanged []string `json:"unchanged,omitempty"`
	// Notes lists settings that changed but apply only when the host
	// starts again (a mailbox's settings: the mailbox is kept, with its
	// messages; the app's log level and metrics address).
	Notes []string `json:"notes,omitempty"`
}

// Reload applies app, a new version of the running app's definition, to
// the running tree: workers that are new are started, workers that are
// gone are stopped and removed (their mailbox is kept aside, with any
// messages, and comes back if they do), workers whose process settings
// changed (plugin path, args, env, config, sha256, start_timeout,
// priority, max_memory, health-check failures) or whose plugin binary was
// replaced on disk are hot-swapped ([Host.Swap]; pools one member at a
// time), and workers whose supervision settings changed (restart,
// shutdown_timeout, backoff, health-check interval or timeout) are
// restarted with them. Supervisors must stay as they are: otherwise
// nothing is changed and the error wraps [ErrRestartRequired]. Every new
// or changed plugin binary is checked first (exists, executable, sha256
// pin): a bad one refuses the whole reload (errors wrap
// [process.ErrBadPlugin] or [process.ErrChecksumMismatch]). A change that
// fails while being applied (a swap rolled back, a start that failed) is
// reported in ReloadReport.Failed and in the joined error; the rest is
// applied. It blocks until done; reloads and swaps run one at a time.
// Safe for concurrent use.
func (h *Host) Reload(ctx context.Context, app *config.App) (*ReloadReport, error) {
	if app == nil || app.Root == nil {
		return nil, fmt.Errorf("%w: no app", sdk.ErrInvalidSpec)
	}
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	old := h.App()
	if err := sameSupervisors(old, app); err != nil {
		return nil, err
	}
	// What runs now, by worker ID: the block each worker was last
	// successfully applied with (a change that failed is retried by the
	// next reload) and its supervisor.
	h.treeMu.RLock()
	running, parentOf := maps.Clone(h.applied), map[string]string{}
	for id, sup := range h.owner {
		parentOf[id] = sup.Name()
	}
	h.treeMu.RUnlock()
	newW, newParent := workerIndex(app)
	var problems []error
	for _, id := range slices.Sorted(maps.Keys(newW)) {
		if p, ok := parentOf[id]; ok && p != newParent[id] {
			problems = append(problems, fmt.Errorf("%s: worker %q moved from supervisor %q to %q", newW[id].Range, id, p, newParent[id]))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrRestartRequired, errors.Join(problems...))
	}
	checked := map[string]bool{}
	for _, w := range app.Workers() {
		if checked[w.Name] {
			continue
		}
		checked[w.Name] = true
		if err := process.Check(h.workerSpec(w, w.Name, h.opts)); err != nil {
			problems = append(problems, fmt.Errorf("%s: worker %q: %w", w.Range, w.Name, err))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("reload refused, nothing was changed: %w", errors.Join(problems...))
	}

	rep := &ReloadReport{}
	if old.LogLevel != app.LogLevel {
		rep.Notes = append(rep.Notes, fmt.Sprintf("log_level %s → %s applies when the host starts again", old.LogLevel, app.LogLevel))
	}
	if old.Metrics != app.Metrics {
		rep.Notes = append(rep.Notes, fmt.Sprintf("metrics %q → %q applies when the host starts again", old.Metrics, app.Metrics))
	}
	var errs []error
	failed := func(id string, err error) {
		rep.Failed = append(rep.Failed, id)
		errs = append(errs, err)
	}
	// The routing table first: new workers have a mailbox before they
	// start; removed ones take no more messages.
	h.bridge.setWorkers(app.Workers())

	for _, id := range h.WorkerIDs() {
		if _, ok := newW[id]; ok {
			continue
		}
		if err := h.remove(id); err != nil {
			failed(id, err)
			continue
		}
		rep.Removed = append(rep.Removed, id)
	}
	for _, w := range app.Workers() {
		for _, id := range w.IDs {
			ow, ok := running[id]
			if !ok {
				continue // added below
			}
			if ow.Mailbox != w.Mailbox {
				rep.Notes = append(rep.Notes, fmt.Sprintf("worker %q: the mailbox settings apply when the host starts again (its mailbox and messages are kept)", id))
			}
			switch {
			case !sameSupervision(ow, w):
				if err := h.replace(w, id); err != nil {
					failed(id, err)
					continue
				}
				rep.Restarted = append(rep.Restarted, id)
			case !sameProcess(ow, w):
				child, _ := h.newWorker(w, id)
				if err := h.swap(ctx, id, child, w); err != nil {
					failed(id, err)
					continue
				}
				rep.Swapped = append(rep.Swapped, id)
			case h.Worker(id).BinaryChanged():
				if err := h.swap(ctx, id, nil, w); err != nil {
					failed(id, err)
					continue
				}
				rep.Swapped = append(rep.Swapped, id)
			default:
				h.treeMu.Lock()
				h.applied[id] = w // same settings; the new block (Range, …) from now on
				h.treeMu.Unlock()
				rep.Unchanged = append(rep.Unchanged, id)
			}
		}
	}
	for _, w := range app.Workers() {
		for _, id := range w.IDs {
			if _, ok := running[id]; ok {
				continue
			}
			if err := h.add(w, id, newParent[id]); err != nil {
				failed(id, err)
				continue
			}
			rep.Added = append(rep.Added, id)
		}
	}

	h.treeMu.Lock()
	h.app = app
	// Start order: the new file's, then workers a failed removal left.
	order := make([]string, 0, len(h.workers))
	for _, w := range app.Workers() {
		for _, id := range w.IDs {
			if _, ok := h.workers[id]; ok {
				order = append(order, id)
			}
		}
	}
	for _, id := range h.order {
		if _, ok := newW[id]; !ok && h.workers[id] != nil {
			order = append(order, id)
		}
	}
	h.order = order
	h.treeMu.Unlock()
	h.watchApp(app)
	h.logger.Info("config reloaded", "file", app.File, "added", len(rep.Added), "removed", len(rep.Removed),
		"swapped", len(rep.Swapped), "restarted", len(rep.Restarted), "failed", len(rep.Failed))
	for _, n := range rep.Notes {
		h.logger.Warn("reload: " + n)
	}
	return rep, errors.Join(errs...)
}

// remove stops worker id and removes it from its supervisor.
func (h *Host) remove(id string) error {
	h.treeMu.RLock()
	sup := h.owner[id]
	h.treeMu.RUnlock()
	if err := sup.TerminateChild(id); err != nil && !errors.Is(err, sdk.ErrChildNotFound) {
		// Killed after its shutdown timeout: stopped all the same.
		if st, ferr := sup.FindChild(id); ferr != nil || st.State != sdk.ChildStopped {
			return fmt.Errorf("worker %q: %w", id, err)
		}
		h.logger.Warn("reload: a removed worker had to be killed", "worker", id, "error", err)
	}
	if err := sup.DeleteChild(id); err != nil && !errors.Is(err, sdk.ErrChildNotFound) {
		return fmt.Errorf("worker %q: %w", id, err)
	}
	h.treeMu.Lock()
	delete(h.workers, id)
	delete(h.owner, id)
	delete(h.applied, id)
	h.treeMu.Unlock()
	return nil
}

// add creates worker id of block w under the supervisor named parent and
// starts it.
func (h *Host) add(w *config.Worker, id, parent string) error {
	h.treeMu.RLock()
	sup := h.byName[parent]
	h.treeMu.RUnlock()
	child, cs := h.newWorker(w, id)
	forget, err := h.admit(id, child)
	if err != nil {
		return err
	}
	defer forget()
	if err := sup.AddChild(cs); err != nil {
		return fmt.Errorf("%s: worker %q: %w", w.Range, id, err)
	}
	h.treeMu.Lock()
	h.workers[id] = child
	h.owner[id] = sup
	h.applied[id] = w
	h.treeMu.Unlock()
	return nil
}

// replace restarts worker id with block w's settings.
func (h *Host) replace(w *config.Worker, id string) error {
	h.treeMu.RLock()
	sup := h.owner[id]
	parent := sup.Name()
	h.treeMu.RUnlock()
	if err := h.remove(id); err != nil {
		return err
	}
	return h.add(w, id, parent)
}

// sameSupervisors reports, as an error wrapping ErrRestartRequired, every
// supervisor that a and b do not have alike (name, parent, settings).
func sameSupervisors(a, b *config.App) error {
	type sup struct {
		parent string
		s      *config.Supervisor
	}
	index := func(app *config.App) map[string]sup {
		m := map[string]sup{}
		var walk func(parent string, s *config.Supervisor)
		walk = func(parent string, s *config.Supervisor) {
			m[s.Name] = sup{parent, s}
			for _, n := range s.Children {
				if n.Supervisor != nil {
					walk(s.Name, n.Supervisor)
				}
			}
		}
		walk("", app.Root)
		return m
	}
	as, bs := index(a), index(b)
	var problems []string
	for _, name := range slices.Sorted(maps.Keys(bs)) {
		nb := bs[name]
		na, ok := as[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: supervisor %q is new", nb.s.Range, name))
		case na.parent != nb.parent:
			problems = append(problems, fmt.Sprintf("%s: supervisor %q moved", nb.s.Range, name))
		case na.s.Strategy != nb.s.Strategy || na.s.MaxRestarts != nb.s.MaxRestarts || na.s.MaxSeconds != nb.s.MaxSeconds:
			problems = append(problems, fmt.Sprintf("%s: supervisor %q: strategy, max_restarts or max_seconds changed", nb.s.Range, name))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(as)) {
		if _, ok := bs[name]; !ok {
			problems = append(problems, fmt.Sprintf("supervisor %q was removed", name))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: a reload adds, removes and changes workers, not supervisors; restart the host for: %s",
		ErrRestartRequired, strings.Join(problems, "; "))
}

// workerIndex maps every worker ID of app to its block and to the name of
// its supervisor.
func workerIndex(app *config.App) (map[string]*config.Worker, map[string]string) {
	blocks, parents := map[string]*config.Worker{}, map[string]string{}
	var walk func(s *config.Supervisor)
	walk = func(s *config.Supervisor) {
		for _, n := range s.Children {
			switch {
			case n.Worker != nil:
				for _, id := range n.Worker.IDs {
					blocks[id], parents[id] = n.Worker, s.Name
				}
			case n.Supervisor != nil:
				walk(n.Supervisor)
			}
		}
	}
	walk(app.Root)
	return blocks, parents
}

// sameSupervision compares what the supervisor holds of a worker.
func sameSupervision(a, b *config.Worker) bool {
	hc := func(w *config.Worker) [2]int64 {
		if w.HealthCheck == nil {
			return [2]int64{-1, -1}
		}
		return [2]int64{int64(w.HealthCheck.Interval), int64(w.HealthCheck.Timeout)}
	}
	return a.Restart == b.Restart && a.ShutdownTimeout == b.ShutdownTimeout && a.Backoff == b.Backoff && hc(a) == hc(b)
}

// sameProcess compares what a worker's process is started with.
func sameProcess(a, b *config.Worker) bool {
	failures := func(w *config.Worker) int {
		if w.HealthCheck == nil {
			return 0
		}
		return w.HealthCheck.Failures
	}
	return a.Plugin == b.Plugin && slices.Equal(a.Args, b.Args) && maps.Equal(a.Env, b.Env) &&
		bytes.Equal(a.Config, b.Config) && bytes.Equal(a.SHA256, b.SHA256) && a.StartTimeout == b.StartTimeout &&
		a.Priority == b.Priority && a.MaxMemory == b.MaxMemory && failures(a) == failures(b)
}
