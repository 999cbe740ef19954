#!/usr/bin/env bash
# The one test command (make test, and CI through .ci/run). On a fresh
# machine with only Go it installs and builds what the tests need, caching
# builds outside the repo keyed by version, then runs every test with -race:
#   - PostgreSQL from Debian's packages (database engine tests),
#   - sops from the Go module proxy (SOPS interoperability),
#   - kube-apiserver and etcd from the Go module proxy (Kubernetes tests;
#     the first build takes 10-20 minutes on 2 cores, later runs reuse it).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - start ))s)"; }

step "PostgreSQL"
COFFER_PG_BIN="$(hack/postgres.sh)"
export COFFER_PG_BIN

step "sops"
COFFER_SOPS="$(hack/sops.sh)"
export COFFER_SOPS

step "kube-apiserver and etcd for envtest"
KUBEBUILDER_ASSETS="$(hack/build-envtest-bins.sh)"
export KUBEBUILDER_ASSETS

step "go vet"
go vet ./...

step "go test -race"
# The compatibility tests (tests/compat) build bin/coffer themselves and
# drive real server processes.
go test -race -count=1 -timeout 45m ./...

step "done"
