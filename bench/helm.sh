#!/usr/bin/env bash
# The real user path (issue 15): Helm's own traffic and index.yaml throughput,
# through chartgate + the real ChartMuseum (no auth, on a private loopback
# port) against the real ChartMuseum's own bearer mode alone. Both serve the
# same storage directory and are sent the same token: one RS256 token minted
# by chartgate, which the bearer-mode ChartMuseum accepts because it is given
# chartgate's public key (--auth-cert-path; docs/PROTOCOL.md §2).
#
#   gate    client -> chartgate :18280 -> ChartMuseum, no auth   :18281
#   direct  client -> ChartMuseum --bearer-auth                  :18282
#
# 1. Helm 3 with the helm-push `cm://` getter (HELM_REPO_ACCESS_TOKEN: the
#    only way Helm sends a Bearer token, docs/PROTOCOL.md §4.3, §5.1), in a
#    home of its own per side: `helm repo update` of a repository with the
#    two charts below (update) and of the 1,000-chart one (update1k), and
#    `helm pull` of a 64 KB and a 1 MB chart (`helm create` + random bytes
#    under files/). The index's chart URLs are relative, so Helm resolves
#    them to cm:// and the getter fetches them with the token too; the check
#    before the run proves it (the bearer-mode ChartMuseum refuses a request
#    without it, and each ChartMuseum's log must show exactly one request, a
#    200 GET of the expected path, per operation). Each round runs REPS operations of each kind per side, in
#    alternating pairs; the figure is the round's median wall-clock time per
#    operation, and the ratio is direct / gate (chartgate path's speed
#    relative to the bearer-mode ChartMuseum: above 1 is faster).
# 2. wrk (one thread, 16 keep-alive connections, the Bearer header) on
#    index.yaml of a repository with 1,000 chart versions (100 names x 10
#    versions, written straight into the storage directory); the ratio is
#    gate / direct requests per second.
# 3. What bounds the ratio of 1: Helm's own time per operation with no
#    request at all (`helm repo list`, one process, in the same rounds), and,
#    in the full run only, each request Helm sends timed alone (wrk, one
#    connection, 2 s: median latency per request on each path; the
#    difference is what the extra hop adds to one Helm operation).
#
# Both ChartMuseums run with --disable-statefiles (neither writes
# index-cache.yaml into the shared storage, each builds its index from the
# archives) and --cache-interval=0 (no periodic storage rescan during a run).
# ChartMuseum v0.16.5 keeps each repository's index in memory once built and
# serves those bytes (multitenant/index.go: the storage is only listed again
# while the cached index is empty); both indexes are built before the run and
# checked equal except for their `generated:` line.
#
# Interleaved rounds of alternating order; medians and min..max of the
# per-round ratios. Placement: clients (helm and its getter, wrk) on CPU 0;
# chartgate and both ChartMuseums on CPU 1.
# usage: bench/helm.sh [--quick]   (quick: 3 rounds, 3 operations per side, wrk 3 s)
# Needs wrk, taskset, curl, python3, ss, and ChartMuseum, Helm 3 and
# helm-push from scripts/tools.sh. Prints figures and ratios, and never fails
# on them: it exits non-zero only when the harness breaks (a Helm command
# fails, a pulled chart differs, a non-2xx answer or a socket error in wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
began=$EPOCHREALTIME
rounds=10 reps=10 secs=5 quick=
if [ "${1:-}" = "--quick" ]; then rounds=3 reps=3 secs=3 quick=1; fi
tools=${CHARTGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chartgate/tools}/bin
for tool in wrk taskset curl python3 ss cmp getconf; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required: run scripts/tools.sh bench" >&2; exit 1; }
done
for tool in chartmuseum helm3 helm-cm-push; do
    [ -x "$tools/$tool" ] || { echo "bench: $tools/$tool is missing: run scripts/tools.sh chartmuseum helm3 helm-push" >&2; exit 1; }
