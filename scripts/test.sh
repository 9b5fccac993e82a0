#!/usr/bin/env bash
# Runs every check and test: format, lints, unit tests, and the whole-system
# tests against real ZooKeeper and real election-server processes.
# Installs ZooKeeper (Debian package) when missing and running as root.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "ZooKeeper (Debian package) for the whole-system tests"
scripts/zk.sh install

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "build the binaries the tests run"
cargo build --workspace --bins

step "unit tests"
cargo test --workspace --exclude system-tests

step "whole-system tests (real ZooKeeper, real processes; one at a time)"
cargo test -p system-tests -- --test-threads=1
