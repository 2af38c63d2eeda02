#!/usr/bin/env bash
# Installs the pinned real tools the tests and the dev run need, built from
# source with this machine's Go (and cargo, for cargo-fuzz), into a cache outside the repo:
#   ${CHARTGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chartgate/tools}
# Each tool lands in <cache>/<name>-<version>/ and is linked from <cache>/bin/.
# A tool already built at its pinned version is not rebuilt.
#
# `bench` instead makes sure the Debian packages bench/run.sh drives are
# installed (wrk, nginx, taskset from util-linux, bc, curl, ss from iproute2,
# openssl, and Apache httpd with mod_auth_openidc for the same-job peers),
# installing the missing ones with apt-get (as root); it starts no service.
# It also builds the other same-job peer, oauth2-proxy (`oauth2-proxy`).
# `deploy` does the same for redis-server, docker-compose and buildah.
#
# usage: scripts/tools.sh TOOL...
#   TOOL: oracle | chartmuseum | helm3 | helm4 | helm-push | oras | cargo-fuzz
#         | e2e (= oracle chartmuseum helm3 helm4 helm-push oras)
#         | oauth2-proxy | bench (= the Debian packages and oauth2-proxy) | deploy
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tools=${CHARTGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chartgate/tools}
mkdir -p "$tools/bin"

CHARTMUSEUM_VERSION=v0.16.5
# Where the module proxy refuses helm.sh/chartmuseum, the source tree shared
# beside this repository stands in for it (see install_chartmuseum).
shared_cm_src=$repo/../shared/third_party/chartmuseum-$CHARTMUSEUM_VERSION
if [ -z "${CHARTMUSEUM_SRC:-}" ] && [ -f "$shared_cm_src/go.mod" ]; then
    CHARTMUSEUM_SRC=$(cd "$shared_cm_src" && pwd)
fi
HELM3_VERSION=v3.21.4
HELM4_VERSION=v4.2.4
HELM_PUSH_VERSION=v0.10.4
ORAS_VERSION=v1.3.6
CARGO_FUZZ_VERSION=0.13.2
OAUTH2_PROXY_VERSION=v7.15.6

say() { printf 'tools: %s\n' "$*" >&2; }
die() { printf 'tools: error: %s\n' "$*" >&2; exit 1; }

need_go() { command -v go >/dev/null || die "Go is required to build the pinned tools (go install); none found on PATH"; }

link() { ln -sfn "$1" "$tools/bin/$2"; }

# The chartmuseum/auth oracle: our Go driver of the real library, keyed by a
# hash of its sources so an edit rebuilds it.
install_oracle() {
    need_go
    local src=$repo/tests/cmauth-oracle
    local hash
    hash=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)
    local dest=$tools/cmauth-oracle-$hash
    if [ ! -x "$dest/bin/cmauth-oracle" ]; then
        say "building cmauth-oracle (chartmuseum/auth v0.6.0)"
        mkdir -p "$dest/bin"
        (cd "$src" && go build -trimpath -o "$dest/bin/cmauth-oracle" .) || die "building cmauth-oracle failed"
    fi
    link "$dest/bin/cmauth-oracle" cmauth-oracle
}

# ChartMuseum: `go install` first (what works wherever the module proxy serves
# helm.sh/chartmuseum); when that is refused, a build of the source tree named
# by CHARTMUSEUM_SRC (a checkout of tag $CHARTMUSEUM_VERSION), built where it
# is with its output in the tools cache. Nothing is copied into this repo.
install_chartmuseum() {
    need_go
    local dest=$tools/chartmuseum-$CHARTMUSEUM_VERSION
    if [ ! -x "$dest/bin/chartmuseum" ]; then
        mkdir -p "$dest/bin"
        local ldflags="-X main.Version=${CHARTMUSEUM_VERSION#v}"
        say "building chartmuseum $CHARTMUSEUM_VERSION (go install helm.sh/chartmuseum/cmd/chartmuseum)"
        if ! CGO_ENABLED=0 GOBIN=$dest/bin go install -trimpath -ldflags "$ldflags" \
            "helm.sh/chartmuseum/cmd/chartmuseum@$CHARTMUSEUM_VERSION" 2>"$dest/go-install.log"; then
            say "go install refused ($(tail -1 "$dest/go-install.log")); trying CHARTMUSEUM_SRC"
            local src=${CHARTMUSEUM_SRC:-}
            [ -n "$src" ] || die "could not go install ChartMuseum $CHARTMUSEUM_VERSION, and CHARTMUSEUM_SRC is not set. Point CHARTMUSEUM_SRC at a checkout of helm/chartmuseum tag $CHARTMUSEUM_VERSION, or CHARTMUSEUM_BIN at a chartmuseum binary."
            [ -f "$src/go.mod" ] && grep -q '^module helm.sh/chartmuseum$' "$src/go.mod" \
                || die "CHARTMUSEUM_SRC=$src is not a helm.sh/chartmuseum source tree (no matching go.mod)"
            say "building chartmuseum from $src"
            # -modcacherw and an explicit -o keep a read-only source tree untouched.
            (cd "$src" && CGO_ENABLED=0 go build -trimpath -modcacherw -ldflags "$ldflags" \
                -o "$dest/bin/chartmuseum" ./cmd/chartmuseum) \
                || die "building ChartMuseum from CHARTMUSEUM_SRC=$src failed"
        fi
    fi
    link "$dest/bin/chartmuseum" chartmuseum
}

