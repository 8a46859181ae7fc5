#!/usr/bin/env bash
# Build the facetrain training image (container/Dockerfile, context = repository root) and push it to ECR.
#
# Usage: container/build_and_push.sh NAME [TAG]
#
#   NAME  ECR repository name (created if missing: scan on push, IMMUTABLE tags, KMS encryption).
#   TAG   image tag; default: the short git commit (suffixed -dirty-<UTC time> when the working tree has
#         uncommitted changes), or a UTC timestamp outside a git checkout. An existing tag is never
#         overwritten: the script fails before building.
#
# Environment: AWS_REGION / AWS_DEFAULT_REGION (else `aws configure get region`), the usual AWS
# credentials, IMAGE_URI_FILE (default container/image_uri.txt, read by the deploy step),
# VGGFACE2_SHA256 (optional, passed to the build to verify the pretrained weights), ACCELERATOR (gpu,
# default, or cpu: the Dockerfile's flavour).
#
# gpu by default: the stack's default TrainingInstanceType is a GPU one (ml.g4dn.xlarge), where a job
# that cannot use the GPU fails (device=auto); the gpu flavour's onnxruntime-gpu (CUDA 12, driver >= 525)
# also has ONNX Runtime's CPU provider, so the same image runs CPU instance types too. ACCELERATOR=cpu
# builds the smaller image (no CUDA libraries, ~3 GB less to pull per job) for stacks that only ever
# use CPU instance types.
#
# stdout carries only the image URI (last step); progress and errors go to stderr. Works from any cwd.
set -euo pipefail

