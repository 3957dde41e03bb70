# The demo app that `make run` builds and runs: Ctrl-C stops it gracefully
# (a second Ctrl-C kills every worker at once). Plugin paths are relative to
# this file. `bin/vigil validate config.hcl` checks it.

app "demo" {
  preset       = "development" # debug log level, quick restarts
  strategy     = "one_for_one"
  max_restarts = 20 # more than 20 restarts within 30 s and the app gives up
  max_seconds  = 30

  # A pool of two echo workers: IDs echo_0 and echo_1. watch = true: when
  # its binary is replaced (`make plugins` in another terminal), the pool is
  # hot-swapped to it, one member at a time, without a restart.
  worker "echo" {
    plugin = "bin/plugins/echo"
    pool   = 2
    watch  = true
  }

  # A nested supervisor: if a ticker dies, both tickers restart.
  supervisor "clocks" {
    strategy     = "one_for_all"
    max_restarts = 5
    max_seconds  = 10

    worker "fast_ticker" {
      plugin = "bin/plugins/ticker"
      config {
        interval = "2s"
      }
    }

    worker "slow_ticker" {
      plugin = "bin/plugins/ticker"
      config {
        interval = "5s"
      }
    }
  }

  # A worker that fails 3 s after every start; watch it restart in the log
  # with a growing backoff (500 ms, 1 s, 2 s, 2 s, …).
  worker "flaky" {
    plugin           = "bin/plugins/flaky"
    restart          = "permanent"
    shutdown_timeout = "2s"
    backoff {
      min = "500ms"
      max = "2s"
    }
    health_check {
      interval = "1s"
      failures = 3
    }
    config {
      mode  = "fail"
      after = "3s"
    }
  }
}
