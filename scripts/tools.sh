#!/usr/bin/env bash
# Installs the pinned real tools the tests and the dev run need, built from
# their Go modules with this machine's Go, into a cache outside the repo:
#   ${CHARTGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chartgate/tools}
# Each tool lands in <cache>/<name>-<version>/ and is linked from <cache>/bin/.
# A tool already built at its pinned version is not rebuilt.
#
# usage: scripts/tools.sh TOOL...     TOOL: oracle | chartmuseum
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tools=${CHARTGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chartgate/tools}
mkdir -p "$tools/bin"

CHARTMUSEUM_VERSION=v0.16.5

say() { printf 'tools: %s\n' "$*" >&2; }
die() { printf 'tools: error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "Go is required to build the pinned tools (go install); none found on PATH"

link() { ln -sfn "$1" "$tools/bin/$2"; }

# The chartmuseum/auth oracle: our Go driver of the real library, keyed by a
# hash of its sources so an edit rebuilds it.
install_oracle() {
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

install_chartmuseum() {
    local dest=$tools/chartmuseum-$CHARTMUSEUM_VERSION
    if [ ! -x "$dest/bin/chartmuseum" ]; then
        say "building chartmuseum $CHARTMUSEUM_VERSION (go install helm.sh/chartmuseum/cmd/chartmuseum)"
        mkdir -p "$dest/bin"
        if ! GOBIN=$dest/bin go install -trimpath \
            -ldflags "-X main.Version=$CHARTMUSEUM_VERSION" \
            "helm.sh/chartmuseum/cmd/chartmuseum@$CHARTMUSEUM_VERSION"; then
            die "could not build ChartMuseum $CHARTMUSEUM_VERSION from its Go module (is helm.sh/chartmuseum reachable through GOPROXY?). Set CHARTMUSEUM_BIN to an existing chartmuseum binary to use that instead."
        fi
    fi
    link "$dest/bin/chartmuseum" chartmuseum
}

[ $# -gt 0 ] || die "usage: scripts/tools.sh oracle|chartmuseum..."
for tool in "$@"; do
    case $tool in
        oracle) install_oracle ;;
        chartmuseum) install_chartmuseum ;;
        *) die "unknown tool $tool" ;;
    esac
done
say "tools ready in $tools/bin"
