#!/usr/bin/env bash
# Builds the helm CLI (helm.sh/helm/v4) from the Go module proxy into a cache outside the repo.
#
# Usage: build.sh            prints the path of the helm binary on stdout (progress on stderr)
# Env:   LOCKSTEP_HELM_VERSION (default 4.3.1), LOCKSTEP_CACHE (default ~/.cache/lockstep)
set -euo pipefail
V="${LOCKSTEP_HELM_VERSION:-4.3.1}"
CACHE="${LOCKSTEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockstep}"
OUT="$CACHE/helm-v$V"
log() { printf '[helm build] %s\n' "$*" >&2; }
if [[ -x "$OUT/bin/helm" && -f "$OUT/.complete" ]]; then echo "$OUT/bin/helm"; exit 0; fi
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
if [[ -x "$OUT/bin/helm" && -f "$OUT/.complete" ]]; then echo "$OUT/bin/helm"; exit 0; fi
rm -rf "$OUT/module"; mkdir -p "$OUT/module" "$OUT/bin"
cd "$OUT/module"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
start=$(date +%s)
go mod init lockstep.dev/e2e-helm >/dev/null 2>&1
log "resolving helm.sh/helm/v4@v$V"
go get "helm.sh/helm/v4@v$V" 2>&1 | tail -n 3 >&2
log "compiling helm v$V"
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=v$V" -o "$OUT/bin/helm" helm.sh/helm/v4/cmd/helm
printf 'helm=v%s\nbuilt=%s\nseconds=%s\n' "$V" "$(date -u +%FT%TZ)" "$(( $(date +%s) - start ))" > "$OUT/.complete"
log "done in $(( $(date +%s) - start ))s"
echo "$OUT/bin/helm"
