#!/usr/bin/env bash
# Writes src/link/symbol-order.txt (see src/link/build.rs): the functions of
# the release binary that run when it starts with the sample config and
# serves token requests and pulls (Bearer, Basic; plain and TLS) in front of
# an nginx origin, as callgrind lists them. Twice: for `cargo build
# --release`, and for the container image's static build (scripts/image.sh's
# flags), whose symbol names carry other hashes; lld skips the names a
# build does not have, so one list serves both. Rerun it after a dependency
# upgrade or a large change: bench/run.sh reports how many listed symbols the
# binary still has. Needs valgrind, nginx, curl and python3; uses ports 8080,
# 8081, 8443 and 9090 on loopback (the sample config's).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind nginx curl python3 ss; do
    command -v "$tool" >/dev/null || { echo "symbol-order: $tool is required" >&2; exit 1; }
done
for port in 8080 8081 8443 9090; do
    if ss -ltn "sport = :$port" | grep -q LISTEN; then echo "symbol-order: port $port is in use" >&2; exit 1; fi
done
cargo build --release --locked -q
triple=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
    cargo build --release --locked -q --target "$triple" --bin chartgate
work=$(mktemp -d)
chmod 755 "$work"  # nginx workers run unprivileged
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The sample config's upstream, 127.0.0.1:8081: nginx serving a repository.
mkdir -p "$work/www/org1/repo1/charts"
printf 'apiVersion: v1\nentries: {}\n' > "$work/www/org1/repo1/index.yaml"
head -c 65536 /dev/urandom > "$work/www/org1/repo1/charts/demo-1.0.0.tgz"
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 64; }
http { access_log off; server { listen 127.0.0.1:8081; root $work/www; } }
NGINX
nginx -c "$work/nginx.conf" & pids+=($!)

# trace BIN NAME: runs BIN under callgrind with the sample config as shipped
# (throwaway certificates and key beside it) and drives it; the profile is
# written to $work/NAME.*.
trace() {
    local bin=$1 name=$2 gate token ca
    rm -rf "$work/sample"
    mkdir -p "$work/sample/config" "$work/sample/certs"
    cp config/chartgate.toml "$work/sample/config/"
    "$bin" dev-certs --out "$work/sample/certs/dev" >/dev/null
    "$bin" keygen --out "$work/sample/certs/dev" >/dev/null
    RUST_LOG=info valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/$name.%p" \
        "$bin" serve --config "$work/sample/config/chartgate.toml" >/dev/null 2>&1 & gate=$!
    pids+=($gate)
    for _ in $(seq 600); do curl -sf -o /dev/null http://127.0.0.1:9090/healthz && break; sleep 0.1; done
    curl -sf -o /dev/null http://127.0.0.1:9090/healthz || { echo "symbol-order: chartgate never came up" >&2; exit 1; }
    token=$(curl -sf -X POST -H "Authorization: Bearer $CHARTGATE_MASTER_KEY" \
        "http://127.0.0.1:8080/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
    ca=$work/sample/certs/dev/ca.pem
    for _ in $(seq 20); do
        for url in http://127.0.0.1:8080 https://localhost:8443; do
            curl -sf --cacert "$ca" -o /dev/null -H "Authorization: Bearer $token" "$url/org1/repo1/index.yaml"
            curl -sf --cacert "$ca" -o /dev/null -H "Authorization: Bearer $token" "$url/org1/repo1/charts/demo-1.0.0.tgz"
            curl -sf --cacert "$ca" -o /dev/null -u "master:$CHARTGATE_MASTER_KEY" "$url/org1/repo1/index.yaml"
            curl -s --cacert "$ca" -o /dev/null "$url/org1/repo1/index.yaml"  # the 401 challenge
        done
    done
    curl -sf -o /dev/null http://127.0.0.1:9090/metrics
    kill -TERM "$gate"
    wait "$gate" || true
}
export CHARTGATE_MASTER_KEY=cgk_symbol-order-0123456789abcdef
trace "$(pwd)/target/release/chartgate" callgrind
trace "$(pwd)/target/$triple/release/chartgate" callgrind-static

# Every function of the chartgate object callgrind saw, in its order, by
# linker (mangled) name: the default build's, then the static build's.
python3 - "$work" src/link/symbol-order.txt <<'PY'
import glob, re, sys
seen, order = set(), []
paths = glob.glob(sys.argv[1] + "/callgrind*")
for path in sorted(paths, key=lambda p: ("-static." in p, p)):
    objects, functions, current = {}, {}, None
    for line in open(path, errors="replace"):
        m = re.match(r"^(c?ob)=\((\d+)\)(?: (.*))?$", line)
        if m:
            kind, ident, name = m.groups()
            if name:
                objects[ident] = name.strip()
            if kind == "ob":
                current = objects.get(ident, "")
            continue
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line)
        if not m:
            continue
        kind, ident, name = m.groups()
        if name:
            functions[ident] = name.strip()
        name = functions.get(ident, "")
        if kind == "fn" and current.endswith("/chartgate") and name.startswith("_") and name not in seen:
            seen.add(name)
            order.append(name)
if len(order) < 1000:
    sys.exit(f"symbol-order: only {len(order)} functions seen; is the binary stripped?")
open(sys.argv[2], "w").write("\n".join(order) + "\n")
print(f"symbol-order: {len(order)} functions written to {sys.argv[2]}")
PY