# Helm stamps its version with -ldflags in its Makefile; do the same so
# `helm version` and the User-Agent say the full version.
install_helm() {
    need_go
    local major=$1 version=$2
    local dest=$tools/helm-$version
    if [ ! -x "$dest/bin/helm" ]; then
        say "building helm $version (go install helm.sh/helm/v$major/cmd/helm)"
        mkdir -p "$dest/bin"
        GOBIN=$dest/bin go install -trimpath \
            -ldflags "-X helm.sh/helm/v$major/internal/version.version=$version" \
            "helm.sh/helm/v$major/cmd/helm@$version" || die "building helm $version failed"
    fi
    link "$dest/bin/helm" "helm$major"
}

# helm-push is built through a pinned wrapper module (tests/tools/helm-push):
# `go install ...@version` also asks the proxy for the module's version list,
# which the proxy here refuses, while the module itself is served.
install_helm_push() {
    need_go
    local dest=$tools/helm-push-$HELM_PUSH_VERSION
    if [ ! -x "$dest/bin/helm-cm-push" ]; then
        say "building helm-push $HELM_PUSH_VERSION (github.com/chartmuseum/helm-push/cmd/helm-cm-push)"
        mkdir -p "$dest/bin"
        (cd "$repo/tests/tools/helm-push" && GOFLAGS=-mod=mod go build -trimpath \
            -o "$dest/bin/helm-cm-push" github.com/chartmuseum/helm-push/cmd/helm-cm-push) \
            || die "building helm-push $HELM_PUSH_VERSION failed"
    fi
    link "$dest/bin/helm-cm-push" helm-cm-push
}

# The ORAS CLI, an OCI registry client other than Helm, for the OCI tests:
# built through a pinned wrapper module (tests/tools/oras) like helm-push.
# v1.3.6 needs Go 1.26.7; its version string is in its source, so no -ldflags.
install_oras() {
    need_go
    local dest=$tools/oras-$ORAS_VERSION
    if [ ! -x "$dest/bin/oras" ]; then
        say "building oras $ORAS_VERSION (oras.land/oras/cmd/oras)"
        mkdir -p "$dest/bin"
        (cd "$repo/tests/tools/oras" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
            -o "$dest/bin/oras" oras.land/oras/cmd/oras) \
            || die "building oras $ORAS_VERSION failed"
    fi
    link "$dest/bin/oras" oras
}

# cargo-fuzz from crates.io, for scripts/fuzz.sh (runs on nightly Rust).
install_cargo_fuzz() {
    local dest=$tools/cargo-fuzz-$CARGO_FUZZ_VERSION
    if [ ! -x "$dest/bin/cargo-fuzz" ]; then
        say "building cargo-fuzz $CARGO_FUZZ_VERSION"
        cargo install --locked --quiet --root "$dest" cargo-fuzz --version "$CARGO_FUZZ_VERSION" \
            || die "building cargo-fuzz failed"
    fi
    link "$dest/bin/cargo-fuzz" cargo-fuzz
}

# oauth2-proxy, a same-job peer in bench/run.sh: `go install` of the pinned
# release, stamped with its version as its Makefile does.
install_oauth2_proxy() {
    need_go
    local dest=$tools/oauth2-proxy-$OAUTH2_PROXY_VERSION
    if [ ! -x "$dest/bin/oauth2-proxy" ]; then
        say "building oauth2-proxy $OAUTH2_PROXY_VERSION (go install github.com/oauth2-proxy/oauth2-proxy/v7)"
        mkdir -p "$dest/bin"
        CGO_ENABLED=0 GOBIN=$dest/bin go install -trimpath \
            -ldflags "-X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION=$OAUTH2_PROXY_VERSION" \
            "github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION" \
            || die "building oauth2-proxy $OAUTH2_PROXY_VERSION failed"
    fi
    link "$dest/bin/oauth2-proxy" oauth2-proxy
}

