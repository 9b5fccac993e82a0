#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz) of the parsers and
# of the state machine: scripts/fuzz.sh [--seconds N] [target...]
# Targets: node_name names version master_node fsm (all by default).
# First replays fuzz/regressions/ (inputs that crashed once, now fixed).
# On the stable toolchain, cargo-fuzz's flags need RUSTC_BOOTSTRAP=1; no
# sanitizer is used (the code is safe Rust: panics are what we look for).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=60
TARGETS=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --seconds) SECONDS_EACH=$2; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done
[[ ${#TARGETS[@]} -eq 0 ]] && TARGETS=(node_name names version master_node fsm)
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (once)..."
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
FLAGS=(-O -a -s none)
cargo fuzz build "${FLAGS[@]}"
for f in regressions/*; do
    target=${f#regressions/}
    target=${target%%-*}
    [[ $target == master ]] && target=master_node
    [[ $target == node ]] && target=node_name
    echo "replaying $f on $target"
    cargo fuzz run "${FLAGS[@]}" "$target" "$f" >/dev/null 2>&1 || { echo "regression $f crashes again" >&2; exit 1; }
done
for t in "${TARGETS[@]}"; do
    echo "==> fuzzing $t for ${SECONDS_EACH}s"
    cargo fuzz run "${FLAGS[@]}" "$t" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1 2>&1 \
        | grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|Done)|panicked|crash-' || true
    if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
        echo "crash found in $t: see fuzz/artifacts/$t" >&2
        exit 1
    fi
done
