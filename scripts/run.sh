#!/usr/bin/env bash
# Starts a real ChartMuseum on 127.0.0.1:8081 (installing it if needed) with
# no auth of its own, and chartgate in front of it on 127.0.0.1:8080 with
# config/chartgate.toml; prints the seed walkthrough to try. Ctrl-C stops both.
#
# Environment: CHARTGATE_MASTER_KEY (generated if unset), CHARTMUSEUM_BIN
# (use this chartmuseum binary instead of building one), CHARTMUSEUM_SRC (a
# ChartMuseum v0.16.5 source tree to build from where `go install` is
# refused; see scripts/tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools=${CHARTGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chartgate/tools}

if [ -z "${CHARTMUSEUM_BIN:-}" ]; then
    scripts/tools.sh chartmuseum
    CHARTMUSEUM_BIN=$tools/bin/chartmuseum
fi

cargo build --release --locked
gate=$root/target/release/chartgate

[ -f certs/dev/signing-key.pem ] || "$gate" keygen --out certs/dev
[ -f certs/dev/server.pem ] || "$gate" dev-certs --out certs/dev

if [ -z "${CHARTGATE_MASTER_KEY:-}" ]; then
    CHARTGATE_MASTER_KEY=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
    echo "generated CHARTGATE_MASTER_KEY=$CHARTGATE_MASTER_KEY"
fi
export CHARTGATE_MASTER_KEY

mkdir -p .run/charts
"$CHARTMUSEUM_BIN" --listen-host 127.0.0.1 --port 8081 --depth 2 \
    --storage local --storage-local-rootdir .run/charts --allow-overwrite \
    > .run/chartmuseum.log 2>&1 &
cm=$!
trap 'kill $cm 2>/dev/null; wait $cm 2>/dev/null' EXIT

cat <<TXT

ChartMuseum (no auth, 127.0.0.1:8081) logs to .run/chartmuseum.log.
chartgate listens on http://localhost:8080 and https://localhost:8443
(CA: certs/dev/ca.pem; admin: http://127.0.0.1:9090/readyz).

Try the walkthrough in another shell:

  export CHARTGATE_MASTER_KEY=$CHARTGATE_MASTER_KEY
  # 1. no token: 401 with a ChartMuseum challenge
  curl -si http://localhost:8080/org1/repo1/index.yaml
  # 2. a token for the scope the challenge named
  TOKEN=\$(curl -s -X POST -H "Authorization: Bearer \$CHARTGATE_MASTER_KEY" \\
    "http://localhost:8080/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull,push" \\
    | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  # 3. push a chart, then read the index
  curl -s -H "Authorization: Bearer \$TOKEN" --data-binary @mychart-0.1.0.tgz http://localhost:8080/api/org1/repo1/charts
  curl -s -H "Authorization: Bearer \$TOKEN" http://localhost:8080/org1/repo1/index.yaml
  # 4. the same over TLS, with Helm
  helm repo add org1 https://localhost:8443/org1/repo1 --ca-file certs/dev/ca.pem \\
    --username master --password "\$CHARTGATE_MASTER_KEY"
  # 5. the same repository as an OCI registry
  helm registry login localhost:8080 --plain-http -u master -p "\$CHARTGATE_MASTER_KEY"
  helm push mychart-0.1.0.tgz oci://localhost:8080/org1/repo1 --plain-http
  helm pull oci://localhost:8080/org1/repo1/mychart --version 0.1.0 --plain-http

TXT
"$gate" serve --config config/chartgate.toml
