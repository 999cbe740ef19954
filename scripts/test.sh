#!/usr/bin/env bash
# The one test command (make test, and CI through .ci/run): it installs
# and starts what the tests need, then runs every test with -race.
set -euo pipefail
cd "$(dirname "$0")/.."

export GOFLAGS="${GOFLAGS:-} -mod=mod"
start=$(date +%s)

echo "== go vet"
go vet ./...

echo "== go test -race"
# The compatibility tests build bin/coffer themselves (see tests/compat).
go test -race -count=1 -timeout 30m ./...

echo "== done in $(( $(date +%s) - start ))s"
