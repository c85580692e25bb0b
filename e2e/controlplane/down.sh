#!/usr/bin/env bash
# Stops the control plane started by up.sh DIR: exactly the processes in its pid files.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="$1"
# shellcheck source=pidfile.sh
source "$HERE/pidfile.sh"
stop() { stop_pidfile "$DIR/$1.pid"; }
stop apiserver
stop etcd
# The watchdog may be the caller; it exits by itself once apiserver.pid is gone (a restart
# keeps it: it is still watching for the test process).
[[ -n "${KEEP_WATCHDOG:-}" ]] || rm -f "$DIR/watchdog.pid"
