#!/usr/bin/env bash
# chartgate benchmark harness, on loopback. Compares, in interleaved rounds
# of alternating order:
#   origin  - nginx serving the fixtures directly (the upstream itself)
#   nginx   - nginx as a tuned plain reverse proxy in front of the origin
#   cached  - chartgate, one Bearer token reused (verdict-cache hits)
#   fresh   - chartgate with a one-entry verdict cache, cycling through
#             20,000 distinct tokens: a full RS256 verification per request
#   basic   - chartgate, Basic credentials (remembered API-key check)
# on a 10 KB and a 2 MB index.yaml and 64 KB and 5 MB charts. In the same
# rounds, at a fixed offered load well below saturation (about 3,000 req/s
# on the 10 KB index): the origin, nginx as a proxy in its own process, and
# chartgate cached, for CPU time per request of the proxy process alone and
# median/p99 latency (the proxy's added median latency is its median minus
# the origin's in the same round). Then token issuance over HTTP, a 100 MB
# upload (throughput against nginx, peak RSS growth), idle RSS and
# start-to-ready time.
#
# Same-job peers (bench/peers/, issue 15), in the same interleaved rounds:
# oauth2-proxy and Apache httpd + mod_auth_openidc, each verifying the RS256
# token's signature, exp, iss and aud on every request before proxying to
# the same origin, with the same token. Each is checked first (401/403
# without a token and to expired, wrong-audience, wrong-issuer and
# bad-signature tokens; 200 with the bench token); the run stops if one
# fails. Measured: the 10 KB index with the cached token's case, the 64 KB
# chart, and the fresh case's 20,000 tokens; the ratio is chartgate / peer
# per round. The quick run measures the peers on the 10 KB index only (two
# runs per round, about 20 s). A peer's speed, and a peer's failed requests,
# are reported and never fail the run.
#
# The bare hyper forwarder (bench/forwarder.rs: hyper 1 + hyper-util's
# pooled client, the same allocator and runtime choice, no auth, no policy)
# runs the 10 KB and 64 KB cases in the same rounds: chartgate / forwarder
# per round is what chartgate's auth and policy cost on top of hyper.
#
# Scale with cores, in the same rounds: chartgate with 1 and with 2 worker
# threads and nginx with 1 and 2 worker processes, each free to use both
# CPUs, at a fixed offered load about half of what one core serves
# (about 12,000 req/s of the 10 KB index): CPU time per request of the
# whole proxy process(es), median and p99 latency.
#
# Placement: load generators on CPU 0, every server on CPU 1 (except the
# scale-with-cores servers, on both).
# usage: bench/run.sh [--quick]      (quick: 3 rounds of 3 s, for CI)
# Needs wrk, nginx, taskset, bc, curl, ss, openssl, apache2 with
# mod_auth_openidc and oauth2-proxy: scripts/tools.sh bench installs them.
# Prints figures and ratios; exits non-zero only on gross regressions: a
# median ratio to nginx below its floor in any case that has one (0.7 for
# 2 MB and 5 MB; 0.55 for cached, basic and 64 KB; 0.5 for uploads; 0.25 for
# fresh: see the floors below), chartgate / forwarder below 0.7, failed requests, upload RSS growth above 32 MB,
# or a peer that fails its check. CPU and latency at the fixed load are
# reported, never gated.
set -euo pipefail
cd "$(dirname "$0")/.."
began=$(date +%s)
rounds=10 secs=5 tokens=20000 quick=
if [ "${1:-}" = "--quick" ]; then rounds=3 secs=3 tokens=2000 quick=1; fi
# Fixed offered load: each of the 32 connections pauses a random time of this
# mean before each request, so they offer about 32 / 10 ms = 3,200 req/s less
# the time a response takes (see fixed.lua below).
fixed_pause_ms=10
# The scale-with-cores load: 3 ms mean pause, about 2.5 ms once wrk rounds
# it down, so about 32 / 2.5 ms = 12,800 req/s less the response time.
scale_pause_ms=3
for tool in wrk nginx taskset bc curl ss getconf python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required: run scripts/tools.sh bench (Debian's wrk nginx util-linux bc curl iproute2)" >&2; exit 1; }
done
clk_tck=$(getconf CLK_TCK)
# The same-job peers: their configs, checks and discovery documents.
source bench/peers/peers.sh
peers_require
cargo build --release --locked -q
cargo build --release --locked -q --example forwarder
build_s=$(( $(date +%s) - began ))
gate=$(pwd)/target/release/chartgate
work=$(mktemp -d)
chmod 755 "$work"  # nginx workers run unprivileged
gate_url=http://127.0.0.1:18080
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
# nginx as a tuned plain reverse proxy, listening on port $1.
proxy_server() {
    cat <<NGINX
    server {
        listen 127.0.0.1:$1;
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
NGINX
}
# nginx_conf NAME BODY [WORKERS]: an nginx config (one worker unless told)
# with the settings every nginx process here shares.
nginx_conf() {
    cat > "$work/$1.conf" <<NGINX
worker_processes ${3:-1};
daemon off;
pid $work/$1.pid;
error_log $work/$1-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
$2
}
NGINX
}
# nginx.conf: the origin alone: static files, and an upload sink that reads
# and discards.
nginx_conf nginx "$(cat <<NGINX
    server {
        listen 127.0.0.1:18081;
        root $work/www;
        client_max_body_size 0;
        location /api/ { client_body_buffer_size 1m; proxy_pass http://127.0.0.1:18083; }
    }
    server { listen 127.0.0.1:18083; client_max_body_size 0; location / { return 201; } }
$(peers_nginx_server)
NGINX
)"
# proxy.conf: nginx as a tuned plain reverse proxy, in its own process as
# it would be deployed, like chartgate: a proxy sharing the origin's worker
# would skip the context switches chartgate pays, and its CPU time would mix
# with the origin's.
nginx_conf proxy "    upstream origin { server 127.0.0.1:18081; keepalive 64; }
$(proxy_server 18085)"
# The same proxy for the scale-with-cores case, with 1 and with 2 workers.
for n in 1 2; do
    nginx_conf "proxy-w$n" "    upstream origin { server 127.0.0.1:18081; keepalive 64; }
$(proxy_server $((18091 + n)))" "$n"
done
# Waits up to 5 s for URL to answer; fails the run otherwise.
wait_up() {
    for _ in $(seq 500); do curl -s -o /dev/null "$1" && return 0; sleep 0.01; done
    echo "bench: $1 never came up (a port in use?)" >&2; exit 1
}
for port in 8080 8443 9090 18080 18081 18083 18084 18085 18086 18087 18088 18089 18090 18091 18092 18093 19090 19091 19092 19094; do
    if ss -ltn "sport = :$port" | grep -q LISTEN; then echo "bench: port $port is already in use" >&2; exit 1; fi
done
# CPU time (utime + stime, in clock ticks) of processes, all their
# threads, summed: cpu_ticks "PID [PID...]".
cpu_ticks() {
    local s pid total=0
    for pid in $1; do
        s=$(<"/proc/$pid/stat")
        s=${s##*) }        # past "pid (comm) ": field 3 (state) is now $1
        set -- $s
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}
# nginx's workers do all the work; the master only forks them.
# nginx_worker MASTER [COUNT]: prints the pids of its COUNT (1) workers.
nginx_worker() {
    local master=$1 want=${2:-1} kids
    for _ in $(seq 100); do
        kids=$(cat "/proc/$master/task/$master/children" 2>/dev/null || pgrep -P "$master" || true)
        set -- $kids
        [ $# -ne "$want" ] || { echo "$kids"; return 0; }
        sleep 0.05
    done
    echo "bench: expected $want nginx worker(s) under pid $master, found: ${kids:-none}" >&2; exit 1
}
taskset -c 1 nginx -c "$work/nginx.conf" & nginx_pid=$!; pids+=($nginx_pid)
taskset -c 1 nginx -c "$work/proxy.conf" & proxy_pid=$!; pids+=($proxy_pid)
wait_up http://127.0.0.1:18081/
wait_up http://127.0.0.1:18085/
origin_worker=$(nginx_worker "$nginx_pid")
proxy_worker=$(nginx_worker "$proxy_pid")
declare -A scale_pids
for n in 1 2; do
    taskset -c 0,1 nginx -c "$work/proxy-w$n.conf" & pids+=($!)
    wait_up "http://127.0.0.1:$((18091 + n))/"
    scale_pids[nginx-w$n]=$(nginx_worker "$!" "$n")
done
taskset -c 1 target/release/examples/forwarder 127.0.0.1:18088 127.0.0.1:18081 >/dev/null & pids+=($!)
wait_up http://127.0.0.1:18088/

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
# The issuer URL whose static discovery document the peers read.
issuer = "$peer_issuer"
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
# Scale with cores: the same gateway with 1 and with 2 worker threads, free
# to run on both CPUs.
for n in 1 2; do
    sed -e "s/^addr = \"127.0.0.1:18080\"/addr = \"127.0.0.1:$((18089 + n))\"\nworker_threads = $n/" \
        -e "s/19090/$((19090 + n))/" "$work/chartgate.toml" > "$work/gate-w$n.toml"
    RUST_LOG=error taskset -c 0,1 "$gate" serve --config "$work/gate-w$n.toml" & pids+=($!)
    scale_pids[gate-w$n]=$!
    wait_up "http://127.0.0.1:$((19090 + n))/healthz"
done
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
peers_start
peers_check
# Fixed offered load with wrk's delay() hook: before each request a
# connection pauses an exponentially distributed time (wrk rounds it down to
# whole ms), so the 32 connections' requests arrive roughly as a Poisson
# stream of 32 / (pause + response time) per ms, whatever the server's
# capacity. wrk's latency excludes the pause. done() prints what the report
# needs: requests completed, run time (us), median and p99 latency (us).
fixed_lua() { # FILE MEAN-PAUSE-MS
    cat > "$1" <<LUA
math.randomseed(6)
local mean = $2
delay = function() return -mean * math.log(1 - math.random()) end
done = function(summary, latency, requests)
    io.write(string.format("FIXED %d %d %.0f %.0f\n", summary.requests, summary.duration,
        latency:percentile(50), latency:percentile(99)))
end
LUA
}
fixed_lua "$work/fixed.lua" "$fixed_pause_ms"
fixed_lua "$work/scale.lua" "$scale_pause_ms"

# --- load -------------------------------------------------------------------
failures=0
# count_failures WRK-OUTPUT WHAT: adds its non-2xx/3xx responses and
# connect/read/write errors to $failures (in this shell: never call it inside
# $(...)). wrk's "timeout" count is only requests slower than 2 s, which still
# complete: timing, so reported in $slow and not a failure.
slow=0
# A peer's failed requests are the peer's: counted per case in
# peer_failures, reported, and never a failure of the run.
declare -A peer_failures
failing_peer=
count_failures() {
    local bad late
    bad=$(awk '/Non-2xx/ {print $NF} /Socket errors/ {gsub(",", ""); print $4 + $6 + $8}' <<<"$1" | paste -sd+ | bc 2>/dev/null || echo 0)
    if [ -n "$failing_peer" ] && [ "${bad:-0}" != "0" ]; then
        peer_failures[$failing_peer]=$(( ${peer_failures[$failing_peer]:-0} + bad ))
        echo "bench: $bad failed requests for the peer case $failing_peer at $2 (reported, not a failure of the run)" >&2
        bad=0
    fi
    [ "${bad:-0}" = "0" ] || { failures=$((failures + bad)); echo "bench: $bad failed requests for $2" >&2; }
    late=$(awk '/Socket errors/ {print $NF}' <<<"$1")
    [ "${late:-0}" = "0" ] || { slow=$((slow + late)); echo "bench: $late requests over wrk's 2 s timeout (not a failure) for $2" >&2; }
}
# load [wrk args...] URL: sets $rps.
load() {
    local out
    out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" "$@")
    count_failures "$out" "${*: -1}"
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
}
declare -A results
run_case() { # name [wrk args...] url
    local name=$1; shift
    load "$@"
    results[$name]+="$rps "
}
# peer_case NAME [wrk args...] URL: run_case for a same-job peer.
peer_case() {
    failing_peer=$1
    run_case "$@"
    failing_peer=
}
# fixed_case NAME "PID..." [wrk args...] URL: one run at the fixed offered
# load ($load_lua: fixed.lua unless told); records
# "requests,run-time-us,cpu-ticks-of-PIDs,p50-us,p99-us".
load_lua=
fixed_case() {
    local name=$1 pid=$2; shift 2
    local t0 t1 out n dur p50 p99
    t0=$(cpu_ticks "$pid")
    out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" --latency -s "${load_lua:-$work/fixed.lua}" "$@")
    t1=$(cpu_ticks "$pid")
    count_failures "$out" "${*: -1}"
    read -r n dur p50 p99 < <(awk '/^FIXED / {print $2, $3, $4, $5}' <<<"$out") \
        || { echo "bench: no fixed-load result from wrk for ${*: -1}" >&2; exit 1; }
    results[$name]+="$n,$dur,$((t1 - t0)),$p50,$p99 "
}
idx=/org1/repo1/index.yaml
cases=(origin nginx cached fresh basic fix-origin fix-nginx fix-cached nginx-2m gate-2m nginx-64k gate-64k nginx-5m gate-5m
    o2p apache fwd fwd-64k scale-gate-w1 scale-gate-w2 scale-nginx-w1 scale-nginx-w2)
[ -n "$quick" ] || cases+=(o2p-64k apache-64k o2p-fresh apache-fresh)
o2p=http://127.0.0.1:${peer_port[oauth2-proxy]} apache=http://127.0.0.1:${peer_port[apache]}
for r in $(seq "$rounds"); do
    order=("${cases[@]}")
    if [ $((r % 2)) -eq 0 ]; then order=($(printf '%s\n' "${cases[@]}" | tac)); fi
    for c in "${order[@]}"; do
        case $c in
            origin) run_case origin "http://127.0.0.1:18081$idx" ;;
            nginx) run_case nginx "http://127.0.0.1:18085$idx" ;;
            cached) run_case cached -H "Authorization: Bearer $token" "http://127.0.0.1:18080$idx" ;;
            fresh) run_case fresh -s "$work/fresh.lua" "http://127.0.0.1:18084$idx" ;;
            basic) run_case basic -H "Authorization: $basic" "http://127.0.0.1:18080$idx" ;;
            fix-origin) fixed_case fix-origin "$origin_worker" "http://127.0.0.1:18081$idx" ;;
            fix-nginx) fixed_case fix-nginx "$proxy_worker" "http://127.0.0.1:18085$idx" ;;
            fix-cached) fixed_case fix-cached "$gate_pid" -H "Authorization: Bearer $token" "http://127.0.0.1:18080$idx" ;;
            nginx-2m) run_case nginx-2m "http://127.0.0.1:18085/org1/big/index.yaml" ;;
            gate-2m) run_case gate-2m -H "Authorization: Bearer $token" "http://127.0.0.1:18080/org1/big/index.yaml" ;;
            nginx-64k) run_case nginx-64k "http://127.0.0.1:18085/org1/repo1/charts/small-1.0.0.tgz" ;;
            gate-64k) run_case gate-64k -H "Authorization: Bearer $token" "http://127.0.0.1:18080/org1/repo1/charts/small-1.0.0.tgz" ;;
            nginx-5m) run_case nginx-5m "http://127.0.0.1:18085/org1/repo1/charts/big-1.0.0.tgz" ;;
            gate-5m) run_case gate-5m -H "Authorization: Bearer $token" "http://127.0.0.1:18080/org1/repo1/charts/big-1.0.0.tgz" ;;
            o2p) peer_case o2p -H "Authorization: Bearer $token" "$o2p$idx" ;;
            apache) peer_case apache -H "Authorization: Bearer $token" "$apache$idx" ;;
            o2p-64k) peer_case o2p-64k -H "Authorization: Bearer $token" "$o2p/org1/repo1/charts/small-1.0.0.tgz" ;;
            apache-64k) peer_case apache-64k -H "Authorization: Bearer $token" "$apache/org1/repo1/charts/small-1.0.0.tgz" ;;
            o2p-fresh) peer_case o2p-fresh -s "$work/fresh.lua" "$o2p$idx" ;;
            apache-fresh) peer_case apache-fresh -s "$work/fresh.lua" "$apache$idx" ;;
            fwd) run_case fwd "http://127.0.0.1:18088$idx" ;;
            fwd-64k) run_case fwd-64k "http://127.0.0.1:18088/org1/repo1/charts/small-1.0.0.tgz" ;;
            scale-gate-w[12])
                n=${c##*w}
                load_lua=$work/scale.lua fixed_case "$c" "${scale_pids[gate-w$n]}" -H "Authorization: Bearer $token" "http://127.0.0.1:$((18089 + n))$idx" ;;
            scale-nginx-w[12])
                n=${c##*w}
                load_lua=$work/scale.lua fixed_case "$c" "${scale_pids[nginx-w$n]}" "http://127.0.0.1:$((18091 + n))$idx" ;;
        esac
    done
done

# report LABEL A B UNIT [show-b] [floor]: the median of A and the median
# and min..max of the per-round ratios A/B; a median ratio below the floor
# (0.7, or 70% of a lower target) is a gross regression, collected in $low.
low=()
report() {
    local out
    out=$(python3 - "${results[$2]}" "${results[$3]}" "$4" "${5:-}" "${6:-0.7}" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
# A round where nginx served nothing says nothing about chartgate: left out.
r = [x / y for x, y in zip(a, b) if y > 0]
vs = f" (nginx {statistics.median(b):.0f})" if sys.argv[4] else ""
if not r:
    print(f"{statistics.median(a):>10.0f} {sys.argv[3]}{vs}   ratio n/a (nginx served nothing in any round)")
    print("ok")
    sys.exit()
m = statistics.median(r)
out = f" ({len(a) - len(r)} round(s) where nginx served nothing left out)" if len(r) < len(a) else ""
print(f"{statistics.median(a):>10.0f} {sys.argv[3]}{vs}   ratio {m:.2f} ({min(r):.2f}..{max(r):.2f}){out}")
print(f"{m:.2f} < {float(sys.argv[5]):.2f}" if m < float(sys.argv[5]) else "ok")
PY
)
    printf '%-40s %s\n' "$1" "${out%$'\n'*}"
    [ "${out##*$'\n'}" = ok ] || low+=("$1: ${out##*$'\n'}")
}
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):>10.0f} req/s")' $1; }

