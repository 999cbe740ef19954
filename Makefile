# Coffer — the two set-up commands are `make run` and `make test`.
GO ?= go
BIN := bin/coffer

.PHONY: build build-server run test bench bench-raft generate clean

# Release flags: no symbol table or DWARF (smaller, and fewer binary pages
# resident: the idle server's RSS drops by about 6 MB, see docs/performance.md).
LDFLAGS := -s -w -X github.com/coffer-dev/coffer/internal/version.Version=$(shell git describe --tags --always 2>/dev/null | sed 's/^v//' | grep -E '^[0-9]+\.' || echo 0.1.0)

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/coffer

# The server alone, without the Kubernetes roles (controller-runtime, grpc):
# the same server, ~19 MB less resident when idle (docs/performance.md).
build-server:
	$(GO) build -trimpath -tags coffer_server_only -ldflags "$(LDFLAGS)" -o bin/coffer-server ./cmd/coffer

# An in-memory, unsealed dev server: root token "root", KV v2 at secret/.
run: build
	./$(BIN) server --dev --dev-root-token-id=root

# Every test: vet, the race detector, and the compatibility tests that drive
# a real coffer process with the Vault Go client.
test:
	./scripts/test.sh

# Load against a real server process, with the canned-bytes ceiling: the
# server build the image's server pods run (bin/coffer-server); reads and
# ceiling are measured with a raw HTTP client and again with the official
# Vault Go client, as Vault load tools use. bench-raft:
# the same writes on a three-node raft cluster.
bench: build-server
	$(GO) run ./cmd/coffer-bench --coffer ./bin/coffer-server --vault-client

bench-raft: build-server
	$(GO) run ./cmd/coffer-bench --coffer ./bin/coffer-server --storage raft

# CRD YAML and deepcopy from apis/ (controller-gen built from the Go module
# proxy into ~/.cache/coffer, keyed by version).
generate:
	hack/controller-gen.sh object crd paths=./apis/... output:crd:artifacts:config=deploy/crds
	cp deploy/crds/*.yaml deploy/helm/coffer/crds/

clean:
	rm -rf bin
