# Same-job peers for bench/run.sh, which sources this file: proxies that do
# chartgate's job, each verifying an RS256 bearer token's signature, exp,
# iss and aud on every request before proxying to the same nginx origin.
#   oauth2-proxy  - oauth2-proxy v7.15.6 with --skip-jwt-bearer-tokens and
#                   chartgate as an extra JWT issuer (oauth2-proxy.cfg). It
#                   finds chartgate's keys by OIDC discovery: chartgate
#                   publishes its JWKS but no discovery document, so the
#                   origin nginx serves a static one for the bench's issuer
#                   URL ($peer_issuer, also chartgate's [auth] issuer), whose
#                   jwks_uri is chartgate's /.well-known/jwks.json.
#   apache        - Apache httpd 2.4 + mod_auth_openidc as an OAuth 2.0
#                   resource server (apache.conf), with chartgate's public
#                   key loaded from a file at start.
#
# Uses from bench/run.sh: $work, $gate_url, $token, pids[]. Provides:
#   peers_nginx_server  - the origin's extra server block (discovery documents)
#   peers_require       - fails the run unless every peer's program is there
#   peers_start         - renders the configs, starts each peer on CPU 1 and
#                         sets $peer_versions
#   peers_check         - proves each peer and chartgate do the job, or exits
peer_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
peer_issuer_port=18089
peer_issuer=http://127.0.0.1:$peer_issuer_port
peer_login_issuer=$peer_issuer/login
# chartgate's audience: its [auth] service in bench/run.sh's config.
peer_audience=localhost:18080
peer_origin=http://127.0.0.1:18081
declare -A peer_port=([oauth2-proxy]=18086 [apache]=18087)
peer_names=(oauth2-proxy apache)
peer_tools=${CHARTGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chartgate/tools}
OAUTH2_PROXY=${OAUTH2_PROXY:-$peer_tools/bin/oauth2-proxy}
APACHE2=${APACHE2:-$(command -v apache2 || echo /usr/sbin/apache2)}

# Fails the run unless every peer's program is there.
peers_require() {
    [ -x "$OAUTH2_PROXY" ] || { echo "bench: oauth2-proxy not found at $OAUTH2_PROXY: run scripts/tools.sh bench" >&2; exit 1; }
    [ -x "$APACHE2" ] && [ -f /usr/lib/apache2/modules/mod_auth_openidc.so ] \
        || { echo "bench: apache2 with mod_auth_openidc is required: run scripts/tools.sh bench (Debian's apache2 libapache2-mod-auth-openidc)" >&2; exit 1; }
    command -v openssl >/dev/null || { echo "bench: openssl is required for the peers' check: run scripts/tools.sh bench" >&2; exit 1; }
}

# render TEMPLATE OUT: fills in the @...@ values.
peers_render() {
    sed -e "s|@WORK@|$work|g" -e "s|@ISSUER@|$peer_issuer|g" -e "s|@LOGIN_ISSUER@|$peer_login_issuer|g" \
        -e "s|@AUDIENCE@|$peer_audience|g" -e "s|@ORIGIN@|$peer_origin|g" \
        -e "s|@JWKS_URI@|$gate_url/.well-known/jwks.json|g" -e "s|@KID@|${peer_kid:-}|g" -e "s|@PORT@|${3:-}|g" "$1" > "$2"
}

# The discovery documents, served as static files by the origin nginx: the
# bench issuer's (keys: chartgate's JWKS) and, for oauth2-proxy's mandatory
# login provider, a login issuer's that no token names (keys: an empty set).
peers_nginx_server() {
    mkdir -p "$work/issuer/.well-known" "$work/issuer/login/.well-known"
    peers_render "$peer_dir/openid-configuration.json" "$work/issuer/.well-known/openid-configuration"
    sed -e "s|@ISSUER@|$peer_login_issuer|g" -e "s|@JWKS_URI@|$peer_login_issuer/jwks.json|g" \
        "$peer_dir/openid-configuration.json" > "$work/issuer/login/.well-known/openid-configuration"
    echo '{"keys":[]}' > "$work/issuer/login/jwks.json"
    cat <<NGINX
    server {
        listen 127.0.0.1:$peer_issuer_port;
        root $work/issuer;
        default_type application/json;
    }
NGINX
}

