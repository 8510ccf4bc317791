#!/usr/bin/env bash
# Builds Toxiproxy's server (github.com/Shopify/toxiproxy/v2, its `cmd/server`) from its Go module through
# the module proxy and caches it in its own directory keyed by that version. Integration tests put it between
# kaito-ctrl and the real kube-apiserver to cut, reset, black-hole and slow the connection at the wire.
# Idempotent: a second run reuses the cache and says so.
#
#   KAITO_CTRL_CACHE     cache root (default ~/.cache/kaito-ctrl)
#   TOXIPROXY_VERSION    pinned version (default below)
set -euo pipefail

TOXIPROXY_VERSION="${TOXIPROXY_VERSION:-v2.5.0}"
CACHE="${KAITO_CTRL_CACHE:-$HOME/.cache/kaito-ctrl}"
BIN="$CACHE/bin/toxiproxy-${TOXIPROXY_VERSION}"
WORK="$CACHE/build/toxiproxy-${TOXIPROXY_VERSION}"

log() { printf '[build-toxiproxy %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -f "$BIN/VERSIONS" && -x "$BIN/toxiproxy-server" ]]; then
  log "reusing cached Toxiproxy in $BIN (built $(sed -n 's/^built=//p' "$BIN/VERSIONS"))"
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "go is not installed; it is needed to build Toxiproxy"; exit 1; }
mkdir -p "$BIN" "$WORK"
start=$(date +%s)
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
log "toxiproxy-server: go install github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
(cd "$WORK" && GOBIN="$WORK/gobin" go install -ldflags "-s -w" \
  "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION")
mv "$WORK/gobin/server" "$BIN/toxiproxy-server"
{
  echo "toxiproxy=$TOXIPROXY_VERSION"
  echo "go=$(go env GOVERSION)"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "build_seconds=$(( $(date +%s) - start ))"
} > "$BIN/VERSIONS"
log "built in $(( $(date +%s) - start )) s into $BIN"
echo "$BIN"