echo "chartgate benchmark: $(nproc) cores, $rounds rounds x ${secs}s, 32 connections; ratios are per round, against nginx unless told"
printf '%-40s %s\n' "origin (nginx static, no proxy)" "$(median "${results[origin]}")"
printf '%-40s %s\n' "nginx plain proxy, 10 KB index" "$(median "${results[nginx]}")"
# Gross-regression floors. 0.7 where chartgate is at or above nginx; for the
# small-response cases, still short of their targets (docs/PERFORMANCE.md:
# hyper's own per-request work exceeds nginx's whole), 70% of what they
# measure (cached 0.77, basic 0.75, 64 KB 0.79), so that noise in three short
# rounds never fails the run; the cache-miss case is bounded by RS256
# verification (it measures 0.37) and gets 70% of that.
report "chartgate cached, 10 KB index" cached nginx req/s "" 0.55
report "chartgate fresh, 10 KB index" fresh nginx req/s "" 0.25
report "chartgate basic, 10 KB index" basic nginx req/s "" 0.55
for case in "2m:2 MB index:0.7" "64k:64 KB chart:0.55" "5m:5 MB chart:0.7"; do
    IFS=: read -r k label floor <<<"$case"
    report "chartgate $label" "gate-$k" "nginx-$k" req/s show-nginx "$floor"