# Starts each peer pinned to CPU 1 and waits for it to answer; appends
# their pids to pids[] (bench/run.sh's cleanup stops them).
peers_start() {
    peer_versions="$("$OAUTH2_PROXY" --version 2>&1 | head -n 1); $("$APACHE2" -v | sed -n 's/^Server version: //p') with mod_auth_openidc $(dpkg-query -W -f '${Version}' libapache2-mod-auth-openidc 2>/dev/null || echo '(version unknown)')"
    peers_render "$peer_dir/oauth2-proxy.cfg" "$work/oauth2-proxy.cfg" "${peer_port[oauth2-proxy]}"
    taskset -c 1 "$OAUTH2_PROXY" --config "$work/oauth2-proxy.cfg" > "$work/oauth2-proxy.log" 2>&1 & pids+=($!)
    # Apache loads chartgate's public key from a file, named by the kid that
    # chartgate's tokens carry.
    openssl pkey -in "$work/signing-key.pem" -pubout -out "$work/signing-pub.pem"
    peer_kid=$(python3 -c 'import base64, json, sys; h = sys.argv[1].split(".")[0]; print(json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))["kid"])' "$token")
    peers_render "$peer_dir/apache.conf" "$work/apache.conf" "${peer_port[apache]}"
    # Run the binary itself: Debian's apache2ctl only sets APACHE_* variables,
    # which this config does not use.
    taskset -c 1 "$APACHE2" -f "$work/apache.conf" -DFOREGROUND & pids+=($!)
    local name
    for name in "${peer_names[@]}"; do
        for _ in $(seq 1000); do
            curl -s -o /dev/null "http://127.0.0.1:${peer_port[$name]}/" && continue 2
            sleep 0.01
        done
        echo "bench: $name never came up on port ${peer_port[$name]}" >&2
        peers_logs
        exit 1
    done
}

peers_logs() {
    echo "bench: peer logs:" >&2
    tail -n 5 "$work/oauth2-proxy.log" "$work/apache-error.log" >&2 2>/dev/null || true
}

# A variant of the bench token, signed with chartgate's signing key:
# `jwt_variant exp|aud|iss|sig`: expired an hour ago, for another audience,
# from another issuer, or with a broken signature.
jwt_variant() {
    local header payload sig
    IFS=. read -r header payload sig <<<"$token"
    if [ "$1" = sig ]; then
        # Change one signature character in the middle (the last one may only
        # carry padding bits).
        local mid=$(( ${#sig} / 2 )) c
        c=${sig:$mid:1}; [ "$c" = A ] && c=B || c=A
        printf '%s.%s.%s\n' "$header" "$payload" "${sig:0:$mid}$c${sig:$((mid + 1))}"
        return
    fi
    payload=$(python3 - "$payload" "$1" <<'PY'
import base64, json, sys, time
raw = sys.argv[1] + "=" * (-len(sys.argv[1]) % 4)
claims = json.loads(base64.urlsafe_b64decode(raw))
what = sys.argv[2]
if what == "exp":
    claims["iat"] = int(time.time()) - 7200
    claims["exp"] = int(time.time()) - 3600
elif what == "aud":
    claims["aud"] = "someone-else"
elif what == "iss":
    claims["iss"] = "http://127.0.0.1:1/other-issuer"
print(base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("="))
PY
)
    sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$work/signing-key.pem" -binary \
        | base64 -w0 | tr '+/' '-_' | tr -d '=')
    printf '%s.%s.%s\n' "$header" "$payload" "$sig"
}

# Each peer must answer 401 or 403 without a token and to each bad variant,
# and 200 with the bench token, on both fixtures it is measured on; so must
# chartgate without a token and with the bench token. (Bad tokens would
# wake chartgate's failure limiter for its window, changing the path the
# measurement takes; its own tests cover them.) Anything else means the
# harness is broken: the run stops here, loudly.
peers_check() {
    local -A bad=([none]=)
    local v
    for v in exp aud iss sig; do bad[$v]=$(jwt_variant "$v"); done
    local target url path code errors=()
    for target in "chartgate=$gate_url" "oauth2-proxy=http://127.0.0.1:${peer_port[oauth2-proxy]}" \
        "apache=http://127.0.0.1:${peer_port[apache]}"; do
        for path in /org1/repo1/index.yaml /org1/repo1/charts/small-1.0.0.tgz; do
            url=${target#*=}$path
            code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url")
            [ "$code" = 200 ] || errors+=("${target%%=*} answered $code, not 200, with the bench token ($path)")
            for v in "${!bad[@]}"; do
                [ "${target%%=*}" != chartgate ] || [ "$v" = none ] || continue
                if [ "$v" = none ]; then
                    code=$(curl -s -o /dev/null -w '%{http_code}' "$url")
                else
                    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${bad[$v]}" "$url")
                fi
                case $code in 401 | 403) ;; *) errors+=("${target%%=*} answered $code, not 401 or 403, to a token check '$v' ($path)") ;; esac
            done
        done
    done
    if [ ${#errors[@]} -gt 0 ]; then
        printf 'bench: FAIL: a peer does not do the job (the harness is broken):\n' >&2
        printf '  %s\n' "${errors[@]}" >&2
        peers_logs
        exit 1
    fi
}
