#!/usr/bin/env bash
# Benchmarks on real ZooKeeper and real processes (release build); rewrites
# BENCHMARKS.md. Options go to the bench program: --quick for a short run,
# --bases N, --failovers N, --writes N, --scale N.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/zk.sh install
echo "==> release build"
cargo build --release --bins -q
echo "==> bench (a few minutes)"
target/release/bench --out BENCHMARKS.md "$@"
