// Package config loads Vigil app definitions: HCL files that describe a
// supervision tree of plugin workers.
//
// [Load] parses a file, checks it against the schema below, evaluates its
// expressions, fills every default from the app's preset and validates the
// result — names, IDs, durations, sizes, enum values, checksums and the
// plugin binaries on disk. It returns an [App] ready for the host, or every
// problem at once as hcl.Diagnostics: each with the file, line and column it
// is about and a message that says what to do. [Render] and [Format] print
// them with the offending source line underlined:
//
//	app, err := config.Load("config.hcl")
//	if err != nil {
//		config.Render(os.Stderr, err)
//		os.Exit(2)
//	}
//
// Loading is the only place where config text is interpreted: the host never
// sees HCL, only the typed, documented values of [App], [Supervisor] and
// [Worker]; defaults live in one place (sdk.Preset.Values, plus the constants
// of this package for what a preset does not cover).
//
// # Configuration reference
//
// A file holds exactly one app block. The app block is the root supervisor;
// supervisor blocks nest to any depth; worker and supervisor blocks are
// started in the order they appear in the file (and stopped in reverse).
//
//	app "demo" {
//	  preset       = "development"
//	  strategy     = "one_for_one"
//	  max_restarts = 5
//	  max_seconds  = 30
//	  log_level    = "info"
//	  metrics      = "127.0.0.1:9102"
//
//	  worker "echo" {
//	    plugin           = "bin/plugins/echo"
//	    args             = ["-x"]
//	    env              = { FOO = env("HOME") }
//	    restart          = "permanent"
//	    shutdown_timeout = "5s"
//	    start_timeout    = "10s"
//	    priority         = "normal"
//	    max_memory       = "256MiB"
//	    pool             = 4
//	    sha256           = "<64 hex digits>"
//	    watch            = true
//	    health_check {
//	      interval = "1s"
//	      timeout  = "500ms"
//	      failures = 3
//	    }
//	    backoff {
//	      min    = "100ms"
//	      max    = "10s"
//	      jitter = 0.2
//	    }
//	    mailbox {
//	      capacity              = 100
//	      priority_queues       = true
//	      dead_letter           = true
//	      default_ttl           = "30s"
//	      max_message_size      = "1MiB"
//	      max_delivery_attempts = 5
//	    }
//	    config {
//	      greeting = "hi"
//	      nested   = { a = 1 }
//	    }
//	  }
//
//	  supervisor "backend" {
//	    strategy     = "rest_for_one"
//	    max_restarts = 3
//	    max_seconds  = 10
//	    worker "db" { plugin = "bin/plugins/ticker" }
//	  }
//	}
//
// (HCL allows a block on one line only when it holds a single attribute, as
// in the db worker above.)
//
// app "NAME" — the app and its root supervisor:
//
//	attribute     value                                         default
//	preset        production | development | high_availability | testing
//	                                                            production
//	strategy      one_for_one | one_for_all | rest_for_one      one_for_one
//	max_restarts  whole number ≥ 0                              preset
//	max_seconds   whole number ≥ 1 (the sliding window)         preset
//	log_level     trace | debug | info | warn | error           preset
//	metrics       loopback host:port of the Prometheus          none
//	              endpoint (also `vigil run --metrics`)
//
// supervisor "NAME" — strategy, max_restarts and max_seconds as above (each
// supervisor has its own; the defaults come from the preset, not from the
// parent), and worker/supervisor blocks.
//
// worker "NAME":
//
//	attribute         value                                     default
//	plugin            path of the binary (required); relative   —
//	                  paths are relative to the config file's
//	                  directory; must be an executable file
//	args              list of strings                           none
//	env               object of strings: the worker's own       none
//	                  environment
//	restart           permanent | transient | temporary         permanent
//	shutdown_timeout  duration > 0                              preset
//	start_timeout     duration > 0                              10s
//	priority          critical | high | normal | low | batch    normal
//	                  (nice -10, -5, 0, 5, 10)
//	max_memory        size > 0: RSS limit of the process group  none
//	pool              1 … 1000 copies, IDs NAME_0 … NAME_{N-1}  single worker, ID NAME
//	sha256            64 hex digits: refuse other binaries      not pinned
//	watch             true | false: hot-swap the worker when    false
//	                  its plugin binary is replaced on disk
//
//	health_check { }  no block: no health checks
//	  interval        duration > 0                              preset
//	  timeout         duration > 0, ≤ interval                  min(interval, 1s)
//	  failures        whole number ≥ 1 (consecutive)            3
//	backoff { }       restart delay, doubling from min to max
//	  min             duration ≥ 0                              preset
//	  max             duration ≥ 0, ≥ min                       preset
//	  jitter          0 … 1: up to this fraction is taken off   0.2
//	                  each delay, so workers restarted together
//	                  do not restart in lockstep
//	mailbox { }
//	  capacity              1 … 1000000 messages queued         preset
//	                        (those pushed to the worker and not
//	                        yet acknowledged, up to its credit
//	                        window of 256, are not counted)
//	  priority_queues       bool                                true
//	  dead_letter           bool                                true
//	  default_ttl           duration ≥ 0 (0 = no expiry)        0
//	  max_message_size      size > 0                            1MiB
//	  max_delivery_attempts whole number ≥ 1                    5
//	config { }        free-form attributes (any HCL values,     {}
//	                  no blocks), handed to the worker as a
//	                  JSON object
//
// The preset defaults (from sdk.Preset.Values):
//
//	preset             max_restarts  max_seconds  health interval  shutdown  mailbox  backoff       log level
//	production         3             60           5s               30s       1000     100ms … 10s   info
//	development        10            5            1s               5s        100      10ms … 1s     debug
//	high_availability  5             30           2s               20s       5000     50ms … 5s     info
//	testing            1             10           100ms            1s        50       0 … 0         debug
//
// When a backoff block sets only one bound and it crosses the preset's other
// bound, the other bound follows it (min = "2s" with a preset max of 1s gives
// 2s … 2s); when it sets both, min must not exceed max.
//
// Values. Durations are strings such as "5s", "200ms" or "1m30s" (Go's
// time.ParseDuration: units ns, us, ms, s, m, h); a bare number is an error
// because it has no unit. Sizes are strings (or whole numbers of bytes) such
// as "256MiB", "1.5GiB", "512KB" or "4096"; see [ParseSize]. An attribute set
// to null is the same as an absent one.
//
// Names and IDs. App, supervisor and worker names are 1 to 64 letters,
// digits, '_', '-' or '.', not starting with '-' or '.'. Supervisor names,
// worker names, pool names and pool IDs (echo_0 …) share one namespace: no
// two may be equal anywhere in the tree. (The app's name is not an ID: the
// root supervisor is nobody's child.)
//
// Functions. Expressions may call env("NAME") (or env("NAME", "default"))
// and a few pure functions such as upper, lower, format, join, concat, min
// and max; see [Functions]. There are no variables.
//
// What is not checked here: whether a binary really is a Vigil plugin (the
// host finds out when it starts it) and whether a pinned sha256 matches
// (checked by the host at every start, since the file may change).
package config
