#!/usr/bin/env bash
# Compiles the conformance suite wrapper (this folder's Go test, which calls
# sigs.k8s.io/gateway-api/conformance v1.6.3 unmodified) once with `go test -c`, into a cache
# outside the repo keyed by go.mod, go.sum and the test's source, so repeated runs do not
# rebuild. Concurrent callers wait on a lock.
#
# Usage: build.sh            prints the path of the test binary on stdout (progress on stderr)
# Env:   LOCKSTEP_CACHE (default ~/.cache/lockstep)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${LOCKSTEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockstep}"
KEY="$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE"/*.go | sha256sum | cut -c1-16)"
OUT="$CACHE/gateway-conformance-$KEY"
BIN="$OUT/conformance.test"
log() { printf '[conformance build] %s\n' "$*" >&2; }
if [[ -x "$BIN" && -f "$OUT/.complete" ]]; then echo "$BIN"; exit 0; fi
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
if [[ -x "$BIN" && -f "$OUT/.complete" ]]; then echo "$BIN"; exit 0; fi
# go.mod and go.sum as committed: a missing checksum is an error, never an edit.
export GOFLAGS=-mod=readonly GOTOOLCHAIN=local CGO_ENABLED=0
start=$(date +%s)
log "go test -c: the wrapper and sigs.k8s.io/gateway-api/conformance v1.6.3 (downloads the modules once)"
(cd "$HERE" && go test -c -trimpath -o "$BIN.tmp" .)
mv "$BIN.tmp" "$BIN"
printf 'built=%s\nseconds=%s\n' "$(date -u +%FT%TZ)" "$(( $(date +%s) - start ))" > "$OUT/.complete"
log "done in $(( $(date +%s) - start ))s: $BIN"
echo "$BIN"