done
# The bare hyper forwarder: its ratio to nginx is hyper's ceiling here, and
# chartgate's ratio to it what auth and policy cost (target 0.95; floor
# 0.7, a gross regression).
report "bare hyper forwarder, 10 KB index" fwd nginx req/s "" 0
report "bare hyper forwarder, 64 KB chart" fwd-64k nginx-64k req/s "" 0
echo "chartgate / bare hyper forwarder (auth and policy cost), per round:"
report "  10 KB index, cached token" cached fwd req/s "" 0.7
report "  64 KB chart, cached token" gate-64k fwd-64k req/s "" 0.7

# --- same-job peers -------------------------------------------------------------
# peer_report LABEL PEER GATE: the peer's median and the per-round ratios
# chartgate / peer (median, min..max); never gated.
peer_report() {
    local note=
    [ -z "${peer_failures[$2]:-}" ] || note="   (the peer failed ${peer_failures[$2]} requests: not comparable)"
    printf '%-40s %s%s\n' "$1" "$(python3 - "${results[$2]}" "${results[$3]}" <<'PY'
import statistics, sys
peer = [float(x) for x in sys.argv[1].split()]
gate = [float(x) for x in sys.argv[2].split()]
r = [g / p for g, p in zip(gate, peer) if p > 0]
span = f"{statistics.median(r):.2f} ({min(r):.2f}..{max(r):.2f})" if r else "n/a (the peer served nothing)"
print(f"{statistics.median(peer):>10.0f} req/s   chartgate/peer {span}")
PY
)" "$note"
}
echo "same-job peers (RS256 signature, exp, iss and aud on every request, then the same origin); ratio: chartgate / peer, per round"
echo "  $peer_versions"
peer_report "oauth2-proxy, 10 KB index, one token" o2p cached
peer_report "mod_auth_openidc, 10 KB index, one token" apache cached
if [ -z "$quick" ]; then
    peer_report "oauth2-proxy, 64 KB chart, one token" o2p-64k gate-64k
    peer_report "mod_auth_openidc, 64 KB chart, one token" apache-64k gate-64k
    peer_report "oauth2-proxy, 10 KB, fresh tokens" o2p-fresh fresh
    peer_report "mod_auth_openidc, 10 KB, fresh tokens" apache-fresh fresh
