#!/usr/bin/env bash
# The static musl build (what the container image runs) beside the glibc build every other
# benchmark here measures, with nginx as the reference: requests per proxy CPU-second, user
# and system time per request, and memory per idle connection.
#
#   e2e/bench/musl.sh                   # builds both (release), then builds.sh and idle.sh
#   REPS=3 DURATION=6 e2e/bench/musl.sh
#
# The musl binary is built as the Dockerfile builds it (x86_64-unknown-linux-musl, static,
# with its allocator: mimalloc on musl), in a target directory of its own; rustup's musl
# target and Debian's musl-tools (musl-gcc, for ring's and mimalloc's C) are installed if
# missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
MUSL_TARGET_DIR="$TARGET_DIR/musl"
log() { echo "[bench] $*" >&2; }

if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  log "adding rustup's x86_64-unknown-linux-musl target"
  rustup target add x86_64-unknown-linux-musl >/dev/null
fi
if ! command -v musl-gcc >/dev/null; then
  log "installing musl-tools"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null
fi
log "building lockstep-proxy (release, glibc and static musl)"
(cd "$ROOT" && cargo build --release --locked -p lockstep-proxy --bin lockstep-proxy >/dev/null 2>&1)
(cd "$ROOT" && CC_x86_64_unknown_linux_musl=musl-gcc RUSTFLAGS="-C target-feature=+crt-static" \
  CARGO_TARGET_DIR="$MUSL_TARGET_DIR" cargo build --release --locked --target x86_64-unknown-linux-musl \
  -p lockstep-proxy --bin lockstep-proxy >/dev/null 2>&1)
copies=$(mktemp -d /tmp/lockstep-bench-musl.XXXXXX)
trap 'rm -rf "$copies"' EXIT
cp "$TARGET_DIR/release/lockstep-proxy" "$copies/glibc"
cp "$MUSL_TARGET_DIR/x86_64-unknown-linux-musl/release/lockstep-proxy" "$copies/musl"

MODES="ka new" "$ROOT/e2e/bench/builds.sh" "$copies/glibc" "$copies/musl"
for build in glibc musl; do
  echo "Memory per idle keep-alive connection, $build build:"
  LOCKSTEP="$copies/$build" "$ROOT/e2e/bench/idle.sh"
done
