#!/usr/bin/env bash
# Build controller-gen (sigs.k8s.io/controller-tools) from the Go module proxy
# once, into a cache outside the repository keyed by version, and print the
# binary's path. Usage:
#
#	$(hack/controller-gen.sh) object paths=./apis/... 
#
# or run it with arguments, which are passed to controller-gen:
#
#	hack/controller-gen.sh object crd paths=./apis/... output:crd:artifacts:config=deploy/crds
set -euo pipefail
VERSION="${CONTROLLER_TOOLS_VERSION:-v0.23.0}"
CACHE_ROOT="${CONTROLLER_GEN_CACHE:-$HOME/.cache/coffer/controller-gen}"
OUT="$CACHE_ROOT/$VERSION-$(go env GOOS)-$(go env GOARCH)"
BIN="$OUT/controller-gen"
if [[ ! -x $BIN ]]; then
  mkdir -p "$OUT"
  # go install pkg@version builds in module mode with controller-tools' own
  # go.mod, independent of this repository's dependencies.
  GOFLAGS=-buildvcs=false GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOBIN="$OUT" \
    go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$VERSION" >&2
fi
if [[ $# -eq 0 ]]; then
  echo "$BIN"
  exit 0
fi
exec "$BIN" "$@"
