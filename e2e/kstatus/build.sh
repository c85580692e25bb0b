#!/usr/bin/env bash
# Builds the kstatus judge (cached outside the repo, keyed by go.sum) and prints its path.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${LOCKSTEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockstep}"
KEY="$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go" | sha256sum | cut -c1-16)"
BIN="$CACHE/kstatus-$KEY/kstatus"
if [[ ! -x "$BIN" ]]; then
  mkdir -p "$(dirname "$BIN")"
  echo "[kstatus] building sigs.k8s.io/cli-utils kstatus judge" >&2
  (cd "$HERE" && GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -o "$BIN.tmp" . && mv "$BIN.tmp" "$BIN")
fi
echo "$BIN"