fi

# --- fixed offered load: CPU per request, latency ------------------------------
python3 - "$clk_tck" "${results[fix-origin]}" "${results[fix-nginx]}" "${results[fix-cached]}" <<'PY'
import statistics as st, sys
clk = float(sys.argv[1])
runs = [[[float(v) for v in r.split(",")] for r in arg.split()] for arg in sys.argv[2:5]]
origin, nginx, gate = runs
rate = lambda r: r[0] / (r[1] / 1e6)
cpu = lambda r: r[2] * 1e6 / clk / max(r[0], 1)
def added(rs):
    return [r[3] - o[3] for r, o in zip(rs, origin)]
def span(xs):
    return f"{st.median(xs):.2f} ({min(xs):.2f}..{max(xs):.2f})" if xs else "n/a"
print("fixed offered load, 10 KB index (medians over rounds; CPU time of the serving process alone):")
print(f"{'':40} {'req/s':>8} {'CPU us/req':>11} {'p50 us':>8} {'p99 us':>8} {'added p50 us':>13}")
for label, rs in (("origin (nginx static, no proxy)", origin),
                  ("nginx plain proxy (own process)", nginx),
                  ("chartgate cached", gate)):
    add = f"{'n/a':>13}" if rs is origin else f"{st.median(added(rs)):>13.0f}"
    print(f"{label:40} {st.median(map(rate, rs)):>8.0f} {st.median(map(cpu, rs)):>11.1f} "
          f"{st.median(r[3] for r in rs):>8.0f} {st.median(r[4] for r in rs):>8.0f} {add}")