prog=${0##*/}

usage() {
    cat >&2 <<EOF
usage: $prog NAME [TAG]

Build container/Dockerfile and push it to ECR as ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME:TAG,
then write that URI to \${IMAGE_URI_FILE:-container/image_uri.txt}.

  NAME  ECR repository name: 2-256 chars, lowercase letters, digits and . _ - / (created if missing)
  TAG   image tag (default: short git commit, or a UTC timestamp); an existing tag is never overwritten
EOF
}

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

log() {
    printf '%s: %s\n' "$prog" "$*" >&2
}

if [[ $# -ge 1 && ($1 == -h || $1 == --help) ]]; then
    usage
    exit 0
fi
if [[ $# -lt 1 || $# -gt 2 ]]; then
    usage
    exit 2
fi

name=$1
# ECR repository name rules (CreateRepository API).
name_re='^([a-z0-9]+([._-][a-z0-9]+)*/)*[a-z0-9]+([._-][a-z0-9]+)*$'
if ((${#name} < 2 || ${#name} > 256)) || [[ ! $name =~ $name_re ]]; then
    printf '%s: error: invalid ECR repository name %q\n' "$prog" "$name" >&2
    usage
    exit 2
fi

# Resolve the repository root from this script's own location, so any cwd works.
src=${BASH_SOURCE[0]}
[[ $src == */* ]] || src=./$src
script_dir=$(cd -- "${src%/*}" && pwd -P)
repo_root=$(cd -- "$script_dir/.." && pwd -P)

utc_stamp() {
    date -u +%Y%m%dT%H%M%SZ
}

default_tag() {
    local sha
    if command -v git >/dev/null 2>&1 &&
        sha=$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null) && [[ -n $sha ]]; then
        # Tags are immutable: do not label a build of uncommitted changes as the commit itself.
        if [[ -n $(git -C "$repo_root" status --porcelain 2>/dev/null) ]]; then
            sha="$sha-dirty-$(utc_stamp)"
        fi
        printf '%s\n' "$sha"
    else
        utc_stamp
    fi
}

if [[ $# -ge 2 ]]; then
    tag=$2
else
    tag=$(default_tag)
fi
# Docker tag rules.
if [[ ! $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
    printf '%s: error: invalid image tag %q\n' "$prog" "$tag" >&2
    usage
    exit 2
fi

# The Dockerfile's flavour, checked before anything is created or built.
accelerator=${ACCELERATOR:-gpu}
[[ $accelerator == gpu || $accelerator == cpu ]] || die "ACCELERATOR=$accelerator: use gpu or cpu"

command -v aws >/dev/null 2>&1 ||
    die "'aws' not found on PATH: install the AWS CLI v2 (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)"
command -v docker >/dev/null 2>&1 ||
    die "'docker' not found on PATH: install Docker (https://docs.docker.com/get-docker/) and start its daemon"

export AWS_PAGER=""

region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
if [[ -z $region ]]; then
    region=$(aws configure get region 2>/dev/null) || region=""
fi
[[ -n $region ]] || die "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or run 'aws configure set region REGION'"

account=$(aws sts get-caller-identity --region "$region" --query Account --output text) ||
    die "cannot get the AWS account id (aws sts get-caller-identity failed: are credentials configured?)"
[[ $account =~ ^[0-9]{12}$ ]] || die "unexpected AWS account id from sts get-caller-identity: '$account'"

domain=amazonaws.com
[[ $region == cn-* ]] && domain=amazonaws.com.cn
registry=$account.dkr.ecr.$region.$domain
image_uri=$registry/$name:$tag
uri_file=${IMAGE_URI_FILE:-$repo_root/container/image_uri.txt}

errfile=$(mktemp)
trap 'rm -f -- "$errfile"' EXIT

# 1. The repository: create it when missing (and only then).
if mutability=$(aws ecr describe-repositories --region "$region" --repository-names "$name" \
    --query 'repositories[0].imageTagMutability' --output text 2>"$errfile"); then
    log "ECR repository $name exists"
    [[ $mutability == IMMUTABLE ]] ||
        log "warning: repository $name has tag mutability '$mutability', not IMMUTABLE"
elif [[ $(<"$errfile") == *RepositoryNotFoundException* ]]; then
    log "creating ECR repository $name in $region"
    aws ecr create-repository --region "$region" --repository-name "$name" \
        --image-scanning-configuration scanOnPush=true \
        --image-tag-mutability IMMUTABLE \
        --encryption-configuration encryptionType=KMS >/dev/null ||
        die "cannot create ECR repository $name"
else
    die "cannot describe ECR repository $name: $(<"$errfile")"
fi

# 2. Never overwrite: fail before building when the tag is already there.
if aws ecr describe-images --region "$region" --repository-name "$name" --image-ids "imageTag=$tag" \
    >/dev/null 2>"$errfile"; then
    die "tag '$tag' already exists in ECR repository $name ($image_uri); tags are immutable: pass another TAG (or commit your changes for a new default tag)"
elif [[ $(<"$errfile") != *ImageNotFoundException* ]]; then
    die "cannot check whether $image_uri exists: $(<"$errfile")"
fi

# 3. Log in, build, tag, push. Build/push output goes to stderr: stdout is the URI only.
log "logging in to $registry"
aws ecr get-login-password --region "$region" |
    docker login --username AWS --password-stdin "$registry" >&2 ||
    die "docker login to $registry failed"

build_args=(--build-arg "ACCELERATOR=$accelerator")
if [[ -n ${VGGFACE2_SHA256:-} ]]; then
    build_args+=(--build-arg "VGGFACE2_SHA256=$VGGFACE2_SHA256")
fi
log "building $name:$tag ($accelerator) from $repo_root"
# SageMaker training instances are x86_64: build for it even on an arm64 workstation.
docker build --platform linux/amd64 ${build_args[@]+"${build_args[@]}"} \
    -f "$repo_root/container/Dockerfile" -t "$name:$tag" "$repo_root" >&2 ||
    die "docker build failed"
docker tag "$name:$tag" "$image_uri" >&2 || die "docker tag failed"
log "pushing $image_uri"
docker push "$image_uri" >&2 || die "docker push of $image_uri failed"

# 4. Hand the URI to the deploy step.
printf '%s\n' "$image_uri" >"$uri_file" || die "cannot write $uri_file"
log "image URI written to $uri_file"
printf '%s\n' "$image_uri"
