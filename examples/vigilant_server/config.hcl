# vigilant_server: a TCP line-protocol server built as supervised Vigil workers.
# Build and run from the repository root (see README.md):
#   make build && go build -o bin/examples/vigilant_server/ ./examples/vigilant_server/server ./examples/vigilant_server/handler
#   bin/vigil run examples/vigilant_server/config.hcl
# Plugin paths are relative to this file.
app "vigilant_server" {
  preset   = "production"
  strategy = "one_for_one"

  # The handler pool, started first and stopped last: the server drains its
  # in-flight requests into live handlers. Members pull from the shared
  # mailbox "handlers"; a killed member is restarted and its in-flight
  # request redelivered to another member.
  worker "handlers" {
    plugin           = "../../bin/examples/vigilant_server/handler"
    pool             = 4
    shutdown_timeout = "5s"
    health_check {
      interval = "2s"
    }
    backoff {
      min = "10ms"
      max = "1s"
    }
    config {
      max_sleep = "2s"
    }
  }

  # The TCP front end. Its shutdown_timeout must exceed drain_timeout.
  worker "server" {
    plugin           = "../../bin/examples/vigilant_server/server"
    shutdown_timeout = "15s"
    health_check {
      interval = "2s"
      failures = 3
    }
    config {
      addr          = "127.0.0.1:7070"
      pool          = "handlers"
      max_conns     = 64
      idle_timeout  = "60s"
      drain_timeout = "10s"
      call_timeout  = "3s"
      retries       = 2
    }
  }
}
