#!/usr/bin/env bash
# Runs the differential oracle alone with N generated requests (default
# 10,000, what the test command runs): chartgate against the real
# ChartMuseum v0.16.5 in its own --bearer-auth mode, at depths 0-3 and with a
# context path (tests/e2e/oracle.rs). Prints the report; exits non-zero on
# any bypass or unexplained stricter decision.
#
# usage: scripts/oracle.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
case $n in '' | *[!0-9]*) echo "usage: scripts/oracle.sh [N]" >&2; exit 64 ;; esac
scripts/tools.sh chartmuseum helm3 helm-push
export CARGO_INCREMENTAL=0
CHARTGATE_ORACLE_REQUESTS=$n cargo test --locked --test e2e oracle:: -- --nocapture
