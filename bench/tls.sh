#!/usr/bin/env bash
# TLS figures on loopback: requests per second through chartgate over plain
# HTTP, over HTTPS with keep-alive, and over HTTPS with a new TLS handshake
# for every request (Connection: close), all with a verified Bearer token,
# forwarding a 10 KB index.yaml from an nginx upstream.
#
# Placement: the load generator (wrk) on CPU 0; chartgate and nginx on CPU 1.
# usage: bench/tls.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
for tool in wrk nginx taskset; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required (apt-get install wrk nginx)" >&2; exit 1; }
done
cargo build --release --locked -q
gate=$(pwd)/target/release/chartgate
work=$(mktemp -d)
chmod 755 "$work"  # nginx workers run unprivileged
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

"$gate" keygen --out "$work" >/dev/null
"$gate" dev-certs --out "$work" >/dev/null
mkdir -p "$work/www/org1/repo1"
head -c 10240 /dev/zero | tr '\0' 'x' > "$work/www/org1/repo1/index.yaml"
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    server { listen 127.0.0.1:18081; root $work/www; }
}
NGINX
taskset -c 1 nginx -c "$work/nginx.conf" &

export BENCH_KEY=bench-master-key-0123456789
cat > "$work/chartgate.toml" <<TOML
[listen]
addr = "127.0.0.1:18080"
[tls]
addr = "127.0.0.1:18443"
cert = "server.pem"
key = "server-key.pem"
[upstream]
url = "http://127.0.0.1:18081"
[chartmuseum]
depth = 2
[auth]
realm = "https://localhost:18443/oauth/token"
service = "localhost:18443"
[issuer]
signing_key = { file = "signing-key.pem" }
[[accounts]]
id = "bench"
key = { env = "BENCH_KEY" }
rules = [{ repos = "**", actions = ["pull", "push"] }]
TOML
RUST_LOG=error taskset -c 1 "$gate" serve --config "$work/chartgate.toml" &
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18080/ 2>/dev/null && break; sleep 0.1; done
token=$("$gate" token --config "$work/chartgate.toml" --account bench --scope artifact-repository:org1/repo1:pull --ttl 1h)
auth="Authorization: Bearer $token"

run() { # label, url, extra wrk args...
    local label=$1 url=$2; shift 2
    local out rps bad
    out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" -H "$auth" "$@" "$url")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    printf '%-44s %10s req/s   non-2xx: %s\n' "$label" "$rps" "${bad:-0}"
}
echo "chartgate TLS figures ($(nproc) cores, ${secs}s per run, 32 connections, 10 KB body)"
run "plain HTTP, keep-alive" http://127.0.0.1:18080/org1/repo1/index.yaml
run "HTTPS (TLS 1.3), keep-alive" https://localhost:18443/org1/repo1/index.yaml
run "HTTPS, new TLS handshake per request" https://localhost:18443/org1/repo1/index.yaml -H "Connection: close"
