#!/usr/bin/env bash
# chartgate benchmark harness, on loopback. Compares, in interleaved rounds
# of alternating order:
#   origin  - nginx serving the fixtures directly (the upstream itself)
#   nginx   - nginx as a tuned plain reverse proxy in front of the origin
#   cached  - chartgate, one Bearer token reused (verdict-cache hits)
#   fresh   - chartgate with a one-entry verdict cache, cycling through
#             20,000 distinct tokens: a full RS256 verification per request
#   basic   - chartgate, Basic credentials (remembered API-key check)
# on a 10 KB and a 2 MB index.yaml and 64 KB and 5 MB charts; then token
# issuance over HTTP, a 100 MB upload (throughput, peak RSS growth),
# idle RSS and start-to-ready time.
#
# Placement: load generators on CPU 0, every server on CPU 1.
# usage: bench/run.sh [--quick]      (quick: 3 rounds of 3 s, for CI)
# Prints figures and ratios; exits non-zero only on gross regressions
# (median ratio to nginx < 0.7, failed requests, upload RSS growth > 32 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=10 secs=5 tokens=20000
if [ "${1:-}" = "--quick" ]; then rounds=3 secs=3 tokens=2000; fi
for tool in wrk nginx taskset curl; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required (apt-get install wrk nginx)" >&2; exit 1; }
done
cargo build --release --locked -q
gate=$(pwd)/target/release/chartgate
work=$(mktemp -d)
chmod 755 "$work"  # nginx workers run unprivileged
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# --- fixtures -------------------------------------------------------------
mkdir -p "$work/www/org1/repo1/charts" "$work/www/org1/big/charts"
# Text of about the right size (base64 turns 3 bytes into 4).
head -c $((10240 * 3 / 4)) /dev/urandom | base64 -w 100 > "$work/www/org1/repo1/index.yaml"
head -c $((2 * 1024 * 1024 * 3 / 4)) /dev/urandom | base64 -w 100 > "$work/www/org1/big/index.yaml"
head -c $((64 * 1024)) /dev/urandom > "$work/www/org1/repo1/charts/small-1.0.0.tgz"
head -c $((5 * 1024 * 1024)) /dev/urandom > "$work/www/org1/repo1/charts/big-1.0.0.tgz"
head -c $((100 * 1024 * 1024)) /dev/urandom > "$work/upload.bin"

# --- servers ----------------------------------------------------------------
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    upstream origin { server 127.0.0.1:18081; keepalive 64; }
    # The origin: static files, and an upload sink that reads and discards.
    server {
        listen 127.0.0.1:18081;
        root $work/www;
        client_max_body_size 0;
        location /api/ { client_body_buffer_size 1m; proxy_pass http://127.0.0.1:18083; }
    }
    server { listen 127.0.0.1:18083; client_max_body_size 0; location / { return 201; } }
    # nginx as a tuned plain reverse proxy.
    server {
        listen 127.0.0.1:18082;
        client_max_body_size 0;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering on;
            proxy_buffers 64 64k;
            proxy_buffer_size 64k;
            proxy_max_temp_file_size 0;
        }
    }
}
NGINX
# Waits up to 5 s for URL to answer; fails the run otherwise.
wait_up() {
    for _ in $(seq 500); do curl -s -o /dev/null "$1" && return 0; sleep 0.01; done
    echo "bench: $1 never came up (a port in use?)" >&2; exit 1
}
for port in 18080 18081 18082 18083 18084 19090 19094; do
    if ss -ltn "sport = :$port" | grep -q LISTEN; then echo "bench: port $port is already in use" >&2; exit 1; fi
done
taskset -c 1 nginx -c "$work/nginx.conf" & pids+=($!)
wait_up http://127.0.0.1:18082/