done
cargo build --release --locked -q
gate=$(pwd)/target/release/chartgate
helm=$tools/helm3
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for port in 18280 18281 18282 19290; do
    if ss -ltn "sport = :$port" 2>/dev/null | grep -q LISTEN; then echo "bench: port $port is already in use" >&2; exit 1; fi
done
wait_up() {
    for _ in $(seq 1000); do curl -s -o /dev/null "$1" && return 0; sleep 0.01; done
    echo "bench: $1 never came up" >&2; exit 1
}
die() { echo "bench: $*" >&2; exit 1; }

# --- charts ------------------------------------------------------------------
# Helm for packaging only, in a throwaway home.
pack() { HOME=$work/pack HELM_CONFIG_HOME=$work/pack/config HELM_CACHE_HOME=$work/pack/cache \
    HELM_DATA_HOME=$work/pack/data "$helm" "$@" >/dev/null; }
storage=$work/storage
mkdir -p "$storage/org1/repo1" "$storage/org1/big" "$work/pack"
# make_chart NAME BYTES: a `helm create` chart padded with random bytes under
# files/ so that the packaged archive is about BYTES long.
make_chart() {
    local name=$1 want=$2 base
    pack create "$work/pack/$name"
    pack package "$work/pack/$name" --version 0.1.0 -d "$work/pack"
    base=$(stat -c %s "$work/pack/$name-0.1.0.tgz")
    mkdir -p "$work/pack/$name/files"
    # Random bytes do not compress; the tar header and padding add about 1 KB.
    head -c $((want - base - 1024)) /dev/urandom > "$work/pack/$name/files/pad.bin"
    pack package "$work/pack/$name" --version 0.1.0 -d "$work/pack"
    cp "$work/pack/$name-0.1.0.tgz" "$storage/org1/repo1/"
}
make_chart c64 $((64 * 1024))
make_chart c1m $((1024 * 1024))
size64=$(stat -c %s "$storage/org1/repo1/c64-0.1.0.tgz")
size1m=$(stat -c %s "$storage/org1/repo1/c1m-0.1.0.tgz")
# 1,000 small chart versions, written as ChartMuseum would store them.
python3 - "$storage/org1/big" <<'PY'
import io, sys, tarfile
out = sys.argv[1]
def add(tar, path, text):
    data = text.encode()
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.mtime = len(data), 0o644, 1764979200
    tar.addfile(info, io.BytesIO(data))
for n in range(100):
    name = f"app{n:03d}"
    for v in range(10):
        version = f"1.{v}.0"
        with tarfile.open(f"{out}/{name}-{version}.tgz", "w:gz") as tar:
            add(tar, f"{name}/Chart.yaml",
                f"apiVersion: v2\nname: {name}\ndescription: A Helm chart for Kubernetes\n"
                f"type: application\nversion: {version}\nappVersion: \"{v}.0.0\"\n")
            add(tar, f"{name}/values.yaml", "replicaCount: 1\nimage:\n  repository: nginx\n  tag: stable\n")
            add(tar, f"{name}/templates/NOTES.txt", "Thank you for installing {{ .Chart.Name }}.\n")
PY
[ "$(ls "$storage/org1/big" | wc -l)" -eq 1000 ] || die "expected 1,000 archives in the big repository"

# --- servers -------------------------------------------------------------------
"$gate" keygen --out "$work" >/dev/null
cm_flags=(--depth 2 --storage local --storage-local-rootdir "$storage" --disable-statefiles
    --cache-interval=0s --log-json --listen-host 127.0.0.1)
taskset -c 1 "$tools/chartmuseum" "${cm_flags[@]}" --port 18281 2> "$work/cm-open.log" & pids+=($!) cm_open_pid=$!
taskset -c 1 "$tools/chartmuseum" "${cm_flags[@]}" --port 18282 \
    --bearer-auth --auth-realm http://127.0.0.1:18280/oauth/token --auth-service 127.0.0.1:18280 \
    --auth-cert-path "$work/signing-key.pub.pem" 2> "$work/cm-bearer.log" & pids+=($!) cm_bearer_pid=$!
