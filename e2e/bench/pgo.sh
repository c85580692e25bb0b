#!/usr/bin/env bash
# A profile-guided build of lockstep-proxy, for the data-plane benchmarks: is the shipped
# build leaving speed behind?
#
#   e2e/bench/pgo.sh                      # prints the binary's path on its last line
#   LOCKSTEP=$(e2e/bench/pgo.sh | tail -1) e2e/bench/proxy.sh
#   e2e/bench/builds.sh target/release/lockstep-proxy "$(e2e/bench/pgo.sh | tail -1)"
#
# Three steps: a release build instrumented with `-Cprofile-generate`; a training run of it
# (standalone, one route to proxy.sh's nginx `return 200` backend, oha on CPU 0: TRAIN seconds
# of 64 keep-alive connections, then TRAIN seconds of a connection per request, 16 at a time;
# SIGTERM, so that the profile is written on the way out); `llvm-profdata` from Debian's
# llvm-22 (rustc 1.95's LLVM is 22; installed if missing) merges the profile, and a second
# release build uses it. Both builds have target dirs of their own under
# ${CARGO_TARGET_DIR:-target}/pgo (17 minutes on 2 cores with both empty; cached after that).
#
# What it is not: the build users get. The image (Dockerfile) and `cargo build --release` do
# not use a profile, and this one is trained on plain HTTP/1 only: code it never ran (TLS,
# HTTP/2, filters, retries) counts as cold and may come out slower. Benchmarks of this
# binary say what profile-guided optimisation could give, not what lockstep does today.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-bench-pgo.XXXXXX)
TRAIN=${TRAIN:-8}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/pgo
BACKEND_PORT=18980; PORT=18981; ADMIN_PORT=18982
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
LOCKSTEP=built-below   # bench_tools installs the tools and builds nothing
bench_tools
llvm_version=$(rustc -vV | awk '/^LLVM version/ {split($3, v, "."); print v[1]}')
profdata=llvm-profdata-$llvm_version
# llvm-profdata for rustc's LLVM
command -v "$profdata" >/dev/null || apt_install "llvm-$llvm_version"

raw="$TARGET/profiles"
rm -rf "$raw"; mkdir -p "$raw"
log "building the instrumented proxy"
RUSTFLAGS="-Cprofile-generate=$raw" cargo build -q --release --locked -p lockstep-proxy \
  --target-dir "$TARGET/generate" --manifest-path "$ROOT/Cargo.toml"

start_backend $BACKEND_PORT
write_bench_routes $BACKEND_PORT
start_lockstep "$TARGET/generate/release/lockstep-proxy" $PORT $ADMIN_PORT "$WORK/lockstep.log"
trained=$STARTED_PID
train() { taskset -c 0 oha --no-tui --output-format json -z "${TRAIN}s" -H "Host: bench.local" "$@" "http://127.0.0.1:$PORT/" >/dev/null; }
log "training: ${TRAIN} s keep-alive, ${TRAIN} s a connection per request"
train -c 64
train -c 16 --disable-keepalive
kill -TERM "$trained"; wait "$trained" || true
"$profdata" merge -o "$TARGET/merged.profdata" "$raw"

log "building with the profile"
RUSTFLAGS="-Cprofile-use=$TARGET/merged.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build -q --release --locked -p lockstep-proxy --target-dir "$TARGET/use" \
  --manifest-path "$ROOT/Cargo.toml"
echo "$TARGET/use/release/lockstep-proxy"
