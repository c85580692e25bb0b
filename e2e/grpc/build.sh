#!/usr/bin/env bash
# Builds the gRPC probe (grpc-go from the Go module proxy, cached outside the repo, keyed by
# go.sum) and prints its path.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${LOCKSTEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockstep}"
KEY="$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go" | sha256sum | cut -c1-16)"
BIN="$CACHE/grpc-probe-$KEY/grpc-probe"
if [[ ! -x "$BIN" ]]; then
  mkdir -p "$(dirname "$BIN")"
  echo "[grpc-probe] building grpc-go health client and server" >&2
  (cd "$HERE" && GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -o "$BIN.tmp" . && mv "$BIN.tmp" "$BIN")
fi
echo "$BIN"
