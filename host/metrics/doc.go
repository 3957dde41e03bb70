// Package metrics exports the state of a running Vigil host to Prometheus,
// with the official client library and a registry of its own (never the
// global one).
//
// Host state — workers, mailboxes, supervisors — is read when Prometheus
// scrapes, by a custom collector that iterates whatever the host has at
// that moment (a reload may add or remove workers between scrapes). Two
// histograms and an event counter cannot be read after the fact: the host
// feeds them with [Metrics.Observe] from its event hook and
// [Metrics.ObserveDelivery] from the mailbox bridge. Neither blocks.
//
//	var m *metrics.Metrics // Observe on nil does nothing
//	h, err := host.New(app, host.Options{EventHook: func(e sdk.Event) { m.Observe(e) }})
//	…
//	m = metrics.New(h) // before h.Serve: events start with Serve
//	srv, err := metrics.Listen("127.0.0.1:9102", m)
//	…
//	defer srv.Close()
//
// The endpoint has no authentication, so [Listen] accepts only loopback
// addresses (127.0.0.0/8, ::1, "localhost") and refuses anything else —
// ":9102", "0.0.0.0:9102", a LAN address — with an error wrapping
// [ErrNotLoopback]; [CheckAddr] applies the same check to a flag or config
// value before anything starts. [Metrics.Handler] serves the same scrape on
// any mux.
//
// # Metrics
//
// Labels: worker is a worker ID (a pool member's ID, e.g. echo_0); pool is
// the member's pool name, "" for a single worker. A pool's shared mailbox
// is reported with worker="" and pool=NAME, so sum by (pool) adds up a
// whole pool. supervisor is a supervisor's name (the app's name for the
// root).
//
// Per worker, read at scrape time:
//
//	vigil_worker_state{worker,pool,state}          gauge    1 for the current state, 0 for the others;
//	                                                        state is stopped, running, restarting or stuck
//	vigil_worker_restarts_total{worker,pool}       counter  restarts by the supervisor, any cause (its own
//	                                                        failure or, with one_for_all/rest_for_one, a sibling's)
//	vigil_worker_uptime_seconds{worker,pool}       gauge    age of the current incarnation; 0 when not running
//	vigil_worker_resident_memory_bytes{worker,pool} gauge   RSS of the worker's process (/proc/PID/statm);
//	                                                        0 when not running
//
// Per mailbox (a worker's own, or a pool's shared one), read at scrape
// time:
//
//	vigil_mailbox_depth{worker,pool}                        gauge    messages queued, waiting for delivery
//	vigil_mailbox_in_flight{worker,pool}                    gauge    delivered, not yet acknowledged
//	vigil_mailbox_capacity{worker,pool}                     gauge    capacity (queued messages)
//	vigil_mailbox_dead_letters{worker,pool}                 gauge    dead letters held now
//	vigil_mailbox_messages_in_total{worker,pool}            counter  messages accepted by a send (replays excluded)
//	vigil_mailbox_messages_rejected_total{worker,pool}      counter  sends/replays refused (full, too large, expired, duplicate)
//	vigil_mailbox_deliveries_total{worker,pool}             counter  messages handed to the worker (redeliveries count again)
//	vigil_mailbox_messages_out_total{worker,pool}           counter  messages the worker acknowledged (processed)
//	vigil_mailbox_messages_nacked_total{worker,pool}        counter  messages returned unprocessed (nack, or their
//	                                                                 incarnation ended holding them)
//	vigil_mailbox_messages_expired_total{worker,pool}       counter  messages whose TTL passed before delivery
//	vigil_mailbox_messages_dead_lettered_total{worker,pool} counter  messages moved to the dead letters, any reason
//	vigil_mailbox_messages_dropped_total{worker,pool}       counter  messages lost (dead-letter list full, or dead
//	                                                                 letters disabled)
//
// Expired messages are found when a delivery reaches them or when vigil
// status sweeps the mailbox; a scrape does not sweep (it changes nothing).
//
// Per supervisor, read at scrape time:
//
//	vigil_supervisor_restarts_total{supervisor}                    counter  restarts of its children (a one_for_all
//	                                                                        restart of 3 children counts 3)
//	vigil_supervisor_running{supervisor}                           gauge    1 while it runs
//	vigil_supervisor_active_children{supervisor}                   gauge    children with a running incarnation
//	vigil_supervisor_restart_intensity_restarts{supervisor}        gauge    restart decisions within the current
//	                                                                        window (it gives up above max_restarts)
//	vigil_supervisor_restart_intensity_max_restarts{supervisor}    gauge    configured max_restarts
//	vigil_supervisor_restart_intensity_window_seconds{supervisor}  gauge    configured max_seconds
//
// The three restart_intensity gauges are the supervisor's own counters
// ([sdk.SupervisorStats] Intensity, MaxRestarts, MaxSeconds): one restart
// per failure that leads to a restart (however many siblings it
// restarts), failed restart attempts included; a nested supervisor's
// count starts again when it is restarted.
// Alert on restarts / max_restarts approaching 1.
//
// Fed by the host:
//
//	vigil_events_total{supervisor,kind}        counter    lifecycle events by kind: child_started,
//	                                                      child_start_failed, child_exited, child_restarting,
//	                                                      child_stopped, health_check_failed,
//	                                                      supervisor_gave_up, … ([sdk.EventKind] names)
//	vigil_restart_latency_seconds{worker}      histogram  from the failure that took a child down (exit,
//	                                                      failed health check or failed start) to the start of
//	                                                      the incarnation that replaced it, backoff delays and
//	                                                      failed attempts included; buckets [RestartBuckets]
//	                                                      (5 ms … 2 min). A nested supervisor restarted as a
//	                                                      child appears under its name.
//	vigil_delivery_latency_seconds{worker}     histogram  from handing a message to a worker incarnation to its
//	                                                      acknowledgement; buckets [DeliveryBuckets] (50 µs … 10 s)
//
// Restarts on request (vigil restart) and siblings restarted with a failed
// child are not in vigil_restart_latency_seconds: it measures recovery
// from failures. The series of a worker removed by a reload are dropped
// at the next scrape.
//
// Also registered: the Go runtime collector (go_*) and the process
// collector (process_*) of the host process itself, and
// promhttp_metric_handler_errors_total.
package metrics
