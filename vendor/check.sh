#!/usr/bin/env bash
# Checks the vendored hyper (vendor/README.md): runs hyper's own unit tests on the patched copy,
# checks that the copy is the published crate plus vendor/hyper.patch, and says how far its
# base is behind the newest hyper 1.x on crates.io.
#
# Usage: vendor/check.sh     (builds in a temp copy; nothing in the repository changes)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$HERE/hyper/Cargo.toml" | head -1)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
log() { printf '[vendor check] %s\n' "$*" >&2; }

# The published crate, from the registry cache cargo already filled (or fetched now), must be the
# vendored copy with the patch reverted.
log "comparing vendor/hyper with hyper $VERSION as published, plus vendor/hyper.patch"
mkdir -p "$WORK/fetch/src"
cat > "$WORK/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-hyper"
version = "0.0.0"
edition = "2021"
[dependencies]
hyper = "=$VERSION"
TOML
touch "$WORK/fetch/src/lib.rs"
cargo fetch --quiet --manifest-path "$WORK/fetch/Cargo.toml"
published="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "hyper-$VERSION" | head -1)"
[[ -n "$published" ]] || { log "hyper $VERSION not found in the registry cache"; exit 1; }
cp -r "$HERE/hyper" "$WORK/reverted"
patch --quiet -R -p1 -d "$WORK/reverted" < "$HERE/hyper.patch"
if ! diff -r -q "$published/src" "$WORK/reverted/src"; then
  log "vendor/hyper/src is not hyper $VERSION + vendor/hyper.patch"; exit 1
fi

# hyper's own unit tests, on the patched copy, outside the workspace (its own lockfile and target).
log "hyper's own unit tests on the patched copy (cargo test --lib --features full)"
cp -r "$HERE/hyper" "$WORK/test"
CARGO_TARGET_DIR="${LOCKSTEP_VENDOR_TARGET:-$WORK/target}" \
  cargo test --quiet --manifest-path "$WORK/test/Cargo.toml" --lib --features full

newest="$(cd "$WORK" && cargo info hyper@1 2>/dev/null | sed -n 's/^version: *\([0-9.]*\).*/\1/p' | head -1)"
if [[ -z "$newest" ]]; then
  log "could not read the newest hyper from the registry"
elif [[ "$newest" == "$VERSION" ]]; then
  log "vendored hyper $VERSION is the newest published 1.x"
else
  log "vendored hyper $VERSION is behind the newest published hyper $newest: re-vendor it (vendor/README.md)"
fi