print(f"{'chartgate/nginx CPU per request':40} ratio {span([cpu(g) / cpu(n) for g, n in zip(gate, nginx) if n[2] > 0])}")
pairs = [(g, n) for g, n in zip(added(gate), added(nginx)) if n > 0]
if pairs:
    skipped = len(gate) - len(pairs)
    note = f", {skipped} round(s) where nginx added none left out" if skipped else ""
    print(f"{'chartgate/nginx added median latency':40} ratio {span([g / n for g, n in pairs])}{note}")
else:
    print(f"{'chartgate/nginx added median latency':40} n/a (nginx added none in any round)")
print(f"{'chartgate/nginx p99 latency':40} ratio {span([g[4] / n[4] for g, n in zip(gate, nginx) if n[4] > 0])}")
PY

# --- scale with cores ------------------------------------------------------------
python3 - "$clk_tck" "$scale_pause_ms" "${results[scale-gate-w1]}" "${results[scale-gate-w2]}" \
    "${results[scale-nginx-w1]}" "${results[scale-nginx-w2]}" <<'PY'
import statistics as st, sys
clk = float(sys.argv[1])
runs = [[[float(v) for v in r.split(",")] for r in arg.split()] for arg in sys.argv[3:7]]
g1, g2, n1, n2 = runs
rate = lambda r: r[0] / (r[1] / 1e6)
cpu = lambda r: r[2] * 1e6 / clk / max(r[0], 1)
def span(xs):
    return f"{st.median(xs):.2f} ({min(xs):.2f}..{max(xs):.2f})" if xs else "n/a"
