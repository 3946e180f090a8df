#!/usr/bin/env bash
# bench-baselines.sh: build the three baseline echo servers from
# ../shared/baselines (C epoll, tokio, monoio on io_uring) into a scratch
# directory and run `muse bench echo` with all three spawned beside muse's
# architectures, so every figure comes from one run.
#
# Usage: scripts/bench-baselines.sh [muse bench flags...]
#   e.g. scripts/bench-baselines.sh --scenario rr --repeat 5 --svg /tmp/rr.svg
# Environment: SCRATCH=/tmp/muse-baselines (where the baselines are built).
set -euo pipefail

cd "$(dirname "$0")/.."
SCRATCH=${SCRATCH:-/tmp/muse-baselines}
SHARED=../shared/baselines
mkdir -p "$SCRATCH"

echo "building the baselines into $SCRATCH" >&2
cc -O2 -o "$SCRATCH/echo-epoll" "$SHARED/echo-epoll/echo-epoll.c"
CARGO_TARGET_DIR="$SCRATCH/tokio-target" \
	cargo build --quiet --release --manifest-path "$SHARED/echo-tokio/Cargo.toml"
CARGO_TARGET_DIR="$SCRATCH/monoio-target" \
	cargo build --quiet --release --manifest-path "$SHARED/echo-monoio/Cargo.toml"
echo "building muse (release)" >&2
cargo build --quiet --release

exec target/release/muse bench echo \
	--spawn "c-epoll=$SCRATCH/echo-epoll --listen 127.0.0.1:0" \
	--spawn "tokio=$SCRATCH/tokio-target/release/echo-tokio --listen 127.0.0.1:0" \
	--spawn "monoio=$SCRATCH/monoio-target/release/echo-monoio --listen 127.0.0.1:0" \
	"$@"
