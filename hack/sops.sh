#!/usr/bin/env bash
# Build the sops binary from the Go module proxy into a cache directory outside
# the repository, keyed by version, and print the binary's path. A second run
# prints the cached path at once. Used by tests/compat/sops_test.go (which also
# honours COFFER_SOPS=/path/to/sops).
#
#   SOPS_VERSION   sops release to build (default below; v3.13.3 builds with Go 1.26)
#   SOPS_BIN_CACHE cache root (default $HOME/.cache/coffer/sops)
set -euo pipefail
SOPS_VERSION="${SOPS_VERSION:-v3.13.3}"
CACHE_ROOT="${SOPS_BIN_CACHE:-$HOME/.cache/coffer/sops}"
OUT="$CACHE_ROOT/$SOPS_VERSION"
if [[ -x $OUT/sops ]]; then echo "$OUT/sops"; exit 0; fi

mkdir -p "$OUT"
# Build outside any module so the repository's go.mod is never consulted or changed.
cd "$(mktemp -d)"
GOFLAGS=-buildvcs=false GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOBIN="$OUT" \
  go install -trimpath -ldflags "-s -w" "github.com/getsops/sops/v3/cmd/sops@$SOPS_VERSION" >&2
echo "$OUT/sops"
