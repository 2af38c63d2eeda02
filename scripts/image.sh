#!/usr/bin/env bash
# Builds chartgate's container image on this machine without pulling any
# base image: a static binary (glibc, +crt-static) and the files
# deploy/Dockerfile copies, assembled FROM scratch by buildah (vfs storage).
# Writes an OCI archive to target/image/chartgate.oci.tar and prints its size.
#
# usage: scripts/image.sh [TAG]     (default: chartgate:<crate version>)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v buildah >/dev/null || { echo "image: buildah is missing: scripts/tools.sh deploy installs it" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${1:-chartgate:$version}
triple=x86_64-unknown-linux-gnu

# Static glibc, and the getrandom system call asked for directly: in a
# static binary the getrandom crate cannot look the libc function up at run
# time and would fall back to /dev/urandom, which a bare chroot lacks.
echo "image: building the static binary"
RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
    cargo build --release --locked --target "$triple" --bin chartgate
bin=target/$triple/release/chartgate
# A static binary has no interpreter; refuse to package anything else.
if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
    echo "image: $bin is dynamically linked" >&2
    exit 1
fi
roots=/etc/ssl/certs/ca-certificates.crt
[ -f "$roots" ] || { echo "image: $roots is missing (Debian's ca-certificates)" >&2; exit 1; }

b() { buildah --storage-driver vfs "$@"; }
ctr=$(b from scratch)
trap 'b rm "$ctr" >/dev/null 2>&1 || true' EXIT
b copy --chmod 0755 "$ctr" "$bin" /usr/local/bin/chartgate
b copy --chmod 0644 "$ctr" "$roots" /etc/ssl/certs/ca-certificates.crt
for f in passwd group nsswitch.conf; do
    b copy --chmod 0644 "$ctr" "deploy/image/$f" "/etc/$f"
done
b config \
    --user 65532:65532 \
    --port 8080 --port 8443 --port 9090 \
    --entrypoint '["/usr/local/bin/chartgate"]' \
    --cmd 'serve --config /etc/chartgate/chartgate.toml' \
    --label org.opencontainers.image.title=chartgate \
    --label "org.opencontainers.image.version=$version" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    "$ctr"
b commit --quiet "$ctr" "$tag" >/dev/null
mkdir -p target/image
rm -f target/image/chartgate.oci.tar
b push --quiet "$tag" "oci-archive:target/image/chartgate.oci.tar:$tag"
echo "image: $tag -> target/image/chartgate.oci.tar ($(du -h target/image/chartgate.oci.tar | cut -f1)); binary $(du -h "$bin" | cut -f1)"
