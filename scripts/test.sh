#!/usr/bin/env bash
# Runs every test: installs the pinned real tools the tests drive (see
# scripts/tools.sh), checks formatting and lints, then runs unit,
# integration and end-to-end tests, the bounded fuzz run, and the quick
# benchmark as a report (scripts/tools.sh bench installs Debian's wrk and
# nginx with apt-get if they are missing). This is the README's test command
# and what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# ChartMuseum comes from `go install` or, where the module proxy refuses it,
# from the source tree in CHARTMUSEUM_SRC (scripts/tools.sh defaults that to
# ../shared/third_party/chartmuseum-v0.16.5 when it exists).
scripts/tools.sh e2e cargo-fuzz deploy

export CHARTGATE_TOOLS=${CHARTGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chartgate/tools}

# Incremental state is of no use to a one-off run and was over half of
# target/ (14 of 24 GB on a developer's tree); CI disks can be small.
export CARGO_INCREMENTAL=0
echo "== disk: $(df -h . | awk 'NR==2 { print $4 " free of " $2 }')"
# The container image the image test unpacks and runs (a static release build).
echo "== image (scripts/image.sh)"
scripts/image.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
oracle_report=target/tmp/oracle-report.txt
rm -f "$oracle_report"
cargo test --locked --all-targets 2>&1 | tee "$log" || {
    # A linker's own message comes after its command line, which can run to
    # thousands of characters; repeat the short lines that say why.
    echo "== cargo test failed; disk: $(df -h . | awk 'NR==2 { print $4 " free" }')"
    grep -E '/ld: |collect2|No space|Killed|^error' "$log" | cut -c1-300 | tail -20
    exit 1
}
# The differential oracle's counts (tests/e2e/oracle.rs writes them).
if [ -f "$oracle_report" ]; then echo "== oracle"; cat "$oracle_report"; fi
echo "== fuzz (bounded: ${CHARTGATE_FUZZ_SECONDS:-10}s per target; scripts/fuzz.sh 3600 for long runs)"
scripts/fuzz.sh "${CHARTGATE_FUZZ_SECONDS:-10}"
# The quick benchmark, as a report: it fails the run only on the gross
# regressions bench/run.sh checks (a median ratio to nginx below 0.7, failed
# requests, upload RSS growth above 32 MB), never on timing noise.
echo "== benchmark (bench/run.sh --quick, about 3 minutes; fails only on gross regressions)"
bench_status=0
{ scripts/tools.sh bench && bench/run.sh --quick; } || bench_status=$?
[ "$bench_status" -eq 0 ] || echo "== benchmark: gross regression or harness failure (exit $bench_status); see above"
# The OCI pull path against the classic one, as a report only.
echo "== benchmark (bench/oci.sh --quick, under a minute; a report, never a failure)"
bench/oci.sh --quick || echo "== bench/oci.sh failed; see above"
# Helm's own traffic through chartgate + ChartMuseum against ChartMuseum's
# bearer mode alone, as a report only.
echo "== benchmark (bench/helm.sh --quick, under a minute; a report, never a failure)"
timeout 600 bench/helm.sh --quick || echo "== bench/helm.sh failed; see above"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$bench_status"
