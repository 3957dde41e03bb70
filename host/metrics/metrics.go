package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-run/vigil/host"
	"github.com/vigil-run/vigil/host/process"
	"github.com/vigil-run/vigil/sdk"
)

// DeliveryBuckets are the upper bounds, in seconds, of the
// vigil_delivery_latency_seconds histogram: 50 µs to 10 s. A message
// acknowledged by a warm worker over the bridge takes tens to hundreds of
// microseconds; the upper buckets catch workers that are slow or stuck.
var DeliveryBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// RestartBuckets are the upper bounds, in seconds, of the
// vigil_restart_latency_seconds histogram: 5 ms to 2 min. A plugin process
// restarts in a few milliseconds to tens of milliseconds without backoff;
// the upper buckets hold restarts delayed by backoff or by failed start
// attempts.
var RestartBuckets = []float64{
	0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
}

// maxPending bounds the failures waiting for their restart; past it the
// oldest state is dropped (only reachable with a huge, churning tree).
const maxPending = 16384

// Metrics exports the state of one [host.Host] in the Prometheus format,
// from its own registry (never the global one): host state is read at
// scrape time, latencies and event counts are fed by [Metrics.Observe] and
// [Metrics.ObserveDelivery]. Create it with [New]. Safe for concurrent use.
type Metrics struct {
	h       *host.Host
	reg     *prometheus.Registry
	handler http.Handler

	events          *prometheus.CounterVec   // supervisor, kind
	restartLatency  *prometheus.HistogramVec // worker
	deliveryLatency *prometheus.HistogramVec // worker
	delivery        sync.Map                 // worker ID → prometheus.Observer (hot path cache)

	mu        sync.Mutex
	eventC    map[eventKey]prometheus.Counter
	down      map[childKey]*downtime // children waiting for their restart
	restartOf map[string]bool        // worker IDs with a restart latency series
}

type eventKey struct {
	supervisor string
	kind       sdk.EventKind
}

type childKey struct{ supervisor, child string }

// downtime is a child taken down by a failure, waiting for its restart.
type downtime struct {
	since      time.Time // the first failure
	restarting bool      // the supervisor decided to restart it
}

// New returns the metrics of h with a fresh registry holding the Go runtime
// and process collectors (go_*, process_*) and the vigil_* metrics listed in
// the package documentation. It does not start anything and does not
// block. Feed [Metrics.Observe] from the host's event hook. With a
// nil h only the metrics fed by Observe and ObserveDelivery are exported.
func New(h *host.Host) *Metrics {
	m := &Metrics{
		h:   h,
		reg: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_events_total",
			Help: "Lifecycle events emitted by the supervisors, by supervisor and kind (child_started, child_exited, …).",
		}, []string{"supervisor", "kind"}),
		restartLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vigil_restart_latency_seconds",
			Help:    "Time from the failure that took a worker down (exit, failed health check or failed start) to the start of the incarnation that replaced it, backoff and failed start attempts included.",
			Buckets: RestartBuckets,
		}, []string{"worker"}),
		deliveryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vigil_delivery_latency_seconds",
			Help:    "Time from handing a message to a worker incarnation to the worker's acknowledgement.",
			Buckets: DeliveryBuckets,
		}, []string{"worker"}),
		eventC:    map[eventKey]prometheus.Counter{},
		down:      map[childKey]*downtime{},
		restartOf: map[string]bool{},
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.events, m.restartLatency, m.deliveryLatency,
		&hostCollector{m: m},
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.reg, // promhttp_metric_handler_errors_total
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	return m
}

