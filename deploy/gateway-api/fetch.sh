#!/usr/bin/env bash
# Copies the Gateway API standard-channel CRDs that lockstep serves (GatewayClass, Gateway,
# HTTPRoute, GRPCRoute, ReferenceGrant, BackendTLSPolicy, ListenerSet) from the published Go module into
# deploy/gateway-api/standard/, unmodified. The module comes through the Go module proxy into
# the Go module cache (outside the repository); its checksum is verified by the go command
# against the checksum database.
#
#   deploy/gateway-api/fetch.sh          # copy (run after changing VERSION)
#   deploy/gateway-api/fetch.sh --check  # exit 1 when the checked-in copy differs
#
# crds/tests/gateway_api_crds.rs runs the same comparison in the test suite.
set -euo pipefail

VERSION=v1.6.3
FILES=(
  gateway.networking.k8s.io_gatewayclasses.yaml
  gateway.networking.k8s.io_gateways.yaml
  gateway.networking.k8s.io_httproutes.yaml
  gateway.networking.k8s.io_grpcroutes.yaml
  gateway.networking.k8s.io_referencegrants.yaml
  gateway.networking.k8s.io_backendtlspolicies.yaml
  gateway.networking.k8s.io_listenersets.yaml
)

here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/standard"
# `go mod download` needs a module to run in; a throwaway one keeps the repository clean.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && go mod init lockstep.dev/fetch-gateway-api >/dev/null 2>&1)
dir="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$dir/config/crd/standard" ] || { echo "fetch.sh: no module dir for gateway-api@$VERSION" >&2; exit 1; }

if [ "${1:-}" = "--check" ]; then
  status=0
  for f in "${FILES[@]}"; do
    cmp -s "$dir/config/crd/standard/$f" "$dest/$f" || { echo "differs: $f" >&2; status=1; }
  done
  exit $status
fi

mkdir -p "$dest"
for f in "${FILES[@]}"; do
  install -m 0644 "$dir/config/crd/standard/$f" "$dest/$f"
done
echo "copied ${#FILES[@]} CRDs of gateway-api $VERSION into $dest"
