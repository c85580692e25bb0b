#!/usr/bin/env bash
# Restarts etcd and kube-apiserver of the control plane in DIR on the same ports and data,
# as a fault for chaos tests: clients see the apiserver go away and come back.
set -euo pipefail
DIR="$1"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KEEP_WATCHDOG=1 "$HERE/down.sh" "$DIR"
REUSE_PORTS=1 "$HERE/up.sh" "$DIR"