// Registry returns the registry behind [Metrics.Handler], for callers that
// want to add their own collectors. Safe for concurrent use.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler returns the HTTP handler that serves a scrape of the registry in
// the Prometheus text or protobuf format (content negotiation). A scrape
// reads the host's state at that moment; at most 4 run at once, others get
// 503. Safe for concurrent use.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Observe records a lifecycle event: it counts it in vigil_events_total,
// times restarts for vigil_restart_latency_seconds (from the failure —
// [sdk.EventChildExited], [sdk.EventHealthCheckFailed] or
// [sdk.EventChildStartFailed] — to the [sdk.EventChildStarted] that follows
// the supervisor's [sdk.EventChildRestarting]). Call it from
// [host.Options.EventHook]: it never blocks (one short mutex), never calls
// back into the host and is safe for concurrent use. On a nil *Metrics it
// does nothing, so a hook may call it before New returned (events start
// with Serve) or when metrics are off.
func (m *Metrics) Observe(e sdk.Event) {
	if m == nil {
		return
	}
	now := e.Time
	if now.IsZero() {
		now = time.Now()
	}
	var observe time.Duration
	var restarted bool
	m.mu.Lock()
	k := eventKey{e.Supervisor, e.Kind}
	c := m.eventC[k]
	if c == nil {
		c = m.events.WithLabelValues(e.Supervisor, e.Kind.String())
		m.eventC[k] = c
	}
	ck := childKey{e.Supervisor, e.Child}
	switch e.Kind {
	case sdk.EventChildExited, sdk.EventHealthCheckFailed, sdk.EventChildStartFailed:
		// The first failure starts the downtime; a failure while it waits
		// (a failed restart attempt) needs a restart decision of its own.
		if d := m.down[ck]; d != nil {
			d.restarting = false
		} else {
			if len(m.down) >= maxPending {
				clear(m.down)
			}
			m.down[ck] = &downtime{since: now}
		}
	case sdk.EventChildRestarting:
		// The failed child (siblings restarted with it have no downtime).
		if d := m.down[ck]; d != nil {
			d.restarting = true
		}
	case sdk.EventChildStarted:
		if d := m.down[ck]; d != nil {
			delete(m.down, ck)
			if d.restarting {
				observe, restarted = max(now.Sub(d.since), 0), true
			}
		}
	}
	if restarted {
		m.restartOf[e.Child] = true
	}
	m.mu.Unlock()
	c.Inc()
	if restarted {
		m.restartLatency.WithLabelValues(e.Child).Observe(observe.Seconds())
	}
}

// ObserveDelivery records that worker acknowledged a message d after it
// was handed to it, in vigil_delivery_latency_seconds. Call it from the
// bridge on every acknowledgement: it never blocks, costs one map lookup
// once the worker's series exists, and is safe for concurrent use. On a
// nil *Metrics it does nothing.
func (m *Metrics) ObserveDelivery(worker string, d time.Duration) {
	if m == nil {
		return
	}
	o, ok := m.delivery.Load(worker)
	if !ok {
		o, _ = m.delivery.LoadOrStore(worker, m.deliveryLatency.WithLabelValues(worker))
	}
	o.(prometheus.Observer).Observe(max(d, 0).Seconds())
}