"$gate" keygen --out "$work" >/dev/null
export BENCH_KEY=cgk_bench-api-key-0123456789abcdef
cat > "$work/chartgate.toml" <<TOML
[listen]
addr = "127.0.0.1:18080"
admin_addr = "127.0.0.1:19090"
[upstream]
url = "http://127.0.0.1:18081"
max_upload_bytes = 209715200
[chartmuseum]
depth = 2
[auth]
realm = "http://localhost:18080/oauth/token"
service = "localhost:18080"
token_cache_capacity = 100000
[issuer]
signing_key = { file = "signing-key.pem" }
[[accounts]]
id = "bench"
key = { env = "BENCH_KEY" }
rules = [{ repos = "**", actions = ["pull", "push"] }]
TOML
start=$(date +%s%N)
RUST_LOG=error taskset -c 1 "$gate" serve --config "$work/chartgate.toml" & gate_pid=$!; pids+=($gate_pid)
for _ in $(seq 2000); do curl -sf -o /dev/null http://127.0.0.1:19090/healthz && break; sleep 0.005; done
ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
wait_up http://127.0.0.1:19090/healthz
# A second gateway that cannot keep verdicts, for the cache-miss case.
sed -e 's/^addr = "127.0.0.1:18080"/addr = "127.0.0.1:18084"/; s/19090/19094/' \
    -e 's/token_cache_capacity = 100000/token_cache_capacity = 1/' \
    "$work/chartgate.toml" > "$work/nocache.toml"
RUST_LOG=error taskset -c 1 "$gate" serve --config "$work/nocache.toml" & pids+=($!)
wait_up http://127.0.0.1:19094/healthz
idle_kb=$(awk '/VmRSS/ {print $2}' /proc/$gate_pid/status)

token=$("$gate" token --config "$work/chartgate.toml" --account bench --scope artifact-repository:org1/repo1:pull,push --scope artifact-repository:org1/big:pull --ttl 2h)
"$gate" token --config "$work/chartgate.toml" --account bench --scope artifact-repository:org1/repo1:pull --ttl 2h --count "$tokens" > "$work/tokens.txt"
cat > "$work/fresh.lua" <<LUA
local tokens = {}
for line in io.lines("$work/tokens.txt") do tokens[#tokens + 1] = line end
local i = 0
request = function()
    i = i % #tokens + 1
    return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA
basic="Basic $(printf 'bench:%s' "$BENCH_KEY" | base64 -w0)"

# --- load -------------------------------------------------------------------
failures=0
# wrk URL [extra args]: prints req/s; counts non-2xx and socket errors as failures.
load() {
    local out
    out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" "$@")
    local bad
    bad=$(awk '/Non-2xx/ {print $NF} /Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out" | paste -sd+ | bc 2>/dev/null || echo 0)
    [ "${bad:-0}" = "0" ] || { failures=$((failures + bad)); echo "bench: $bad failed requests in: wrk $*" >&2; }
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}
declare -A results
run_case() { # name url [wrk args...]
    local name=$1; shift
    results[$name]+="$(load "$@") "
}
idx=/org1/repo1/index.yaml
cases=(origin nginx cached fresh basic nginx-2m gate-2m nginx-64k gate-64k nginx-5m gate-5m)
for r in $(seq "$rounds"); do
    order=("${cases[@]}")
    if [ $((r % 2)) -eq 0 ]; then order=($(printf '%s\n' "${cases[@]}" | tac)); fi
    for c in "${order[@]}"; do
        case $c in
            origin) run_case origin "http://127.0.0.1:18081$idx" ;;
            nginx) run_case nginx "http://127.0.0.1:18082$idx" ;;
            cached) run_case cached -H "Authorization: Bearer $token" "http://127.0.0.1:18080$idx" ;;
            fresh) run_case fresh -s "$work/fresh.lua" "http://127.0.0.1:18084$idx" ;;
            basic) run_case basic -H "Authorization: $basic" "http://127.0.0.1:18080$idx" ;;
            nginx-2m) run_case nginx-2m "http://127.0.0.1:18082/org1/big/index.yaml" ;;
            gate-2m) run_case gate-2m -H "Authorization: Bearer $token" "http://127.0.0.1:18080/org1/big/index.yaml" ;;
            nginx-64k) run_case nginx-64k "http://127.0.0.1:18082/org1/repo1/charts/small-1.0.0.tgz" ;;
            gate-64k) run_case gate-64k -H "Authorization: Bearer $token" "http://127.0.0.1:18080/org1/repo1/charts/small-1.0.0.tgz" ;;
            nginx-5m) run_case nginx-5m "http://127.0.0.1:18082/org1/repo1/charts/big-1.0.0.tgz" ;;
            gate-5m) run_case gate-5m -H "Authorization: Bearer $token" "http://127.0.0.1:18080/org1/repo1/charts/big-1.0.0.tgz" ;;
        esac
    done
done

