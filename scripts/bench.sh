#!/usr/bin/env bash
# Benchmarks on real ZooKeeper and real processes (release build); rewrites
# BENCHMARKS.md. Options go to the bench program: --quick for a short run,
# --bases N, --failovers N, --writes N, --scale N, --scale-also N (e.g. 100000,
# with ZK_HEAP=1g for the test ZooKeeper),
# --replicas N, --no-peers (skip the kazoo and Curator baselines), --only-scale (the
# scale, recovery and report rows alone).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/zk.sh install
# The peer recipes measured in the same run (kazoo, Curator): Debian packages.
scripts/peers.sh install || echo "bench: peer baselines unavailable (see above)" >&2
scripts/peers.sh build || true
echo "==> release build"
cargo build --release --bins -q
echo "==> bench (a few minutes)"
target/release/bench --out BENCHMARKS.md "$@"
