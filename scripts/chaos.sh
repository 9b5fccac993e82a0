#!/usr/bin/env bash
# Long real-process chaos runs: scripts/chaos.sh --minutes N [--seed S]
# (the short version runs in scripts/test.sh). Prints the seed to reproduce.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=5
SEED=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --minutes) MINUTES=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        *) echo "usage: scripts/chaos.sh --minutes N [--seed S]" >&2; exit 2 ;;
    esac
done
scripts/zk.sh install
cargo build --bins -q
export CHAOS_SECONDS=$((MINUTES * 60))
[[ -n $SEED ]] && export CHAOS_SEED=$SEED
cargo test -p system-tests --test chaos -- --nocapture
