#!/usr/bin/env bash
# Builds h2spec (HTTP/2 conformance, github.com/summerwind/h2spec) from the Go module proxy,
# cached outside the repo keyed by its version, and prints its path. h2spec has no go.mod, so
# its dependencies resolve to their newest versions at build time (GOFLAGS=-mod=mod).
set -euo pipefail
VERSION=v2.2.1+incompatible
CACHE="${LOCKSTEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockstep}"
DIR="$CACHE/h2spec-${VERSION%%+*}"
BIN="$DIR/h2spec"
if [[ ! -x "$BIN" ]]; then
  mkdir -p "$DIR"
  echo "[h2spec] building github.com/summerwind/h2spec $VERSION" >&2
  (cd "$DIR" && GOBIN="$DIR/bin.tmp" GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 \
    go install -trimpath "github.com/summerwind/h2spec/cmd/h2spec@$VERSION" && mv "$DIR/bin.tmp/h2spec" "$BIN" && rmdir "$DIR/bin.tmp")
fi
echo "$BIN"