print(f"scale with cores: fixed offered load ({sys.argv[2]} ms mean pause per connection), 10 KB index,")
print("  servers on both CPUs, wrk on CPU 0 (medians over rounds; CPU time of all the proxy's processes):")
print(f"{'':40} {'req/s':>8} {'CPU us/req':>11} {'p50 us':>8} {'p99 us':>8}")
for label, rs in (("chartgate cached, 1 worker thread", g1), ("chartgate cached, 2 worker threads", g2),
                  ("nginx plain proxy, 1 worker", n1), ("nginx plain proxy, 2 workers", n2)):
    print(f"{label:40} {st.median(map(rate, rs)):>8.0f} {st.median(map(cpu, rs)):>11.1f} "
          f"{st.median(r[3] for r in rs):>8.0f} {st.median(r[4] for r in rs):>8.0f}")
for n, (g, x) in ((1, (g1, n1)), (2, (g2, n2))):
    print(f"{f'chartgate/nginx, {n} worker(s): CPU/req':40} ratio {span([cpu(a) / cpu(b) for a, b in zip(g, x) if b[2] > 0])}"
          f"; p99 ratio {span([a[4] / b[4] for a, b in zip(g, x) if b[4] > 0])}")
print(f"{'chartgate 2 threads / 1 thread: CPU/req':40} ratio {span([cpu(a) / cpu(b) for a, b in zip(g2, g1) if b[2] > 0])}"
      f"; p99 ratio {span([a[4] / b[4] for a, b in zip(g2, g1) if b[4] > 0])}")
