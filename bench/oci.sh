#!/usr/bin/env bash
# Pull throughput of a 64 KB chart through chartgate: Helm's OCI path against
# the classic one, on loopback, with the real ChartMuseum behind (the OCI
# bridge answers from ChartMuseum's API, so nginx cannot stand in for it).
# In interleaved rounds of alternating order, wrk (16 connections, one Bearer
# token) drives:
#   classic-chart  GET /org1/repo1/charts/c64-0.1.0.tgz
#   oci-blob       GET /v2/org1/repo1/c64/blobs/<sha256>   (the same bytes)
#   classic-pull   what `helm pull` sends to a classic repository, in turn:
#                  index.yaml, then the archive
#   oci-pull       what `helm pull oci://… --version 0.1.0` sends, in turn:
#                  the manifest by tag, the config blob, the archive blob
# and prints requests/s, pulls/s (a pull is 2 or 3 requests) and the OCI to
# classic ratio of each round, then their medians.
#
# Placement: wrk on CPU 0, chartgate and ChartMuseum on CPU 1.
# usage: bench/oci.sh [--quick]      (quick: 3 rounds of 3 s)
# Needs wrk, taskset, curl, and ChartMuseum and Helm from scripts/tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=10 secs=5
if [ "${1:-}" = "--quick" ]; then rounds=3 secs=3; fi
tools=${CHARTGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chartgate/tools}/bin
for tool in wrk taskset curl python3 bc ss; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required: run scripts/tools.sh bench" >&2; exit 1; }
done
for tool in chartmuseum helm3; do
    [ -x "$tools/$tool" ] || { echo "bench: $tools/$tool is missing: run scripts/tools.sh chartmuseum helm3" >&2; exit 1; }
done
cargo build --release --locked -q
gate=$(pwd)/target/release/chartgate
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for port in 18180 18181 19190; do
    if ss -ltn "sport = :$port" 2>/dev/null | grep -q LISTEN; then echo "bench: port $port is already in use" >&2; exit 1; fi
done
wait_up() {
    for _ in $(seq 1000); do curl -s -o /dev/null "$1" && return 0; sleep 0.01; done
    echo "bench: $1 never came up" >&2; exit 1
}

# --- a 64 KB chart (incompressible payload, so the archive stays 64 KB) ------
export HOME=$work/home HELM_CONFIG_HOME=$work/home/config HELM_CACHE_HOME=$work/home/cache HELM_DATA_HOME=$work/home/data
"$tools/helm3" create "$work/c64" >/dev/null
head -c $((57 * 1024)) /dev/urandom > "$work/c64/files.bin"
"$tools/helm3" package "$work/c64" --version 0.1.0 -d "$work" >/dev/null
chart=$work/c64-0.1.0.tgz
mkdir -p "$work/storage/org1/repo1"
cp "$chart" "$work/storage/org1/repo1/"

# --- servers -------------------------------------------------------------------
taskset -c 1 "$tools/chartmuseum" --listen-host 127.0.0.1 --port 18181 --depth 2 \
    --storage local --storage-local-rootdir "$work/storage" > "$work/cm.log" 2>&1 & pids+=($!)
wait_up http://127.0.0.1:18181/health
"$gate" keygen --out "$work" >/dev/null
export BENCH_KEY=cgk_bench-api-key-0123456789abcdef
cat > "$work/chartgate.toml" <<TOML
[listen]
addr = "127.0.0.1:18180"
admin_addr = "127.0.0.1:19190"
[upstream]
url = "http://127.0.0.1:18181"
[chartmuseum]
depth = 2
[auth]
realm = "http://127.0.0.1:18180/oauth/token"
service = "127.0.0.1:18180"
[issuer]
signing_key = { file = "signing-key.pem" }
[oci]
staging_dir = "staging"
[[accounts]]
id = "bench"
key = { env = "BENCH_KEY" }
rules = [{ repos = "**", actions = ["pull", "push"] }]
TOML
RUST_LOG=error taskset -c 1 "$gate" serve --config "$work/chartgate.toml" & pids+=($!)
wait_up http://127.0.0.1:19190/healthz
token=$("$gate" token --config "$work/chartgate.toml" --account bench \
    --scope artifact-repository:org1/repo1:pull --ttl 2h)
