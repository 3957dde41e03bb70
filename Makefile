# Vigil — a Go process supervisor and messaging system in the spirit of Erlang/OTP.
# `make help` lists the targets.

GO        ?= go
BIN       := bin
PLUGINS   := $(notdir $(wildcard plugins/*))
GOFLAGS_TEST ?= -race -timeout 14m
BENCHTIME ?= 1s
BENCHCOUNT ?= 5

.DEFAULT_GOAL := help
.PHONY: help build plugins test bench soak run lint generate clean

help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN{FS=":.*## "}{printf "  %-10s %s\n", $$1, $$2}'

build: plugins ## build bin/vigil and every plugin
	@echo "==> building $(BIN)/vigil"
	@if [ -d host/cmd/vigil ] && ls host/cmd/vigil/*.go >/dev/null 2>&1; then $(GO) build -o $(BIN)/vigil ./host/cmd/vigil; fi

plugins: ## build every plugin into bin/plugins/
	@echo "==> building plugins: $(PLUGINS)"
	@mkdir -p $(BIN)/plugins
	@for p in $(PLUGINS); do $(GO) build -o $(BIN)/plugins/$$p ./plugins/$$p || exit 1; done

test: ## vet, then all tests with the race detector
	@echo "==> go vet"
	@$(GO) vet ./...
	@echo "==> go test -race"
	@$(GO) test $(GOFLAGS_TEST) ./...

bench: ## run every benchmark against its baseline (a few minutes): table to bench.md, raw output to bench.txt
	@echo "==> go test -bench ./sdk/: mailbox, ping-pong, one-goroutine cost, restart (count=$(BENCHCOUNT), benchtime=$(BENCHTIME))"
	@{ $(GO) test -run '^$$' -bench 'SendRecv|PingPong|SameGoroutine|RestartLatency' -benchmem -count $(BENCHCOUNT) -benchtime $(BENCHTIME) ./sdk/ 2>&1 || echo "FAIL: go test ./sdk/ exited $$?"; } | tee bench.txt
	@echo "==> go test -bench ./sdk/: mailbox (and a featureless ring) vs channel alternating in one loop (count=$(BENCHCOUNT), benchtime=20x)"
	@{ $(GO) test -run '^$$' -bench 'MailboxVsChan|RingVsChan' -count $(BENCHCOUNT) -benchtime 20x ./sdk/ 2>&1 || echo "FAIL: go test ./sdk/ exited $$?"; } | tee -a bench.txt
	@echo "==> go test -bench ./host/: bridge vs raw go-plugin stream (count=$(BENCHCOUNT), benchtime=6x)"
	@{ $(GO) test -run '^$$' -bench 'BridgeVsRaw' -count $(BENCHCOUNT) -benchtime 6x ./host/ 2>&1 || echo "FAIL: go test ./host/ exited $$?"; } | tee -a bench.txt
	@echo "==> go test -bench ./host/: hot-swap pause vs crash restart under load (count=$(BENCHCOUNT), benchtime=10x)"
	@{ $(GO) test -run '^$$' -bench 'SwapPause' -count $(BENCHCOUNT) -benchtime 10x ./host/ 2>&1 || echo "FAIL: go test ./host/ exited $$?"; } | tee -a bench.txt
	@echo "==> go test -bench ./host/process/: crash to serving (count=$(or $(BENCHPROCCOUNT),5), $(or $(BENCHKILLS),100) kills each)"
	@{ $(GO) test -run '^$$' -bench 'CrashToServing' -count $(or $(BENCHPROCCOUNT),5) -benchtime $(or $(BENCHKILLS),100)x ./host/process/ 2>&1 || echo "FAIL: go test ./host/process/ exited $$?"; } | tee -a bench.txt
	@echo "==> go test -bench ./host/process/: host memory per worker (count=$(or $(BENCHPROCCOUNT),5))"
	@{ $(GO) test -run '^$$' -bench 'HostMemoryPerWorker' -count $(or $(BENCHPROCCOUNT),5) -benchtime 1x ./host/process/ 2>&1 || echo "FAIL: go test ./host/process/ exited $$?"; } | tee -a bench.txt
	@echo "==> benchtable: medians of bench.txt -> bench.md"
	@$(GO) run ./host/cmd/benchtable -o bench.md bench.txt

soak: ## chaos soak: SIGKILL random workers under traffic for 60s (make test runs 8s)
	@echo "==> go test -race -run TestChaosSoak -soak 60s ./host/"
	@$(GO) test -race -count=1 -run TestChaosSoak -timeout 10m -v ./host/ -soak 60s

run: build ## build, then run config.hcl with bin/vigil (Ctrl-C stops it)
	@echo "==> running $(BIN)/vigil run config.hcl (Ctrl-C stops it)"
	@$(BIN)/vigil run config.hcl

lint: ## gofmt, go vet and staticcheck
	@echo "==> gofmt"
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@echo "==> go vet"
	@$(GO) vet ./...
	@echo "==> staticcheck"
	@$(GO) tool staticcheck ./...

generate: ## regenerate protobuf code (needs protoc: apt-get install protobuf-compiler)
	@echo "==> go generate"
	@command -v protoc >/dev/null || { echo "protoc not found: run 'apt-get install -y protobuf-compiler' (generated code is committed; only needed to change the .proto)"; exit 1; }
	@$(GO) generate ./...

clean: ## remove build output
	@echo "==> cleaning"
	@rm -rf $(BIN) bench.md