PY

# --- token issuance over HTTP (RS256) -----------------------------------------
cat > "$work/issue.lua" <<'LUA'
wrk.method = "POST"
LUA
load -s "$work/issue.lua" -H "Authorization: Bearer $BENCH_KEY" "http://127.0.0.1:18080/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull"
printf '%-40s %10.0f tokens/s\n' "token issuance RS256 over HTTP" "$rps"

# --- 100 MB upload ---------------------------------------------------------------
# One upload; appends its HTTP status to upload-codes (it runs in the background).
upload() { # url auth-header
    taskset -c 0 curl -s -o /dev/null -w '%{http_code}\n' -X POST -H "$2" -H 'Content-Type: application/octet-stream' \
        --data-binary @"$work/upload.bin" "$1" >> "$work/upload-codes"
}
# upload_rate STREAMS URL AUTH-HEADER: prints the MB/s of STREAMS uploads at once.
upload_rate() {
    local t0 ups=()
    # The origin spools each body to a temp file: start every measurement
    # with no dirty pages left by the one before (or, in CI, by the build),
    # so neither side pays the other's writeback.
    sync
    t0=$(date +%s%N)
    for _ in $(seq "$1"); do upload "$2" "$3" & ups+=($!); done
    wait "${ups[@]}"
    bc -l <<<"$1 * 100 * 10^9 / ($(date +%s%N) - $t0)"
}
# Rounds in alternating order, as above. Peak RSS growth during chartgate's
# uploads alone: reset the kernel's high-water mark (clear_refs 5) first so
# the download rounds' peaks do not count.
: > "$work/upload-codes"
growth_mb=0
for streams in 1 4; do
    grown_max=0
    for r in $(seq "$rounds"); do
        order=(gate nginx)
        if [ $((r % 2)) -eq 0 ]; then order=(nginx gate); fi
        for who in "${order[@]}"; do
            if [ "$who" = gate ]; then
                echo 5 > /proc/$gate_pid/clear_refs
                base_kb=$(awk '/VmRSS/ {print $2}' /proc/$gate_pid/status)
                results[up$streams-gate]+="$(upload_rate "$streams" http://127.0.0.1:18080/api/org1/repo1/charts "Authorization: Bearer $token") "
                peak_kb=$(awk '/VmHWM/ {print $2}' /proc/$gate_pid/status)
                grown=$(( (peak_kb - base_kb) / 1024 ))
                [ "$grown" -le "$grown_max" ] || grown_max=$grown
            else
                results[up$streams-nginx]+="$(upload_rate "$streams" http://127.0.0.1:18085/api/org1/repo1/charts "X-None: 1") "
            fi
        done
    done
    # Uploads sit at about 1.0x nginx (full run: 0.96 and 1.05), but a quick
    # run's three upload rounds spread widely (seen: 0.65..1.04), so their
    # floor is 0.5: a halving, not noise.
    report "100 MB upload x $streams" "up$streams-gate" "up$streams-nginx" MB/s show-nginx 0.5
    printf '%-40s %d MB\n' "  peak RSS growth, worst round" "$grown_max"
    [ "$grown_max" -le "$growth_mb" ] || growth_mb=$grown_max
