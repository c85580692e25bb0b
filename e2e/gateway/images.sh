#!/usr/bin/env bash
# Builds the images that the conformance suite's base manifests
# (conformance/base/manifests.yaml of sigs.k8s.io/gateway-api/conformance v1.6.3) name, from
# their published Go source through the Go module proxy, without a registry or a daemon, as
# OCI archives that containerd imports under the exact upstream names (the way e2e/images
# packs lockstep's own images):
#
#   registry.k8s.io/gateway-api/echo-basic:v1.5.1       } both from conformance/echo-basic of
#   registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3 } the conformance module v1.6.3
#   registry.k8s.io/coredns/coredns:v1.12.2               from github.com/coredns/coredns v1.12.2
#
# Each image is what its upstream Dockerfile makes, on an empty base instead of
# distroless/static (which needs a registry): the static binary at /, the CA bundle, /tmp,
# the nonroot user 65532; coredns keeps the file capability cap_net_bind_service its
# Dockerfile gives it (setcap), so it binds port 53 as a non-root user.
#
# Usage: images.sh [OUT_DIR]   prints OUT_DIR (default: a cache folder keyed by this script,
#                              go.mod and go.sum); writes OUT_DIR/*.tar and OUT_DIR/images.txt
#                              ("file ref" lines, as e2e/images writes them)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${LOCKSTEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockstep}"
COREDNS_VERSION=v1.12.2
KEY="$(cat "$HERE/go.mod" "$HERE/go.sum" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
OUT="${1:-$CACHE/gateway-conformance-images-$KEY}"
log() { printf '[conformance images] %s\n' "$*" >&2; }
for tool in go umoci python3; do
  command -v "$tool" >/dev/null || { log "$tool is missing (e2e/setup installs it)"; exit 1; }
done
if [[ -f "$OUT/.complete" ]]; then echo "$OUT"; exit 0; fi
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
if [[ -f "$OUT/.complete" ]]; then echo "$OUT"; exit 0; fi
WORK="$(mktemp -d "$OUT/.work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export GOTOOLCHAIN=local CGO_ENABLED=0
start=$(date +%s)

# echo-basic, as docker/Dockerfile.echo-basic builds it, from the module this folder's go.mod
# requires (its `tool` line keeps echo-basic's dependencies in go.sum).
t=$(date +%s)
log "compiling sigs.k8s.io/gateway-api/conformance/echo-basic v1.6.3"
(cd "$HERE" && GOFLAGS=-mod=readonly go build -trimpath -ldflags="-buildid= -s -w" \
  -o "$WORK/echo-basic" sigs.k8s.io/gateway-api/conformance/echo-basic)
echo_seconds=$(( $(date +%s) - t ))
log "echo-basic: ${echo_seconds}s"

# coredns with its own go.mod and go.sum (go install MODULE@VERSION), as its Makefile builds it.
t=$(date +%s)
log "compiling github.com/coredns/coredns $COREDNS_VERSION (downloads its modules once)"
GOFLAGS=-buildvcs=false GOBIN="$WORK/gobin" go install -trimpath \
  -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
  "github.com/coredns/coredns@$COREDNS_VERSION"
coredns_seconds=$(( $(date +%s) - t ))
log "coredns: ${coredns_seconds}s"

# image NAME BINARY DEST USER PORTS REF...: an OCI archive OUT/NAME.tar holding BINARY at DEST,
# tagged with every REF (containerd names each by its io.containerd.image.name annotation).
image() {
  local name="$1" binary="$2" dest="$3" user="$4" ports="$5"; shift 5
  local layout="$WORK/$name.oci" bundle="$WORK/$name.bundle" tag="${1##*:}" ref port
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci unpack --image "$layout:$tag" "$bundle" >/dev/null
  local root="$bundle/rootfs"
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot"
  chmod 1777 "$root/tmp"
  chown 65532:65532 "$root/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$root/etc/group"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  install -m 0755 "$binary" "$root$dest"
  if [[ "$name" == coredns ]]; then
    # setcap cap_net_bind_service=+ep, written as the xattr itself (VFS_CAP_REVISION_2 with
    # the effective flag; CAP_NET_BIND_SERVICE is bit 10).
    python3 -c 'import os, struct, sys; os.setxattr(sys.argv[1], "security.capability", struct.pack("<5I", 0x02000001, 1 << 10, 0, 0, 0))' "$root$dest"
  fi
  umoci repack --image "$layout:$tag" "$bundle" >/dev/null
  local args=(--image "$layout:$tag" --os linux --architecture amd64
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt --config.workingdir /
    --config.entrypoint "$dest" --config.user "$user")
  for port in $ports; do args+=(--config.exposedports "$port"); done
  umoci config "${args[@]}" >/dev/null
  for ref in "${@:2}"; do umoci tag --image "$layout:$tag" "${ref##*:}"; done
  umoci gc --layout "$layout"
  python3 - "$layout/index.json" "$@" <<'PY'
import json, sys
path, refs = sys.argv[1], sys.argv[2:]
by_tag = {r.rsplit(":", 1)[1]: r for r in refs}
index = json.load(open(path))
for m in index["manifests"]:
    ann = m.setdefault("annotations", {})
    ref = by_tag[ann["org.opencontainers.image.ref.name"]]
    ann["io.containerd.image.name"] = ref
    ann["org.opencontainers.image.ref.name"] = ref
json.dump(index, open(path, "w"))
PY
  tar -C "$layout" -cf "$OUT/$name.tar.tmp" oci-layout index.json blobs
  mv "$OUT/$name.tar.tmp" "$OUT/$name.tar"
  for ref in "$@"; do echo "$name.tar $ref" >> "$WORK/images.txt"; done
  log "$* -> $OUT/$name.tar ($(du -h "$OUT/$name.tar" | cut -f1))"
}

image echo-basic "$WORK/echo-basic" /echo-basic 65532:65532 "" \
  registry.k8s.io/gateway-api/echo-basic:v1.5.1 registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3
image coredns "$WORK/gobin/coredns" /coredns 65532:65532 "53/tcp 53/udp" \
  "registry.k8s.io/coredns/coredns:$COREDNS_VERSION"
mv "$WORK/images.txt" "$OUT/images.txt"
printf 'built=%s\nseconds=%s\necho_basic_seconds=%s\ncoredns_seconds=%s\n' "$(date -u +%FT%TZ)" \
  "$(( $(date +%s) - start ))" "$echo_seconds" "$coredns_seconds" > "$OUT/.complete"
log "done in $(( $(date +%s) - start ))s: $OUT"
echo "$OUT"