export BENCH_KEY=cgk_bench-api-key-0123456789abcdef
cat > "$work/chartgate.toml" <<TOML
[listen]
addr = "127.0.0.1:18280"
admin_addr = "127.0.0.1:19290"
[upstream]
url = "http://127.0.0.1:18281"
[chartmuseum]
depth = 2
[auth]
realm = "http://127.0.0.1:18280/oauth/token"
service = "127.0.0.1:18280"
[issuer]
signing_key = { file = "signing-key.pem" }
[[accounts]]
id = "bench"
key = { env = "BENCH_KEY" }
rules = [{ repos = "**", actions = ["pull"] }]
TOML
RUST_LOG=error taskset -c 1 "$gate" serve --config "$work/chartgate.toml" & pids+=($!) gate_pid=$!
wait_up http://127.0.0.1:18281/health
wait_up http://127.0.0.1:18282/health
wait_up http://127.0.0.1:19290/healthz
token=$("$gate" token --config "$work/chartgate.toml" --account bench \
    --scope artifact-repository:org1/repo1:pull --scope artifact-repository:org1/big:pull --ttl 2h)
declare -A url=([gate]=http://127.0.0.1:18280 [direct]=http://127.0.0.1:18282)
declare -A cmlog=([gate]=$work/cm-open.log [direct]=$work/cm-bearer.log)

# status SIDE PATH [curl args...]: the HTTP status of a GET.
status() { local side=$1 path=$2; shift 2; curl -s -o /dev/null -w '%{http_code}' "$@" "${url[$side]}$path"; }
for side in gate direct; do
    # No token: refused on both paths. With it: the index, built now (the
    # first request after a start lists the storage and reads every archive).
    for path in /org1/repo1/index.yaml /org1/big/index.yaml; do
        s=$(status "$side" "$path"); [ "$s" = 401 ] || die "$side $path without a token: $s, not 401"
        s=$(status "$side" "$path" -H "Authorization: Bearer $token")
        [ "$s" = 200 ] || die "$side $path with the token: $s, not 200"
    done
done
# Same state on both: the indexes differ only in their `generated:` line.
for repo in repo1 big; do
    for side in gate direct; do
        curl -sf -H "Authorization: Bearer $token" "${url[$side]}/org1/$repo/index.yaml" | grep -v '^generated:' > "$work/index-$repo-$side"
    done
    cmp -s "$work/index-$repo-gate" "$work/index-$repo-direct" || die "the two ChartMuseums serve different org1/$repo indexes"
done
versions=$(grep -c '^    version:' "$work/index-big-gate" || true)
[ "$versions" -eq 1000 ] || die "the big index lists $versions chart versions, not 1,000"
index_bytes=$(curl -sf -H "Authorization: Bearer $token" "${url[gate]}/org1/big/index.yaml" | wc -c)

# --- Helm ------------------------------------------------------------------------
# helm-push installed offline as a Helm 3 plugin (as tests/e2e/helm.rs does):
# its `cm` downloader is the getter.
mkdir -p "$work/plugins/helm-push/bin"
ln -s "$tools/helm-cm-push" "$work/plugins/helm-push/bin/helm-cm-push"
cp tests/tools/helm-push/plugin.yaml "$work/plugins/helm-push/plugin.yaml"
# helm_as SIDE ARGS...: Helm 3 on CPU 0, in SIDE's own homes, with the token.
helm_as() {
    local side=$1; shift
    env -i PATH="$PATH" HOME="$work/$side" HELM_CONFIG_HOME="$work/$side/config" \
        HELM_CACHE_HOME="$work/$side/cache" HELM_DATA_HOME="$work/$side/data" \
        HELM_PLUGINS="$work/plugins" HELM_REPO_ACCESS_TOKEN="$token" HELM_REPO_USE_HTTP=true \
        taskset -c 0 "$helm" "$@"
}
ops=(update update1k pull64 pull1m)
declare -A op_path=([update]=/org1/repo1/index.yaml [update1k]=/org1/big/index.yaml
    [pull64]=/org1/repo1/charts/c64-0.1.0.tgz [pull1m]=/org1/repo1/charts/c1m-0.1.0.tgz)
# run_op SIDE OP: one Helm operation, its output kept for a failure report.
run_op() {
    local side=$1 op=$2 out=$work/$1/out
    case $op in
        update) helm_as "$side" repo update r > "$work/$side/last.log" 2>&1 ;;
        update1k) helm_as "$side" repo update big > "$work/$side/last.log" 2>&1 ;;
        local) helm_as "$side" repo list > "$work/$side/last.log" 2>&1 ;;
        pull64) helm_as "$side" pull r/c64 --version 0.1.0 -d "$out" > "$work/$side/last.log" 2>&1 ;;
        pull1m) helm_as "$side" pull r/c1m --version 0.1.0 -d "$out" > "$work/$side/last.log" 2>&1 ;;
    esac || { cat "$work/$side/last.log" >&2; die "helm $op failed on the $side path"; }
}
# timed SIDE OP: prints the operation's wall-clock time in ms; checks a
# pulled archive against the stored one (outside the timed window).
timed() {
    local side=$1 op=$2 t0 t1 f
    rm -rf "$work/$side/out"; mkdir -p "$work/$side/out"
    t0=$EPOCHREALTIME
    run_op "$side" "$op"
    t1=$EPOCHREALTIME
    if [ "${op#pull}" != "$op" ]; then
        f=${op_path[$op]##*/}
        cmp -s "$work/$side/out/$f" "$storage/org1/repo1/$f" || die "$side: the pulled $f differs from the stored one"
    fi
    echo "$(( (${t1/./} - ${t0/./}) / 1000 )).$(( (${t1/./} - ${t0/./}) % 1000 / 100 ))"
}
# served SIDE PATH: how many 200 GETs of PATH that side's ChartMuseum logged;
# logged SIDE: how many requests of any kind.
served() { grep -F "\"path\":\"$2\"" "${cmlog[$1]}" | grep -c '"statusCode":200' || true; }
logged() { grep -c 'Request served' "${cmlog[$1]}" || true; }
for side in gate direct; do
    mkdir -p "$work/$side"
    for repo in r:repo1 big:big; do
        helm_as "$side" repo add "${repo%:*}" "cm://${url[$side]#http://}/org1/${repo#*:}" > "$work/$side/last.log" 2>&1 \
            || { cat "$work/$side/last.log" >&2; die "helm repo add failed on the $side path"; }
    done
    # Each operation is exactly one request, a 200 GET of its path, token
    # and all (the bearer-mode ChartMuseum would refuse it without the token).
    for op in "${ops[@]}"; do
        before=$(served "$side" "${op_path[$op]}") all=$(logged "$side")
        timed "$side" "$op" >/dev/null
        sleep 0.2  # ChartMuseum writes its log line after the response
        n=$(( $(served "$side" "${op_path[$op]}") - before ))
        [ "$n" -eq 1 ] || die "$side: helm $op made $n 200 GETs of ${op_path[$op]}, not 1"
        n=$(( $(logged "$side") - all ))
        [ "$n" -eq 1 ] || die "$side: helm $op made $n requests, not 1"
    done
done

# --- rounds ------------------------------------------------------------------------
# wrk_ok WRK-OUTPUT SIDE: a non-2xx answer or a connect, read or write error
# breaks the harness; wrk's "timeout" count (requests slower than 2 s, which
# still complete) is timing, reported and never a failure.
wrk_ok() {
    local bad late
    bad=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8} END {print n + 0}' <<<"$1")
    [ "$bad" -eq 0 ] || { echo "$1" >&2; die "wrk: $bad failed requests on the $2 path"; }
    late=$(awk '/Socket errors/ {print $NF}' <<<"$1")
    [ "${late:-0}" -eq 0 ] || echo "bench: $late requests over wrk's 2 s timeout on the $2 path (timing, not a failure)" >&2
}
# CPU time (utime + stime, clock ticks) of a process, all its threads.
cpu_ticks() { local s; s=$(<"/proc/$1/stat"); s=${s##*) }; set -- $s; echo $((${12} + ${13})); }
# rate SIDE: wrk on the big index; prints requests/s, then the CPU ticks each
# server process on that path spent, and the requests completed.
rate() {
    local out a0 b0 n
    local -a procs=("$cm_bearer_pid")
    [ "$1" = direct ] || procs=("$gate_pid" "$cm_open_pid")
    a0=$(cpu_ticks "${procs[0]}") b0=$(cpu_ticks "${procs[-1]}")
    out=$(taskset -c 0 wrk -t1 -c16 -d"${secs}s" -H "Authorization: Bearer $token" "${url[$1]}/org1/big/index.yaml" 2>&1)
    wrk_ok "$out" "$1"
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(( $(cpu_ticks "${procs[0]}") - a0 )) $(( $(cpu_ticks "${procs[-1]}") - b0 )) $n"
}
# alone SIDE PATH: the median latency (us) of PATH's requests sent one at a
# time on one keep-alive connection.
cat > "$work/p50.lua" <<'LUA'
done = function(summary, latency, requests) io.write(string.format("P50 %.0f\n", latency:percentile(50))) end
LUA
alone() {
    local out
    out=$(taskset -c 0 wrk -t1 -c1 -d2s -s "$work/p50.lua" -H "Authorization: Bearer $token" "${url[$1]}$2" 2>&1)
    wrk_ok "$out" "$1"
    awk '/^P50 / {print $2}' <<<"$out"
}
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
ratio() { python3 -c "print(f'{$1 / $2:.4f}')"; }
declare -A res=()
echo "the real user path: chartgate + ChartMuseum (no auth) against ChartMuseum --bearer-auth alone, one chartgate RS256 token"
echo "$(nproc) cores; $rounds rounds; Helm $("$helm" version --template '{{.Version}}') + helm-push cm:// getter, $reps operations per side per round;"
echo "charts ${size64} and ${size1m} bytes; index.yaml of 1,000 chart versions (${index_bytes} bytes), wrk -t1 -c16 -d${secs}s"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (figures from a busy machine do not compare)"
echo "per round: median ms per Helm operation, gate / direct, ratio direct/gate; index req/s, gate / direct, ratio gate/direct"
printf '%-5s' round
for op in "${ops[@]}"; do printf ' %17s %5s' "$op" ratio; done
printf ' %11s %5s\n' "index req/s" ratio
for r in $(seq "$rounds"); do
    pair=(gate direct)
    if [ $((r % 2)) -eq 0 ]; then pair=(direct gate); fi
    printf '%-5s' "$r"
    for op in "${ops[@]}"; do
        declare -A t=([gate]="" [direct]="")
        for _ in $(seq "$reps"); do
            for side in "${pair[@]}"; do t[$side]+="$(timed "$side" "$op") "; done
        done
        g=$(median ${t[gate]}) d=$(median ${t[direct]}) x=$(ratio "$d" "$g")
        res[$op-gate]+="$g " res[$op-direct]+="$d " res[$op-ratio]+="$x "
        printf ' %8.1f/%-8.1f %5.2f' "$g" "$d" "$x"
    done
    declare -A q=()
    for side in "${pair[@]}"; do
        line=$(rate "$side")
        read -r q[$side] c1 c2 n <<<"$line"
        # CPU us per request: chartgate's and its ChartMuseum's on the gate
        # path (c1, c2), the bearer-mode ChartMuseum's on the direct one.
        if [ "$side" = gate ]; then res[cpu-gate]+="$c1,$n " res[cpu-open]+="$c2,$n "; else res[cpu-bearer]+="$c1,$n "; fi
    done
    x=$(ratio "${q[gate]}" "${q[direct]}")
    res[index-gate]+="${q[gate]} " res[index-direct]+="${q[direct]} " res[index-ratio]+="$x "
    printf ' %5.0f/%-5.0f %5.2f\n' "${q[gate]}" "${q[direct]}" "$x"
    # Helm with no request, and (full run) each request alone.
    l=""; for _ in $(seq "$reps"); do l+="$(timed gate local) "; done
    res[local]+="$(median $l) "
    if [ -z "$quick" ]; then
        for op in "${ops[@]}"; do
            for side in "${pair[@]}"; do res[alone-$op-$side]+="$(alone "$side" "${op_path[$op]}") "; done
        done
    fi
done

# --- summary ---------------------------------------------------------------------
echo "medians over rounds (ratio: median and min..max of the per-round ratios; goal >= 0.95)"
args=()
for k in update update1k pull64 pull1m index; do args+=("${res[$k-gate]}" "${res[$k-direct]}" "${res[$k-ratio]}"); done
python3 - "${args[@]}" <<'PY'
import statistics as st, sys
a = [[float(x) for x in s.split()] for s in sys.argv[1:]]
rows = [("helm repo update, 2 charts", "ms", "direct/gate time"),
        ("helm repo update, 1,000 charts", "ms", "direct/gate time"),
        ("helm pull, 64 KB chart", "ms", "direct/gate time"),
        ("helm pull, 1 MB chart", "ms", "direct/gate time"),
        ("index.yaml, 1,000 charts", "req/s", "gate/direct req/s")]
print(f"{'':31} {'chartgate+CM':>13} {'CM bearer':>11}   ratio")
for i, (label, unit, what) in enumerate(rows):
    g, d, r = a[3 * i: 3 * i + 3]
    fmt = (lambda x: f"{x:.1f} {unit}") if unit == "ms" else (lambda x: f"{x:.0f} {unit}")
    print(f"{label:31} {fmt(st.median(g)):>13} {fmt(st.median(d)):>11}   "
          f"{st.median(r):.2f} ({min(r):.2f}..{max(r):.2f}) {what}")
PY
printf '%-31s %10.1f ms  (helm repo list: Helm start, no request)\n' "Helm alone" "$(median ${res[local]})"
python3 - "$(getconf CLK_TCK)" "${res[cpu-gate]}" "${res[cpu-open]}" "${res[cpu-bearer]}" <<'PY'
import statistics as st, sys
clk = float(sys.argv[1])
us = lambda arg: [int(t) * 1e6 / clk / max(int(n), 1) for t, n in (x.split(",") for x in arg.split())]
g, o, b = us(sys.argv[2]), us(sys.argv[3]), us(sys.argv[4])
both = [x + y for x, y in zip(g, o)]
print(f"CPU per index.yaml request (1,000 charts), median over rounds: chartgate {st.median(g):.0f} us + its ChartMuseum "
      f"{st.median(o):.0f} us = {st.median(both):.0f} us; bearer-mode ChartMuseum {st.median(b):.0f} us;")
print(f"  on one shared core that bounds the gate/direct req/s ratio near {st.median(x / y for x, y in zip(b, both)):.2f}")
PY
if [ -z "$quick" ]; then
    echo "each request alone (wrk, 1 connection, 2 s; median latency, median over rounds):"
    for op in "${ops[@]}"; do
        g=$(median ${res[alone-$op-gate]}) d=$(median ${res[alone-$op-direct]})
        printf '  %-9s %-39s gate %6.0f us  direct %6.0f us  gate - direct %+5.0f us\n' "$op" "GET ${op_path[$op]}" "$g" "$d" "$(python3 -c "print($g - $d)")"
    done
fi
python3 -c "import sys; print(f'bench wall time {float(sys.argv[2]) - float(sys.argv[1]):.0f} s; load average at the end: {sys.argv[3]}')" \
    "$began" "$EPOCHREALTIME" "$(cut -d' ' -f1-3 /proc/loadavg)"
