#!/usr/bin/env bash
# Builds Karpenter's kwok provider (sigs.k8s.io/karpenter, its `kwok` command) from its Go module
# through the module proxy, and caches the binary and the CRDs shipped in the same module version
# (NodePool, NodeClaim, KWOKNodeClass, ...) in its own directory keyed by that version, next to,
# not inside, the control-plane build. Idempotent: a second run reuses the cache and says so.
#
#   KAITO_CTRL_CACHE     cache root (default ~/.cache/kaito-ctrl)
#   KARPENTER_VERSION    pinned version (default below)
#   KARPENTER_GOTOOLCHAIN  the Go toolchain for this build only; Karpenter v1.15.0 declares
#                        `go 1.26.9`, newer than the local go1.26.8, so the approved go1.27.3 is
#                        fetched from the module proxy for this one build.
set -euo pipefail

KARPENTER_VERSION="${KARPENTER_VERSION:-v1.15.0}"
KARPENTER_GOTOOLCHAIN="${KARPENTER_GOTOOLCHAIN:-go1.27.3}"
CACHE="${KAITO_CTRL_CACHE:-$HOME/.cache/kaito-ctrl}"
BIN="$CACHE/bin/karpenter-${KARPENTER_VERSION}"
WORK="$CACHE/build/karpenter-${KARPENTER_VERSION}"

log() { printf '[build-karpenter %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

complete() {
  [[ -f "$BIN/VERSIONS" && -x "$BIN/karpenter-kwok" && -d "$BIN/crds" ]]
}

if complete; then
  log "reusing cached Karpenter in $BIN (built $(sed -n 's/^built=//p' "$BIN/VERSIONS"))"
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "go is not installed; it is needed to build Karpenter"; exit 1; }
mkdir -p "$BIN" "$WORK"
start=$(date +%s)
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export GOTOOLCHAIN="$KARPENTER_GOTOOLCHAIN"

log "karpenter-kwok: go install sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION with $GOTOOLCHAIN"
(cd "$WORK" && GOBIN="$WORK/gobin" go install -ldflags "-s -w" "sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION")
mv "$WORK/gobin/kwok" "$BIN/karpenter-kwok"

# The CRDs and the default instance-type catalogue of the very module version that was built.
moddir="$(cd "$WORK" && go mod download -json "sigs.k8s.io/karpenter@$KARPENTER_VERSION" \
  | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
[[ -d "$moddir" ]] || { log "module directory of sigs.k8s.io/karpenter@$KARPENTER_VERSION not found"; exit 1; }
rm -rf "$BIN/crds" && mkdir -p "$BIN/crds"
cp "$moddir"/kwok/charts/crds/*.yaml "$moddir"/kwok/apis/crds/*.yaml "$BIN/crds/"
cp "$moddir/kwok/cloudprovider/instance_types.json" "$BIN/default-instance-types.json"
chmod -R u+w "$BIN"

{
  echo "karpenter=$KARPENTER_VERSION"
  echo "go=$(go env GOVERSION)"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "build_seconds=$(( $(date +%s) - start ))"
} > "$BIN/VERSIONS"
log "built in $(( $(date +%s) - start )) s into $BIN"
cat "$BIN/VERSIONS" >&2
echo "$BIN"
