# Vigil — a Go process supervisor and messaging system in the spirit of Erlang/OTP.
# `make help` lists the targets.

GO        ?= go
BIN       := bin
PLUGINS   := $(notdir $(wildcard plugins/*))
GOFLAGS_TEST ?= -race -timeout 14m
BENCHTIME ?= 1s
BENCHCOUNT ?= 5

.DEFAULT_GOAL := help
.PHONY: help build plugins test bench run lint generate clean

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

bench: ## run every benchmark against its baseline
	@echo "==> go test -bench (count=$(BENCHCOUNT), benchtime=$(BENCHTIME))"
	@$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) -benchtime $(BENCHTIME) ./...

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
