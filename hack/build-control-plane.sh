#!/usr/bin/env bash
# Builds the real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) and kwok from their Go modules through the module proxy, and caches
# the binaries outside the repository keyed by their versions. Idempotent: a second run reuses
# the cache and says so.
#
#   KAITO_CTRL_CACHE   cache root (default ~/.cache/kaito-ctrl)
#   K8S_VERSION, KWOK_VERSION   pinned versions (defaults below)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"  # only to prove the Helm chart renders the same objects as kustomize
# Staging modules are published as v0.<minor>.<patch> next to k8s.io/kubernetes v1.<minor>.<patch>.
STAGING_VERSION="v0${K8S_VERSION#v1}"
CACHE="${KAITO_CTRL_CACHE:-$HOME/.cache/kaito-ctrl}"
KEY="k8s-${K8S_VERSION}_kwok-${KWOK_VERSION}"
BIN="$CACHE/bin/$KEY"
WORK="$CACHE/build/$KEY"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

log() { printf '[build-control-plane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

complete() {
  [[ -f "$BIN/VERSIONS" ]] || return 1
  for c in "${COMPONENTS[@]}"; do [[ -x "$BIN/$c" ]] || return 1; done
  [[ -d "$BIN/kwok-stages" ]] || return 1
}

if complete; then
  log "reusing cached binaries in $BIN (built $(sed -n 's/^built=//p' "$BIN/VERSIONS"))"
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "go is not installed; it is needed to build the control plane"; exit 1; }
mkdir -p "$BIN" "$WORK"
start=$(date +%s)
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

log "resolving k8s.io/kubernetes@$K8S_VERSION"
gomod=$(cd "$WORK" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[[ -f "$gomod" ]] || { log "could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }

{
  echo "module kaito-ctrl.local/controlplane"
  echo
  echo "go 1.24"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  # Every staging module k8s.io/kubernetes replaces with a local path is taken from the proxy instead.
  sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/src/.*#\t\1 => \1 '"$STAGING_VERSION"'#p' "$gomod"
  echo ")"
} > "$WORK/go.mod"

cat > "$WORK/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO

log "go mod tidy (about 10 s warm, longer on a cold module cache)"
(cd "$WORK" && go mod tidy)

LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
build() {
  local name=$1 pkg=$2 t0
  if [[ -x "$BIN/$name" ]]; then log "$name: already built"; return; fi
  t0=$(date +%s)
  log "$name: building $pkg (this is the slow part on a cold cache)"
  (cd "$WORK" && go build -ldflags "$LDFLAGS" -o "$BIN/$name.tmp" "$pkg")
  mv "$BIN/$name.tmp" "$BIN/$name"
  log "$name: done in $(( $(date +%s) - t0 )) s"
}
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubectl k8s.io/kubernetes/cmd/kubectl

if [[ ! -x "$BIN/kwok" ]]; then
  t0=$(date +%s)
  log "kwok: go install sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  GOBIN="$WORK/gobin" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv "$WORK/gobin/kwok" "$BIN/kwok"
  log "kwok: done in $(( $(date +%s) - t0 )) s"
fi

if [[ ! -x "$BIN/helm" ]]; then
  t0=$(date +%s)
  log "helm: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  GOBIN="$WORK/gobin" go install -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$WORK/gobin/helm" "$BIN/helm"
  log "helm: done in $(( $(date +%s) - t0 )) s"
fi

# kwok needs Stage objects to simulate node and pod lifecycles; they ship inside its module.
kwokdir="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
rm -rf "$BIN/kwok-stages.tmp" && mkdir -p "$BIN/kwok-stages.tmp"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/*.yaml pod/fast/pod-ready.yaml \
         pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  for g in $kwokdir/$f; do
    [[ "$(basename "$g")" == kustomization.yaml ]] && continue  # a kustomize index, not a Stage
    cp "$g" "$BIN/kwok-stages.tmp/$(echo "${g#"$kwokdir"/}" | tr / _)"
  done
chmod -R u+w "$BIN/kwok-stages.tmp"
done
rm -rf "$BIN/kwok-stages" && mv "$BIN/kwok-stages.tmp" "$BIN/kwok-stages"

{
  echo "kubernetes=$K8S_VERSION"
  echo "etcd=$(cd "$WORK" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
  echo "kwok=$KWOK_VERSION"
  echo "helm=$HELM_VERSION"
  echo "go=$(go env GOVERSION)"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "build_seconds=$(( $(date +%s) - start ))"
} > "$BIN/VERSIONS"
log "built in $(( $(date +%s) - start )) s into $BIN"
cat "$BIN/VERSIONS" >&2
echo "$BIN"
