#!/usr/bin/env bash
# make podman (and make setup, .ci/run): install what `make image-local` and `make image-test` need —
# podman (runc runtime, netavark networking, as container/podman/containers.conf expects), buildah and
# debootstrap (the stand-in base) — from the Debian packages, when podman is missing and this is root on a
# Debian-like system. Anywhere else it prints what to install and succeeds: the rest of the project
# (make setup, make test) does not need podman; tests/image then skip, naming `make image-local`.
set -euo pipefail

packages=(podman buildah runc debootstrap netavark aardvark-dns catatonit slirp4netns uidmap)

if command -v podman >/dev/null && command -v debootstrap >/dev/null; then
    echo "podman: $(podman --version) and debootstrap are installed"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "note: make image-local needs podman and debootstrap; install (as root): apt-get install ${packages[*]}" >&2
    exit 0
fi
echo "podman: installing ${packages[*]} (apt-get)"
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
podman --version