# median and min..max of per-round ratios a/b
ratio() { python3 - "$1" "$2" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
r = [x / y for x, y in zip(a, b)]
print(f"{statistics.median(a):>10.0f} req/s   ratio {statistics.median(r):.2f} ({min(r):.2f}..{max(r):.2f})")
PY
}
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):>10.0f} req/s")' $1; }

echo "chartgate benchmark: $(nproc) cores, $rounds rounds x ${secs}s, 32 connections; ratios are per round against nginx"
printf '%-40s %s\n' "origin (nginx static, no proxy)" "$(median "${results[origin]}")"
printf '%-40s %s\n' "nginx plain proxy, 10 KB index" "$(median "${results[nginx]}")"
worst=99
for c in cached fresh basic; do
    line=$(ratio "${results[$c]}" "${results[nginx]}")
    printf '%-40s %s\n' "chartgate $c, 10 KB index" "$line"
done
for pair in "2m:2 MB index" "64k:64 KB chart" "5m:5 MB chart"; do
    k=${pair%%:*}; label=${pair#*:}
    printf '%-40s %s\n' "chartgate $label" "$(ratio "${results[gate-$k]}" "${results[nginx-$k]}")"
done
# Gross regressions only: the cached path below 0.7x nginx.
gross=$(python3 -c 'import statistics,sys; a=[float(x) for x in sys.argv[1].split()]; b=[float(x) for x in sys.argv[2].split()]; print(int(statistics.median(x/y for x,y in zip(a,b)) < 0.7))' "${results[cached]}" "${results[nginx]}")

# --- token issuance over HTTP (RS256) -----------------------------------------
cat > "$work/issue.lua" <<'LUA'
wrk.method = "POST"
LUA
issue=$(load -s "$work/issue.lua" -H "Authorization: Bearer $BENCH_KEY" "http://127.0.0.1:18080/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull")
printf '%-40s %10.0f tokens/s\n' "token issuance RS256 over HTTP" "$issue"

# --- 100 MB upload ---------------------------------------------------------------
upload() { # url auth-header
    taskset -c 0 curl -s -o /dev/null -w '%{speed_upload}' -X POST -H "$2" -H 'Content-Type: application/octet-stream' \
        --data-binary @"$work/upload.bin" "$1"
}
# Peak RSS growth during the uploads alone: reset the kernel's high-water
# mark (clear_refs 5) so the download rounds' peaks do not count.
growth_mb=0
for streams in 1 4; do
    echo 5 > /proc/$gate_pid/clear_refs
    base_kb=$(awk '/VmRSS/ {print $2}' /proc/$gate_pid/status)
    t0=$(date +%s%N)
    ups=()
    for _ in $(seq "$streams"); do upload http://127.0.0.1:18080/api/org1/repo1/charts "Authorization: Bearer $token" >/dev/null & ups+=($!); done
    wait "${ups[@]}"
    g=$(bc -l <<<"$streams * 100 * 10^9 / ($(date +%s%N) - $t0)")
    peak_kb=$(awk '/VmHWM/ {print $2}' /proc/$gate_pid/status)
    t0=$(date +%s%N)
    ups=()
    for _ in $(seq "$streams"); do upload http://127.0.0.1:18082/api/org1/repo1/charts "X-None: 1" >/dev/null & ups+=($!); done
    wait "${ups[@]}"
    n=$(bc -l <<<"$streams * 100 * 10^9 / ($(date +%s%N) - $t0)")
    grown=$(( (peak_kb - base_kb) / 1024 ))
    [ "$grown" -le "$growth_mb" ] || growth_mb=$grown
    printf '%-40s %6.0f MB/s (nginx %6.0f MB/s, ratio %.2f), peak RSS growth %d MB\n' \
        "100 MB upload x $streams" "$g" "$n" "$(bc -l <<<"$g/$n")" "$grown"
done
printf '%-40s %d KB\n' "idle RSS" "$idle_kb"
printf '%-40s %d ms\n' "start to ready (/healthz answers)" "$ready_ms"

status=0
[ "$failures" -eq 0 ] || { echo "bench: FAIL: $failures failed requests"; status=1; }
[ "$gross" -eq 0 ] || { echo "bench: FAIL: cached-token proxying below 0.7x nginx"; status=1; }
[ "$growth_mb" -le 32 ] || { echo "bench: FAIL: upload RSS growth $growth_mb MB > 32 MB"; status=1; }
exit $status
