#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the Go module proxy into a cache outside the repo.
#
# k8s.io/kubernetes requires its staging modules at v0.0.0 with `replace => ./staging/...`;
# a module download has no staging folder, so we replace each one with its published
# v0.MINOR.PATCH tag. The list is read from k8s.io/kubernetes's own go.mod, never hard-coded.
#
# Usage: build.sh            prints the bin dir on stdout (progress on stderr)
# Env:   LOCKSTEP_K8S_VERSION (default 1.37.2), LOCKSTEP_CACHE (default ~/.cache/lockstep)
set -euo pipefail

K8S="${LOCKSTEP_K8S_VERSION:-1.37.2}"
CACHE="${LOCKSTEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockstep}"
OUT="$CACHE/k8s-v$K8S"
BIN="$OUT/bin"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '[controlplane build] %s\n' "$*" >&2; }

if [[ -x "$BIN/kube-apiserver" && -x "$BIN/etcd" && -f "$OUT/.complete" ]]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
# Another process may have finished the build while we waited for the lock.
if [[ -x "$BIN/kube-apiserver" && -x "$BIN/etcd" && -f "$OUT/.complete" ]]; then
  echo "$BIN"
  exit 0
fi

MINOR="${K8S#1.}"; MINOR="${MINOR%%.*}"
STAGING_VERSION="v0.${K8S#1.}"
MOD="$OUT/module"
rm -rf "$MOD"
mkdir -p "$MOD" "$BIN"
cd "$MOD"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
start=$(date +%s)

log "kubernetes v$K8S: reading its go.mod from the module proxy"
go mod init lockstep.dev/e2e-controlplane >/dev/null 2>&1
KMOD=$(go mod download -json "k8s.io/kubernetes@v$K8S" | sed -n 's/.*"GoMod": "\([^"]*\)".*/\1/p')
[[ -f "$KMOD" ]] || { log "could not download k8s.io/kubernetes@v$K8S"; exit 1; }
mapfile -t STAGING < <(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/src/k8s.io/.*|\1|p' "$KMOD" | sort -u)
(( ${#STAGING[@]} > 20 )) || { log "found only ${#STAGING[@]} staging modules in $KMOD"; exit 1; }
log "replacing ${#STAGING[@]} staging modules with $STAGING_VERSION"
args=()
for m in "${STAGING[@]}"; do args+=("-replace=$m=$m@$STAGING_VERSION"); done
go mod edit "${args[@]}"

log "resolving k8s.io/kubernetes v$K8S (downloads a few hundred MB once)"
go get "k8s.io/kubernetes@v$K8S" 2>&1 | tail -n 3 >&2
ETCD=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
log "etcd server pinned by kubernetes: $ETCD"
go get "go.etcd.io/etcd/server/v3@$ETCD" 2>&1 | tail -n 3 >&2

LD="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/component-base/version.gitTreeState=clean"
log "compiling etcd $ETCD"
go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
log "compiling kube-apiserver v$K8S (the long part: several minutes on 2 cores)"
go build -trimpath -ldflags "$LD" -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
printf 'kubernetes=v%s\netcd=%s\nbuilt=%s\nseconds=%s\n' "$K8S" "$ETCD" "$(date -u +%FT%TZ)" "$(( $(date +%s) - start ))" > "$OUT/.complete"
log "done in $(( $(date +%s) - start ))s: $BIN"
echo "$BIN"
