# A config that uses every attribute; load_test.go checks the decoded tree.
app "demo" {
  preset       = "development"
  strategy     = "one_for_all"
  max_restarts = 5
  max_seconds  = 30
  log_level    = "info"
  metrics      = "127.0.0.1:9102"

  worker "echo" {
    plugin           = "bin/plugins/echo"
    args             = ["-x", "--port=${8000 + 80}"]
    env              = { FOO = env("VIGIL_TEST_FOO"), BAR = lower("Baz"), N = 3 }
    restart          = "transient"
    shutdown_timeout = "5s"
    start_timeout    = "1m30s"
    priority         = "high"
    max_memory       = "256MiB"
    pool             = 3
    sha256           = "AB12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"
    watch            = true

    health_check {
      interval = "2s"
      timeout  = "500ms"
      failures = 4
    }
    backoff {
      min = "200ms"
      max = "20s"
    }
    mailbox {
      capacity              = 64
      priority_queues       = false
      dead_letter           = false
      default_ttl           = "30s"
      max_message_size      = "2MiB"
      max_delivery_attempts = 7
    }
    config {
      greeting = format("hi %s", env("VIGIL_TEST_FOO"))
      interval = "1s"
      nested   = { a = 1, b = [true, null, 2.5] }
      list     = concat(["a"], ["b"])
      biggest  = max(3, 9, 4)
      joined   = join("-", ["x", "y"])
      missing  = env("VIGIL_TEST_UNSET", "fallback")
    }
  }

  supervisor "backend" {
    strategy     = "rest_for_one"
    max_restarts = 3
    max_seconds  = 10

    worker "db" { plugin = "bin/plugins/ticker" }

    supervisor "inner" {
      worker "cache" {
        plugin = "./bin/../bin/plugins/flaky"
        health_check {}
      }
    }

    worker "db_replica" { plugin = "bin/plugins/ticker" }
  }

  worker "last" {
    plugin = "bin/plugins/flaky"
    backoff {
      min    = "3s"
      jitter = 0.5
    }
  }
}
