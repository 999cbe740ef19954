#!/usr/bin/env bash
# Copied from the shared recipe (shared/envtest.md); the cache is outside the repo, keyed by version.
# Build kube-apiserver + etcd (+ optional kubectl) from source through the Go module proxy
# and cache them in a directory keyed by version. Prints the directory (use as KUBEBUILDER_ASSETS).
set -euo pipefail
K8S_VERSION="${K8S_VERSION:-1.37.2}"          # k8s.io/kubernetes vX.Y.Z <-> staging modules v0.Y.Z
ETCD_VERSION="${ETCD_VERSION:-3.7.3}"
WITH_KUBECTL="${WITH_KUBECTL:-0}"
CACHE_ROOT="${ENVTEST_BIN_CACHE:-$HOME/.cache/coffer/envtest}"
OUT="$CACHE_ROOT/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION-$(go env GOOS)-$(go env GOARCH)"
need=(kube-apiserver etcd); [[ $WITH_KUBECTL == 1 ]] && need+=(kubectl)
ok=1; for b in "${need[@]}"; do [[ -x $OUT/$b ]] || ok=0; done
if [[ $ok == 1 ]]; then echo "$OUT"; exit 0; fi

export GOFLAGS=-buildvcs=false GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT" "$WORK/apiserver" "$WORK/etcd"
STAGING="v0.${K8S_VERSION#*.}"                # 1.37.2 -> v0.37.2

# --- kube-apiserver: own module, k8s.io/kubernetes + every staging module pinned via replace
kmod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')"
{
  printf 'module envtestbins/apiserver\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
  sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\t\1 => \1 '"$STAGING"'#p' "$kmod"
  printf ')\n\ntool k8s.io/kubernetes/cmd/kube-apiserver\n'
  [[ $WITH_KUBECTL == 1 ]] && printf 'tool k8s.io/kubernetes/cmd/kubectl\n'
} > "$WORK/apiserver/go.mod"
# drop example modules that k8s.io/kubernetes does not require (sample-cli-plugin, sample-controller)
for m in $(sed -n 's#^\t\(k8s\.io/[a-z0-9-]*\) => .*#\1#p' "$WORK/apiserver/go.mod"); do
  grep -q "^\s*$m v0.0.0" "$kmod" || sed -i "\#^\t$m => #d" "$WORK/apiserver/go.mod"
done
LDF="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=${K8S_VERSION%%.*} -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
( cd "$WORK/apiserver" && go mod tidy \
  && go build -trimpath -ldflags "$LDF" -o "$OUT/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver \
  && mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver" \
  && if [[ $WITH_KUBECTL == 1 ]]; then go build -trimpath -ldflags "$LDF" -o "$OUT/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl && mv "$OUT/kubectl.tmp" "$OUT/kubectl"; fi ) >&2

# --- etcd: the server module's root package is `package main` calling etcdmain.Main(os.Args)
printf 'module envtestbins/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 v%s\n\ntool go.etcd.io/etcd/server/v3\n' "$ETCD_VERSION" > "$WORK/etcd/go.mod"
( cd "$WORK/etcd" && go mod tidy \
  && go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3 \
  && mv "$OUT/etcd.tmp" "$OUT/etcd" ) >&2
echo "$OUT"
