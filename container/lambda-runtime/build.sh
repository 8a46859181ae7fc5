#!/usr/bin/env bash
# Build the stand-in for public.ecr.aws/lambda/python:3.13 (see Dockerfile) with podman, from Debian
# packages and PyPI, for machines that reach no container registry:
#
#   container/lambda-runtime/build.sh [IMAGE]     (default localhost/facetrain-lambda-python:3.13)
#
# 1. the base, when missing: `debootstrap --variant=minbase trixie` (Python 3.13) imported as
#    localhost/facetrain-lambda-base:trixie (needs root and debootstrap);
# 2. the image: the Dockerfile on that base; pip gets this machine's CA bundle as a build secret (never in
#    the image);
# 3. the check: the image's /var/lang holds exactly requirements.txt (tools/locks.py installed).
#
# Environment: BASE_IMAGE, DEBIAN_MIRROR (default http://deb.debian.org/debian), PIP_CA_BUNDLE (default
# /etc/ssl/certs/ca-certificates.crt), CONTAINERS_CONF (default container/podman/containers.conf).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$repo_root/container/podman/containers.conf}"
image="${1:-localhost/facetrain-lambda-python:3.13}"
base="${BASE_IMAGE:-localhost/facetrain-lambda-base:trixie}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${PIP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

say() { printf 'lambda-runtime: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

command -v podman >/dev/null || die "podman is not installed (apt-get install podman buildah runc)"
start=$SECONDS

build_base() {
    [ "$(id -u)" = 0 ] || die "building the base $base needs root (debootstrap)"
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    local rootfs
    rootfs="$(mktemp -d /tmp/facetrain-lambda-base.XXXXXX)"
    # shellcheck disable=SC2064  # expand now: the trap must remove this very folder
    trap "rm -rf -- '$rootfs'" EXIT
    say "building the base $base: debootstrap trixie (Python 3.13) from $mirror"
    # ca-certificates: TLS for boto3's and the handlers' HTTPS (the real image has Amazon Linux's bundle).
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates trixie "$rootfs" "$mirror" >&2
    chroot "$rootfs" /usr/bin/python3 -c 'import sys; assert sys.version_info[:2] == (3, 13), sys.version'
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
    tar --numeric-owner -C "$rootfs" -c . | podman import \
        --message "facetrain lambda-runtime base: debootstrap trixie minbase (Python 3.13)" - "$base" >/dev/null
    rm -rf -- "$rootfs"
    trap - EXIT
}

if ! podman image exists "$base"; then
    build_base
fi
say "base $base ready ($((SECONDS - start))s)"

secrets=()
[ -f "$ca_bundle" ] && secrets+=(--secret "id=pipcert,src=$ca_bundle")
# --format docker: the image config a Docker client (SAM CLI) expects to read back.
podman build --quiet --format docker --file "$here/Dockerfile" --tag "$image" \
    --build-arg "BASE_IMAGE=$base" ${secrets[@]+"${secrets[@]}"} "$here" >/dev/null

# The runtime's packages are exactly the lock: nothing missing, nothing else.
podman run --rm --network none --entrypoint /var/lang/bin/python3.13 \
    --volume "$repo_root/tools/locks.py:/check/locks.py:ro" \
    --volume "$here/requirements.txt:/check/requirements.txt:ro" \
    "$image" /check/locks.py installed /check/requirements.txt >&2
say "built $image in $((SECONDS - start))s"
