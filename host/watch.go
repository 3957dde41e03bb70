package host

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/vigil-run/vigil/host/config"
)

// DefaultWatchDebounce is the default [Options.WatchDebounce]: how long a
// watched plugin binary must stay unchanged after an event before it is
// hot-swapped, so a deploy that writes, chmods and renames triggers one
// swap.
const DefaultWatchDebounce = 500 * time.Millisecond

// watcher hot-swaps the workers with watch = true when their plugin
// binary is replaced on disk. It watches the binaries' directories (a
// write-then-rename deploy replaces the file itself, which a watch on
// the file would lose) and debounces per binary.
type watcher struct {
	h        *Host
	ctx      context.Context
	debounce time.Duration
	wg       sync.WaitGroup

	mu     sync.Mutex
	fs     *fsnotify.Watcher      // created when a worker first has watch = true
	blocks map[string][]string    // plugin path → names of the watched worker blocks using it
	dirs   map[string]bool        // directories watched
	timers map[string]*time.Timer // plugin path → pending swap
	closed bool
}

// startWatching starts the watcher (its inotify instance only once a
// worker has watch = true, now or after a reload) and returns the
// function that stops it and waits for its swaps to end.
func (h *Host) startWatching(ctx context.Context) (stop func()) {
	d := h.opts.WatchDebounce
	if d <= 0 {
		d = DefaultWatchDebounce
	}
	w := &watcher{h: h, ctx: ctx, debounce: d, blocks: map[string][]string{}, dirs: map[string]bool{}, timers: map[string]*time.Timer{}}
	h.treeMu.Lock()
	h.watch = w
	app := h.app
	h.treeMu.Unlock()
	w.set(app)
	return func() {
		w.mu.Lock()
		w.closed = true
		for _, t := range w.timers {
			t.Stop()
		}
		fw := w.fs
		w.mu.Unlock()
		if fw != nil {
			fw.Close()
		}
		w.wg.Wait()
	}
}

// watchApp points the watcher (if any) at app's watched workers.
func (h *Host) watchApp(app *config.App) {
	h.treeMu.RLock()
	w := h.watch
	h.treeMu.RUnlock()
	if w != nil {
		w.set(app)
	}
}

// set makes the watcher follow the workers of app with watch = true.
func (w *watcher) set(app *config.App) {
	blocks := map[string][]string{}
	for _, wk := range app.Workers() {
		if wk.Watch {
			p := filepath.Clean(wk.Plugin)
			blocks[p] = append(blocks[p], wk.Name)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.blocks = blocks
	if len(blocks) > 0 && w.fs == nil {
		fw, err := fsnotify.NewWatcher()
		if err != nil {
			w.h.logger.Error("cannot watch plugin binaries; watch = true has no effect", "error", err)
			return
		}
		w.fs = fw
		w.wg.Go(func() { w.loop(fw) })
	}
	for p := range blocks {
		dir := filepath.Dir(p)
		if w.dirs[dir] {
			continue
		}
		if err := w.fs.Add(dir); err != nil {
			w.h.logger.Error("cannot watch a plugin directory; its workers will not be hot-swapped on change", "dir", dir, "error", err)
			continue
		}
		w.dirs[dir] = true
		w.h.logger.Debug("watching plugin binaries", "dir", dir)
	}
}

func (w *watcher) loop(fw *fsnotify.Watcher) {
	for {
		select {
		case ev, ok := <-fw.Events:
			if !ok {
				return
			}
			if ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Rename|fsnotify.Chmod) != 0 {
				w.changed(filepath.Clean(ev.Name))
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return
			}
			w.h.logger.Warn("plugin watcher error", "error", err)
		}
	}
}

// changed (re)arms the debounce timer of a watched binary.
func (w *watcher) changed(path string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || len(w.blocks[path]) == 0 {
		return
	}
	if t := w.timers[path]; t != nil {
		t.Reset(w.debounce)
		return
	}
	w.timers[path] = time.AfterFunc(w.debounce, func() { w.fire(path) })
}

// fire swaps the workers of a binary that settled.
func (w *watcher) fire(path string) {
	w.mu.Lock()
	delete(w.timers, path)
	names := append([]string(nil), w.blocks[path]...)
	if w.closed || w.ctx.Err() != nil {
		w.mu.Unlock()
		return
	}
	w.wg.Add(1) // under mu, before closed is set: Wait cannot have started
	w.mu.Unlock()
	defer w.wg.Done()
	for _, name := range names {
		ids, err := w.h.idsOf(name)
		if err != nil {
			continue // removed by a reload meanwhile
		}
		changed := false
		for _, id := range ids {
			if c := w.h.Worker(id); c != nil && c.BinaryChanged() {
				changed = true
			}
		}
		if !changed {
			continue
		}
		w.h.logger.Info("plugin binary replaced; hot-swapping", "worker", name, "plugin", path)
		if err := w.h.Swap(w.ctx, name); err != nil {
			w.h.logger.Error("hot swap failed; the old version keeps running (fix the binary and replace it again, or run `vigil reload`)", "worker", name, "plugin", path, "error", err)
			continue
		}
		w.h.logger.Info("hot swap done", "worker", name, "plugin", path)
	}
}
