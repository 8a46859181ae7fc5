#!/usr/bin/env bash
# make image-local: build container/Dockerfile with podman into localhost/facetrain:local, on a machine
# that may reach no container registry. The CPU flavour (ACCELERATOR=cpu): its export stage installs torch
# (from this machine's local wheels) to make the ONNX files; the image itself holds ONNX Runtime, no torch.
#
#   container/podman/build_local.sh            # base (pulled, else built from Debian packages), then the image
#   container/podman/build_local.sh base       # only make sure a base image exists; print its name
#
# The base: the Dockerfile's pinned python:3.11.7-slim-bookworm when it can be pulled (a short timeout),
# else a stand-in built from Debian bookworm packages (container/podman/build_base.sh). The vggface2
# weights are downloaded from GitHub at build time when it answers, else the image is built without them
# and its labels and FACETRAIN_VGGFACE2_WEIGHTS say so (the job then refuses facenet+vggface2 naming the fix).
# pip gets this machine's local wheel indexes (read-only bind mounts) and its CA bundle (a build secret):
# build time only, neither is in the image.
#
# Environment: IMAGE (default localhost/facetrain:local), ACCELERATOR (cpu, default; gpu downloads ~3 GB of
# CUDA 12 wheels from PyPI: see container/Dockerfile), PULL_TIMEOUT (seconds, default 20),
# VGGFACE2_WEIGHTS (baked | absent | auto: try the download, default auto), PIP_CA_BUNDLE (default
# /etc/ssl/certs/ca-certificates.crt), LOCAL_WHEELS (folders bind-mounted for pip; default: those of
# /opt/pypi /opt/pypi-more /opt/wheels that exist).
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$repo_root/container/podman/containers.conf}"

image="${IMAGE:-localhost/facetrain:local}"
registry_base="docker.io/library/python:3.11.7-slim-bookworm"
standin_base="localhost/facetrain-base:python3.11-bookworm"
pull_timeout="${PULL_TIMEOUT:-20}"
weights="${VGGFACE2_WEIGHTS:-auto}"
accelerator="${ACCELERATOR:-cpu}"
ca_bundle="${PIP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
vggface2_url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"

say() { printf 'image-local: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

command -v podman >/dev/null || die "podman is not installed: run \`make podman\` (root), or install podman, buildah, runc and debootstrap"

# Prints the base image to build on: the registry's when it is here or can be pulled in time, else the
# stand-in (built first when missing).
choose_base() {
    if podman image exists "$registry_base"; then
        echo "$registry_base"
        return
    fi
    say "pulling $registry_base (at most ${pull_timeout}s)"
    if timeout "$pull_timeout" podman pull --quiet "$registry_base" >/dev/null 2>&1; then
        echo "$registry_base"
        return
    fi
    if podman image exists "$standin_base"; then
        say "cannot pull $registry_base: using the stand-in base $standin_base (Debian bookworm's Python 3.11)"
    else
        say "cannot pull $registry_base: building the stand-in base $standin_base from Debian bookworm packages"
        "$repo_root/container/podman/build_base.sh" "$standin_base" >&2
    fi
    echo "$standin_base"
}

# baked when the weights URL answers (a HEAD request, short timeout), else absent.
choose_weights() {
    case "$weights" in
        baked | absent) echo "$weights" ;;
        auto)
            if timeout 15 python3 -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"), timeout=10)' "$vggface2_url" >/dev/null 2>&1; then
                echo baked
            else
                echo absent
            fi
            ;;
        *) die "VGGFACE2_WEIGHTS=$weights: use baked, absent or auto" ;;
    esac
}

start=$SECONDS
base="$(choose_base)"
say "base image: $base ($((SECONDS - start))s)"
if [ "${1:-}" = base ]; then
    echo "$base"
    exit 0
fi

case "$accelerator" in
    cpu | gpu) ;;
    *) die "ACCELERATOR=$accelerator: use cpu or gpu" ;;
esac
baked="$(choose_weights)"
if [ "$baked" = absent ]; then
    say "the vggface2 weights are not baked in (GitHub does not answer, or VGGFACE2_WEIGHTS=absent):"
    say "  this image runs embedder=dlib-resnet and weights=none; facenet+vggface2 jobs are refused"
fi

# Local wheel folders and their index URLs for pip (build arguments, empty by default in the Dockerfile).
volumes=()
find_links=()
index_urls=()
for dir in ${LOCAL_WHEELS-/opt/pypi /opt/pypi-more /opt/wheels}; do
    [ -d "$dir" ] || continue
    volumes+=(--volume "$dir:$dir:ro")
    if [ -d "$dir/simple" ]; then index_urls+=("file://$dir/simple"); else find_links+=("$dir"); fi
done
secrets=()
if [ -f "$ca_bundle" ]; then
    secrets+=(--secret "id=pipcert,src=$ca_bundle")
fi

previous="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"

# --format docker: as `docker build` does, so that SHELL (bash, pipefail) is kept (OCI has no SHELL).
podman build \
    --format docker \
    --file "$repo_root/container/Dockerfile" \
    --tag "$image" \
    --build-arg "BASE_IMAGE=$base" \
    --build-arg "VGGFACE2_WEIGHTS=$baked" \
    --build-arg "ACCELERATOR=$accelerator" \
    --build-arg "PIP_EXTRA_INDEX_URL=${index_urls[*]-}" \
    --build-arg "PIP_FIND_LINKS=${find_links[*]-}" \
    ${volumes[@]+"${volumes[@]}"} \
    ${secrets[@]+"${secrets[@]}"} \
    "$repo_root"

current="$(podman image inspect --format '{{.Id}}' "$image")"
# The image this build replaced, now untagged: removed when
# nothing else tags or uses it; the layers the new image shares stay.
if [ -n "$previous" ] && [ "$previous" != "$current" ] &&
    [ -z "$(podman image inspect --format '{{join .RepoTags ","}}' "$previous" 2>/dev/null)" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
fi
size="$(podman image inspect --format '{{.Size}}' "$current")"
say "built $image ($accelerator) on $base, vggface2 weights $baked, $((size / 1000000)) MB, in $((SECONDS - start))s"
