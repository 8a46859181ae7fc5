#!/usr/bin/env bash
# Build a stand-in for python:3.11-slim-bookworm from Debian packages, for machines that reach the Debian
# mirror but no container registry:  container/podman/build_base.sh [NAME]
# (default NAME localhost/facetrain-base:python3.11-bookworm; needs root, debootstrap and podman).
#
# Laid out as the official image is used: `python` and `pip` first on PATH. Debian's own python3 refuses
# `pip install` into the system (PEP 668, externally managed), so Python 3.11 from bookworm's packages gets
# a virtual environment at /opt/python whose bin/ leads PATH: pip then owns its site-packages as it owns
# /usr/local in the official image, and the venv sees none of Debian's dist-packages (the Dockerfile's
# `tools/locks.py installed` check sees exactly what pip installed). Same minor version as the pinned
# base (3.11; bookworm ships 3.11.2), the same Debian release, LANG=C.UTF-8 as in the official image.
set -euo pipefail

name="${1:-localhost/facetrain-base:python3.11-bookworm}"
suite=bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$(dirname "$0")" && pwd)/containers.conf}"

[ "$(id -u)" = 0 ] || { echo "build_base.sh: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "build_base.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

rootfs="$(mktemp -d /tmp/facetrain-base.XXXXXX)"
trap 'rm -rf -- "$rootfs"' EXIT

# ca-certificates: Python's TLS (the weights download); netbase: /etc/services and /etc/protocols, as in
# the official slim image.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,netbase \
    "$suite" "$rootfs" "$mirror"

chroot "$rootfs" /usr/bin/python3 -m venv /opt/python
chroot "$rootfs" /opt/python/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'
# The image's apt sources: the release and its security updates (debootstrap writes only the release).
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
EOF
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log

tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV VIRTUAL_ENV=/opt/python' \
    --change 'CMD ["python3"]' \
    --message "facetrain stand-in base: debootstrap $suite minbase, Python 3.11 venv at /opt/python" \
    - "$name"
echo "build_base.sh: built $name"