base=http://127.0.0.1:18180
auth="Authorization: Bearer $token"

# The OCI objects, as Helm would find them.
manifest=$(curl -sf -H "$auth" -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$base/v2/org1/repo1/c64/manifests/0.1.0")
read -r config layer <<<"$(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); print(m["config"]["digest"], m["layers"][0]["digest"])' "$manifest")"
size=$(stat -c %s "$chart")
# Both routes must give the archive's bytes before anything is timed.
curl -sf -H "$auth" "$base/v2/org1/repo1/c64/blobs/$layer" | cmp - "$chart"
curl -sf -H "$auth" "$base/org1/repo1/charts/c64-0.1.0.tgz" | cmp - "$chart"
[ "$layer" = "sha256:$(sha256sum "$chart" | cut -d' ' -f1)" ] || { echo "bench: layer digest is not the archive's" >&2; exit 1; }

# A wrk script cycling through PATHS (space-separated) on each connection.
cycle() {
    cat > "$work/$1.lua" <<LUA
local paths = {}
for p in string.gmatch("$2", "%S+") do paths[#paths + 1] = p end
local i = 0
request = function()
    i = i % #paths + 1
    return wrk.format("GET", paths[i], { ["Authorization"] = "Bearer $token" })
end
LUA
}
cycle classic-chart "/org1/repo1/charts/c64-0.1.0.tgz"
cycle oci-blob "/v2/org1/repo1/c64/blobs/$layer"
cycle classic-pull "/org1/repo1/index.yaml /org1/repo1/charts/c64-0.1.0.tgz"
cycle oci-pull "/v2/org1/repo1/c64/manifests/0.1.0 /v2/org1/repo1/c64/blobs/$config /v2/org1/repo1/c64/blobs/$layer"
declare -A per_pull=([classic-chart]=1 [oci-blob]=1 [classic-pull]=2 [oci-pull]=3)

# Requests per second of one case.
rate() {
    local out
    out=$(taskset -c 0 wrk -t1 -c16 -d"${secs}s" -s "$work/$1.lua" "$base" 2>&1)
    if grep -q 'Non-2xx' <<<"$out"; then echo "bench: $1 had failed requests:" >&2; echo "$out" >&2; exit 1; fi
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}
echo "64 KB chart ($size bytes), $rounds rounds of ${secs}s, wrk -c16 on CPU 0, chartgate + ChartMuseum on CPU 1"
printf '%-6s %14s %14s %7s %14s %14s %7s\n' round classic-chart oci-blob ratio classic-pull/s oci-pull/s ratio
blob_ratios=() pull_ratios=()
cases=(classic-chart oci-blob classic-pull oci-pull)
for r in $(seq "$rounds"); do
    declare -A got=()
    order=("${cases[@]}")
    if [ $((r % 2)) -eq 0 ]; then order=(oci-pull classic-pull oci-blob classic-chart); fi
    for c in "${order[@]}"; do got[$c]=$(rate "$c"); done
    pulls_c=$(echo "${got[classic-pull]} / ${per_pull[classic-pull]}" | bc -l)
    pulls_o=$(echo "${got[oci-pull]} / ${per_pull[oci-pull]}" | bc -l)
    br=$(echo "${got[oci-blob]} / ${got[classic-chart]}" | bc -l)
    pr=$(echo "$pulls_o / $pulls_c" | bc -l)
    blob_ratios+=("$br") pull_ratios+=("$pr")
    printf '%-6s %14.0f %14.0f %7.2f %14.0f %14.0f %7.2f\n' "$r" "${got[classic-chart]}" "${got[oci-blob]}" "$br" "$pulls_c" "$pulls_o" "$pr"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf 'median OCI/classic: archive %.2f, whole pull %.2f\n' "$(median "${blob_ratios[@]}")" "$(median "${pull_ratios[@]}")"