// forget drops the histogram series and the pending state of children and
// supervisors the host no longer has (removed by a reload), so they do not
// accumulate. keep holds the current worker IDs and supervisor names.
func (m *Metrics) forget(keep map[string]bool) {
	m.delivery.Range(func(k, _ any) bool {
		if id := k.(string); !keep[id] {
			m.delivery.Delete(id)
			m.deliveryLatency.DeleteLabelValues(id)
		}
		return true
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range m.restartOf {
		if !keep[id] {
			delete(m.restartOf, id)
			m.restartLatency.DeleteLabelValues(id)
		}
	}
	for k := range m.down {
		if !keep[k.supervisor] || !keep[k.child] {
			delete(m.down, k)
		}
	}
}

// States are the values of the state label of vigil_worker_state: every
// [sdk.ChildState] the sdk names.
var states = func() []sdk.ChildState {
	var s []sdk.ChildState
	for i := range 256 {
		st := sdk.ChildState(i)
		if strings.HasPrefix(st.String(), "ChildState(") {
			break
		}
		s = append(s, st)
	}
	return s
}()

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	wl = []string{"worker", "pool"}

	descWorkerState    = desc("vigil_worker_state", "1 for the worker's current state, 0 for the others (state: stopped, running, restarting, stuck).", "worker", "pool", "state")
	descWorkerRestarts = desc("vigil_worker_restarts_total", "Times the supervisor restarted the worker, for any cause (its own failure or a sibling's).", wl...)
	descWorkerUptime   = desc("vigil_worker_uptime_seconds", "Time since the worker's current incarnation started; 0 when it is not running.", wl...)
	descWorkerRSS      = desc("vigil_worker_resident_memory_bytes", "Resident set size of the worker's current process (/proc/PID/statm); 0 when it is not running.", wl...)

	descMailboxDepth       = desc("vigil_mailbox_depth", "Messages queued in the mailbox, waiting for delivery.", wl...)
	descMailboxInFlight    = desc("vigil_mailbox_in_flight", "Messages handed to the worker and not yet acknowledged.", wl...)
	descMailboxCapacity    = desc("vigil_mailbox_capacity", "Capacity of the mailbox (queued messages).", wl...)
	descMailboxDeadLetter  = desc("vigil_mailbox_dead_letters", "Dead letters currently held by the mailbox.", wl...)
	descMailboxIn          = desc("vigil_mailbox_messages_in_total", "Messages accepted into the mailbox (sends that succeeded; replays not included).", wl...)
	descMailboxRejected    = desc("vigil_mailbox_messages_rejected_total", "Sends and replays the mailbox refused (full, too large, expired, duplicate…).", wl...)
	descMailboxDelivered   = desc("vigil_mailbox_deliveries_total", "Messages handed out to the worker; a redelivery counts again.", wl...)
	descMailboxOut         = desc("vigil_mailbox_messages_out_total", "Messages the worker acknowledged (processed).", wl...)
	descMailboxNacked      = desc("vigil_mailbox_messages_nacked_total", "Messages returned to the mailbox unprocessed (nack, or the incarnation holding them ended).", wl...)
	descMailboxExpired     = desc("vigil_mailbox_messages_expired_total", "Messages whose TTL passed before delivery.", wl...)
	descMailboxDeadLetterT = desc("vigil_mailbox_messages_dead_lettered_total", "Messages moved to the dead letters, for any reason (expired, poison, …).", wl...)
	descMailboxDropped     = desc("vigil_mailbox_messages_dropped_total", "Messages lost: dead letters evicted from a full list, or dead-lettered while dead letters are disabled.", wl...)

	descSupRestarts    = desc("vigil_supervisor_restarts_total", "Restarts of the supervisor's children (a one_for_all restart of 3 children counts 3).", "supervisor")
	descSupRunning     = desc("vigil_supervisor_running", "1 while the supervisor runs, else 0.", "supervisor")
	descSupActive      = desc("vigil_supervisor_active_children", "Children with a running incarnation (stuck ones included).", "supervisor")
	descSupIntensity   = desc("vigil_supervisor_restart_intensity_restarts", "Restarts within the supervisor's current intensity window (the supervisor gives up above max_restarts).", "supervisor")
	descSupMaxRestarts = desc("vigil_supervisor_restart_intensity_max_restarts", "Configured max_restarts: restarts tolerated within the window.", "supervisor")
	descSupWindow      = desc("vigil_supervisor_restart_intensity_window_seconds", "Configured max_seconds: the sliding intensity window.", "supervisor")

	allDescs = []*prometheus.Desc{
		descWorkerState, descWorkerRestarts, descWorkerUptime, descWorkerRSS,
		descMailboxDepth, descMailboxInFlight, descMailboxCapacity, descMailboxDeadLetter,
		descMailboxIn, descMailboxRejected, descMailboxDelivered, descMailboxOut, descMailboxNacked,
		descMailboxExpired, descMailboxDeadLetterT, descMailboxDropped,
		descSupRestarts, descSupRunning, descSupActive, descSupIntensity, descSupMaxRestarts, descSupWindow,
	}
)

// hostCollector reads the host's state at scrape time.
type hostCollector struct{ m *Metrics }

func (c *hostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c *hostCollector) Collect(ch chan<- prometheus.Metric) {
	h, now := c.m.h, time.Now()
	if h == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}

	children := map[string]sdk.ChildStats{}
	keep := map[string]bool{}
	for _, sup := range h.Supervisors() {
		if sup == nil {
			continue
		}
		name, st := sup.Name(), sup.Stats()
		keep[name] = true
		counter(descSupRestarts, float64(st.TotalRestarts), name)
		gauge(descSupRunning, b2f(supRunning(sup, st)), name)
		gauge(descSupActive, float64(st.ActiveChildren), name)
		gauge(descSupIntensity, float64(st.Intensity), name)
		gauge(descSupMaxRestarts, float64(st.MaxRestarts), name)
		gauge(descSupWindow, float64(st.MaxSeconds), name)
		for _, cs := range st.Children {
			children[cs.ID] = cs
		}
	}

	ids := h.WorkerIDs()
	workers := make(map[string]bool, len(ids))
	for _, id := range ids {
		workers[id], keep[id] = true, true
	}
	names := h.MailboxNames()
	pools := map[string]bool{}
	for _, n := range names {
		if !workers[n] {
			pools[n] = true
		}
	}
	for _, id := range ids {
		cs, ok := children[id]
		if !ok {
			continue // being added or removed by a reload
		}
		pool := poolOf(id, pools)
		for _, s := range states {
			gauge(descWorkerState, b2f(cs.State == s), id, pool, s.String())
		}
		counter(descWorkerRestarts, float64(cs.Restarts), id, pool)
		var up float64
		var rss uint64
		if cs.State == sdk.ChildRunning {
			if !cs.StartedAt.IsZero() {
				up = max(now.Sub(cs.StartedAt).Seconds(), 0)
			}
			pid := cs.PID
			if pid == 0 {
				if w := h.Worker(id); w != nil {
					if inc := w.Current(); inc != nil {
						pid = inc.PID()
					}
				}
			}
			rss = process.RSS(pid)
		}
		gauge(descWorkerUptime, up, id, pool)
		gauge(descWorkerRSS, float64(rss), id, pool)
	}
	for _, n := range names {
		mb, ok := h.Mailbox(n)
		if !ok || mb == nil {
			continue
		}
		worker, pool := n, ""
		if workers[n] {
			pool = poolOf(n, pools)
		} else {
			worker, pool = "", n
		}
		s := mb.Stats()
		gauge(descMailboxDepth, float64(s.Len), worker, pool)
		gauge(descMailboxInFlight, float64(s.InFlight), worker, pool)
		gauge(descMailboxCapacity, float64(s.Capacity), worker, pool)
		gauge(descMailboxDeadLetter, float64(s.DeadLetters), worker, pool)
		counter(descMailboxIn, float64(s.MessagesSent), worker, pool)
		counter(descMailboxRejected, float64(s.MessagesRejected), worker, pool)
		counter(descMailboxDelivered, float64(s.MessagesReceived), worker, pool)
		counter(descMailboxOut, float64(s.MessagesAcked), worker, pool)
		counter(descMailboxNacked, float64(s.MessagesNacked), worker, pool)
		counter(descMailboxExpired, float64(s.MessagesExpired), worker, pool)
		counter(descMailboxDeadLetterT, float64(s.DeadLettered), worker, pool)
		counter(descMailboxDropped, float64(s.MessagesDropped), worker, pool)
	}
	c.m.forget(keep)
}

// supRunning reports whether sup runs, as vigil status does.
func supRunning(sup *sdk.Supervisor, st sdk.SupervisorStats) bool {
	select {
	case <-sup.Done():
		return false
	default:
	}
	return st.Uptime > 0
}

// poolOf returns the pool a worker ID belongs to ("" if none): pool
// members are named NAME_0 … NAME_{N-1} after their pool, and worker, pool
// and member names share one namespace (see host/config).
func poolOf(id string, pools map[string]bool) string {
	i := strings.LastIndexByte(id, '_')
	if i <= 0 || i == len(id)-1 {
		return ""
	}
	if _, err := strconv.ParseUint(id[i+1:], 10, 32); err != nil {
		return ""
	}
	if pools[id[:i]] {
		return id[:i]
	}
	return ""
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