done
bad_uploads=$(grep -cv '^2' "$work/upload-codes" || true)
[ "$bad_uploads" -eq 0 ] || { failures=$((failures + bad_uploads)); echo "bench: $bad_uploads uploads failed (HTTP status: $(grep -v '^2' "$work/upload-codes" | sort | uniq -c | xargs))" >&2; }
printf '%-40s %d KB\n' "idle RSS, bench config" "$idle_kb"
# Idle RSS with the sample config as shipped (its TLS listener, dev
# certificates and a fresh signing key beside it), the target's case.
mkdir -p "$work/sample/config" "$work/sample/certs"
cp config/chartgate.toml "$work/sample/config/"
"$gate" dev-certs --out "$work/sample/certs/dev" >/dev/null
"$gate" keygen --out "$work/sample/certs/dev" >/dev/null
CHARTGATE_MASTER_KEY=$BENCH_KEY RUST_LOG=error taskset -c 1 "$gate" serve --config "$work/sample/config/chartgate.toml" &
sample_pid=$!; pids+=($sample_pid)
wait_up http://127.0.0.1:9090/healthz
sleep 1
sample_kb=$(awk '/VmRSS/ {print $2}' /proc/$sample_pid/status)
sample_anon_kb=$(awk '/RssAnon/ {print $2}' /proc/$sample_pid/status)
kill "$sample_pid"
printf '%-40s %d KB (anonymous %d KB)\n' "idle RSS, sample config" "$sample_kb" "$sample_anon_kb"
# How much of src/link/symbol-order.txt the binary still has (a stale list
# packs less of the start-up code; scripts/symbol-order.sh rewrites it).
listed=$(wc -l < src/link/symbol-order.txt)
found=$(nm "$gate" 2>/dev/null | awk '{print $NF}' | sort -u | comm -12 - <(sort -u src/link/symbol-order.txt) | wc -l)
printf '%-40s %d of %d\n' "symbol order: listed functions found" "$found" "$listed"
printf '%-40s %d ms\n' "start to ready (/healthz answers)" "$ready_ms"

[ "$slow" -eq 0 ] || printf '%-40s %d (slower than 2 s; reported, not a failure)\n' "wrk timeouts" "$slow"
printf '%-40s %d s (build: %d s)\n' "bench wall time" "$(( $(date +%s) - began ))" "$build_s"

status=0
[ "$failures" -eq 0 ] || { echo "bench: FAIL: $failures failed requests"; status=1; }
for l in "${low[@]}"; do echo "bench: FAIL: median ratio below its floor: $l"; status=1; done
[ "$growth_mb" -le 32 ] || { echo "bench: FAIL: upload RSS growth $growth_mb MB > 32 MB"; status=1; }
[ "$status" -ne 0 ] || echo "bench: no gross regression (every median ratio at or above its floor, no failed request, upload RSS growth <= 32 MB)"
exit $status