# Debian packages, as command:package (or, for a package with no command of
# its own, /path/of/a/file:package): what bench/run.sh drives, and what
# the deployment and replica tests drive (a real Redis, docker-compose to
# validate the compose file, buildah to build the image).
BENCH_COMMANDS="wrk:wrk nginx:nginx taskset:util-linux bc:bc curl:curl ss:iproute2 getconf:libc-bin openssl:openssl
    apache2:apache2 /usr/lib/apache2/modules/mod_auth_openidc.so:libapache2-mod-auth-openidc"
DEPLOY_COMMANDS="redis-server:redis-server docker-compose:docker-compose buildah:buildah"

# Whether a command (or, given an absolute path, a file) is there.
present() {
    case $1 in
        /*) [ -e "$1" ] ;;
        *) command -v "$1" >/dev/null ;;
    esac
}

# Installs the packages of "command:package" pairs whose command is missing,
# starting no service; `what` names the purpose in messages.
install_debian() {
    local what=$1 pairs=$2 pair missing=()
    for pair in $pairs; do
        present "${pair%%:*}" || missing+=("${pair#*:}")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "$what tools present: $(for p in $pairs; do printf '%s ' "${p%%:*}"; done | sed 's|/[^ ]*/||g')"
        return 0
    fi
    local hint="apt-get install -y --no-install-recommends ${missing[*]}"
    command -v apt-get >/dev/null || die "$what needs the Debian packages ${missing[*]} and there is no apt-get here; install them by hand"
    [ "$(id -u)" -eq 0 ] || die "$what needs the Debian packages ${missing[*]}; installing them needs root: $hint"
    say "installing Debian packages for $what: ${missing[*]}"
    # Installing nginx, apache2 or redis-server would start its service where
    # an init system honours invoke-rc.d: forbid every service start for the
    # install with a policy-rc.d, unless the machine already has one.
    local policy=/usr/sbin/policy-rc.d made_policy=
    if [ ! -e "$policy" ]; then
        made_policy=1
        printf '#!/bin/sh\n# scripts/tools.sh: start no service while installing\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        trap "rm -f $policy" EXIT
    fi
    services() { { pgrep -x nginx; pgrep -x apache2; pgrep -x redis-server; } | sort || true; }
    local before
    before=$(services)
    apt_install() { DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -q --no-install-recommends "$@"; }
    if ! apt_install "${missing[@]}"; then
        # Most often no package lists yet (a fresh machine), or stale ones.
        say "apt-get install failed; running apt-get update and trying once more"
        apt-get update -q || die "apt-get update failed, so these cannot be installed: ${missing[*]}"
        apt_install "${missing[@]}" || die "could not install with: $hint"
    fi
    if [ -n "$made_policy" ]; then rm -f "$policy"; trap - EXIT; fi
    # Should a service have started anyway, stop it: the tests start their own.
    local pid
    for pid in $(comm -13 <(echo "$before") <(services)); do
        say "stopping a service the install started (pid $pid)"
        kill "$pid" 2>/dev/null || true
    done
    local still=()
    for pair in $pairs; do
        present "${pair%%:*}" || still+=("${pair%%:*}")
    done
    [ ${#still[@]} -eq 0 ] || die "after installing ${missing[*]}, still not on PATH: ${still[*]}"
    say "installed ${missing[*]}"
}

[ $# -gt 0 ] || die "usage: scripts/tools.sh oracle|chartmuseum|helm3|helm4|helm-push|oras|cargo-fuzz|e2e|oauth2-proxy|bench|deploy..."
for tool in "$@"; do
    case $tool in
        oracle) install_oracle ;;
        chartmuseum) install_chartmuseum ;;
        helm3) install_helm 3 "$HELM3_VERSION" ;;
        helm4) install_helm 4 "$HELM4_VERSION" ;;
        helm-push) install_helm_push ;;
        oras) install_oras ;;
        cargo-fuzz) install_cargo_fuzz ;;
        e2e) install_oracle; install_chartmuseum; install_helm 3 "$HELM3_VERSION"; install_helm 4 "$HELM4_VERSION"; install_helm_push; install_oras ;;
        oauth2-proxy) install_oauth2_proxy ;;
        bench) install_debian "bench/run.sh" "$BENCH_COMMANDS"; install_oauth2_proxy ;;
        deploy) install_debian "the deployment tests" "$DEPLOY_COMMANDS" ;;
        *) die "unknown tool $tool" ;;
    esac
done
say "tools ready in $tools/bin"
