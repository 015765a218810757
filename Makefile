# Platter — build, run and test.  `make run` and `make test` are the two commands a newcomer needs.
SHELL := /bin/bash
GO    ?= go

# Pinned tools, installed into ./.tools/bin on first use (nothing global is touched).
TOOLS                 := $(CURDIR)/.tools/bin
BUF_VERSION           := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOACTOR_VERSION    := v0.0.0-20240822202345-3c0e61ca19c9
STATICCHECK_VERSION   := v0.8.2

BUF         := $(TOOLS)/buf
PROTOC_GEN_GO       := $(TOOLS)/protoc-gen-go
PROTOC_GEN_GO_GRAIN := $(TOOLS)/protoc-gen-go-grain
STATICCHECK := $(TOOLS)/staticcheck

# Test flags: the whole suite runs with the race detector.  TESTFLAGS adds to it (e.g. TESTFLAGS=-run=Cluster).
TESTFLAGS ?=
TEST_TIMEOUT ?= 20m

.PHONY: all build run test test-short proto proto-check bench demo lint clean tools

all: build

build:
	@mkdir -p bin
	$(GO) build -o bin/platter ./node

run: build
	./bin/platter run --data-dir ./data

test: proto-check build
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) ./...

test-short:
	$(GO) test -short -count=1 $(TESTFLAGS) ./...

# Grain code only for the files with a service or the ErrorReason enum (see messages/buf.grain.gen.yaml).
GRAIN_PROTOS = $(shell grep -lE '^(service|enum ErrorReason) ' messages/proto/*.proto | sed 's|^messages/||')

proto: $(BUF) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRAIN)
	rm -f messages/*.pb.go
	cd messages && PATH="$(TOOLS):$$PATH" $(BUF) generate
	cd messages && PATH="$(TOOLS):$$PATH" $(BUF) generate --template buf.grain.gen.yaml $(addprefix --path ,$(GRAIN_PROTOS))
	@# protoc-gen-go-grain writes the same package-level respond helper into every file with a service; keep the
	@# first (alphabetical) and drop the copies, or the package does not compile.
	@keep=1; for f in messages/*_grain.pb.go; do \
		grep -q '^func respond\[' $$f || continue; \
		if [ $$keep = 1 ]; then keep=0; else perl -0pi -e 's/\nfunc respond\[T proto\.Message\]\(ctx cluster\.GrainContext\) func\(T\) \{\n\treturn func\(resp T\) \{\n\t\tctx\.Respond\(resp\)\n\t\}\n\}\n//' $$f; fi; \
	done

# Regenerates the messages and fails when the committed generated code differs.
proto-check: proto
	@if [ -n "$$(git status --porcelain -- messages)" ]; then \
		echo "generated code in messages/ is stale: run 'make proto' and commit the result"; \
		git status --porcelain -- messages; git --no-pager diff --stat -- messages; exit 1; \
	fi

# The benchmark suite: Go benchmarks, simulator scenarios and their ceilings, written to BENCHMARKS.md (takes
# about half an hour; BENCHFLAGS=--quick checks the suite in a few minutes, BENCHFLAGS=--only=go runs one step).
BENCHFLAGS ?=
bench: build
	$(GO) run ./node/bench $(BENCHFLAGS)

# One node in a fresh temporary data dir and the simulator at a gentle rate for 30 s: orders flow within seconds.
demo: build
	$(GO) run ./node/bench --demo

lint: $(STATICCHECK)
	$(GO) vet ./...
	$(STATICCHECK) ./...

tools: $(BUF) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRAIN) $(STATICCHECK)

$(BUF):
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(PROTOC_GEN_GO):
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(PROTOC_GEN_GO_GRAIN):
	GOBIN=$(TOOLS) $(GO) install github.com/asynkron/protoactor-go/protobuf/protoc-gen-go-grain@$(PROTOACTOR_VERSION)
$(STATICCHECK):
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

clean:
	rm -rf bin
