#!/usr/bin/env bash
# Builds release binaries and everything a package needs into dist/:
# binaries, man pages and shell completions (generated at build time and
# embedded in the binaries), the systemd unit, an example configuration and
# the runbook.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist}
cargo build --release --bins -q
mkdir -p "$OUT/man/man1" "$OUT/completions" "$OUT/doc"
cp target/release/election-server target/release/openio "$OUT/"
"$OUT/election-server" --man > "$OUT/man/man1/election-server.1"
"$OUT/openio" man > "$OUT/man/man1/openio.1"
for shell in bash zsh fish; do
    "$OUT/election-server" --completions "$shell" > "$OUT/completions/election-server.$shell"
    "$OUT/openio" completion "$shell" > "$OUT/completions/openio.$shell"
done
cp packaging/election-server.service packaging/election-server.toml "$OUT/"
cp docs/OPERATIONS.md docs/API.md README.md "$OUT/doc/"
# The example configuration must be valid (data_dir aside, which is checked
# at start): fail the packaging otherwise.
"$OUT/election-server" --config packaging/election-server.toml --print-config > /dev/null
echo "$("$OUT/election-server" --version) packaged in $OUT/"
