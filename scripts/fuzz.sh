#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 10 s each):
# the path gate + route matcher against the literal ChartMuseum port, scope
# parsing, Authorization parsing, token verification, and reading the chart
# an upload or provenance file names. Needs the nightly
# toolchain and cargo-fuzz (scripts/tools.sh cargo-fuzz installs it).
#
# usage: scripts/fuzz.sh [seconds per target] [target...]
# Long runs: scripts/fuzz.sh 3600 route   (the corpus grows in fuzz/corpus/)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-10}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(route scope credential token archive)
tools=${CHARTGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chartgate/tools}
export PATH="$tools/bin:$PATH"
rustup run nightly rustc --version >/dev/null 2>&1 \
    || { echo "fuzz: the nightly Rust toolchain is required (rustup toolchain install nightly)" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is missing: run scripts/tools.sh cargo-fuzz" >&2; exit 1; }
# No sanitizer: the crate forbids unsafe code, and libFuzzer's coverage
# guidance works without one.
cargo +nightly fuzz build -s none >/dev/null
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    out=$(cargo +nightly fuzz run "$t" -s none "corpus/$t" "seeds/$t" -- -max_total_time="$secs" 2>&1) \
        || { printf '%s\n' "$out" | tail -40; echo "fuzz: $t FAILED" >&2; exit 1; }
    printf 'fuzz: %-10s %s\n' "$t" "$(printf '%s\n' "$out" | grep -E '^Done [0-9]+ runs' | tail -1)"
done
