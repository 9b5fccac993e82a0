#!/usr/bin/env bash
# Runs every check and test: format, lints, unit tests, and the whole-system
# tests against real ZooKeeper and real election-server processes.
# Installs ZooKeeper, promtool and Chromium (Debian packages zookeeper,
# prometheus, chromium) when missing and running as root.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "ZooKeeper (Debian package) for the whole-system tests"
scripts/zk.sh install

# Debian packages the tests use besides ZooKeeper: promtool (package
# prometheus) for the alert rules, chromium for the dashboard page.
need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
    step "Debian packages for the tests: ${need[*]}"
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "missing: ${need[*]}. Install Debian's packages as root: apt-get update && apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    command -v promtool >/dev/null || { echo "prometheus installed but promtool is missing" >&2; exit 1; }
    command -v chromium >/dev/null || { echo "chromium installed but not on PATH" >&2; exit 1; }
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "the engine does no I/O: no runtime, network, ZooKeeper or SQLite crate under election-engine"
if cargo tree -p election-engine -e normal --prefix none | grep -E '^(tokio|zookeeper-client|axum|hyper|reqwest|rusqlite) '; then
    echo "election-engine must not depend on the crates above (docs/ENGINE.md)" >&2
    exit 1
fi

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "build the binaries the tests run"
cargo build --workspace --bins

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

step "unit tests"
cargo test --workspace --exclude system-tests 2>&1 | tee -a "$LOG"

step "whole-system tests (real ZooKeeper, real processes; one at a time)"
cargo test -p system-tests --tests -- --test-threads=1 2>&1 | tee -a "$LOG"

# One closing line over every test binary (pipefail above already failed
# the script if any cargo test did).
awk '/^test result:/ { p += $4; f += $6 } END { printf "\ntests: %d passed, %d failed\n", p, f; exit (p == 0 || f > 0) }' "$LOG"
