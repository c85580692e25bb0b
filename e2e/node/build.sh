#!/usr/bin/env bash
# Builds the node half of the one-node cluster from the same k8s.io/kubernetes module the
# control plane was built from (e2e/controlplane/build.sh): kubelet, kube-controller-manager,
# kube-scheduler and kube-proxy, into the same cache folder, next to kube-apiserver and etcd.
#
# Usage: build.sh            prints the bin dir on stdout (progress on stderr)
# Env:   LOCKSTEP_K8S_VERSION (default 1.37.2), LOCKSTEP_CACHE (default ~/.cache/lockstep)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S="${LOCKSTEP_K8S_VERSION:-1.37.2}"
CACHE="${LOCKSTEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockstep}"
OUT="$CACHE/k8s-v$K8S"
BIN="$OUT/bin"
CMDS=(kubelet kube-controller-manager kube-scheduler kube-proxy)
log() { printf '[node build] %s\n' "$*" >&2; }
done_already() { [[ -f "$OUT/.node-complete" ]] && for c in "${CMDS[@]}"; do [[ -x "$BIN/$c" ]] || return 1; done; }

if done_already; then echo "$BIN"; exit 0; fi
# The control plane build resolves the module (staging replaces, etcd pin) once.
"$HERE/../controlplane/build.sh" >/dev/null
exec 9>"$OUT/.lock"
flock 9
if done_already; then echo "$BIN"; exit 0; fi
cd "$OUT/module"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
MINOR="${K8S#1.}"; MINOR="${MINOR%%.*}"
LD="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/component-base/version.gitTreeState=clean"
start=$(date +%s)
for c in "${CMDS[@]}"; do
  [[ -x "$BIN/$c" ]] && continue
  t=$(date +%s)
  log "compiling $c v$K8S"
  go build -trimpath -ldflags "$LD" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
  mv "$BIN/$c.tmp" "$BIN/$c"
  log "$c: $(( $(date +%s) - t ))s"
done
printf 'kubernetes=v%s\nbuilt=%s\nseconds=%s\n' "$K8S" "$(date -u +%FT%TZ)" "$(( $(date +%s) - start ))" > "$OUT/.node-complete"
log "done in $(( $(date +%s) - start ))s: $BIN"
echo "$BIN"
