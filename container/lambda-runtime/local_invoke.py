"""`make invoke`: one function of the `sam build` output, run by `sam local invoke` in the python3.13
stand-in image (this folder's Dockerfile) through podman, against a moto server seeded with what
events/env.json names (seed.py).

    .venv/bin/python container/lambda-runtime/local_invoke.py FUNCTION EVENT [--image IMAGE]
        [--before FUNCTION=EVENT ...]

Each run starts a fresh local AWS: --before invokes run first in it (e.g. validate before start, which
reads the run record validate writes). The function's response goes to stdout (as sam prints it),
everything else to stderr. Exit status: sam's;
2 when the arguments or this machine are not ready (the message says what to do).

A CloudFormation custom resource request (events/cleanup.json) is answered at its ResponseURL, which
nothing here serves: the event is invoked with a ResponseURL of a local stand-in (cloudformation.py), and
the response CloudFormation would have received is printed to stdout after the function's; the exit
status is 1 when none came or its Status is not SUCCESS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudformation
import seed
import services

REPO_ROOT = Path(__file__).resolve().parents[2]
SAM = REPO_ROOT / ".venv-sam" / "bin" / "sam"
BUILT_TEMPLATE = REPO_ROOT / ".aws-sam" / "build" / "template.yaml"
DEFAULT_IMAGE = "localhost/facetrain-lambda-python:3.13"
REGION = "us-east-1"  # the region of events/env.json's ARNs
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# What `sam build` makes the functions and the layer from (template.yaml's CodeUri and ContentUri folders).
BUILD_SOURCES = (
    "template.yaml",
    "lambdas",
    "container/Makefile",
    "container/layer-requirements.txt",
    "container/facetrain/__init__.py",
    "container/facetrain/contract",
)


def build_is_fresh() -> bool:
    """Whether .aws-sam/build exists and is newer than every file it is built from: a stale build would run
    yesterday's handlers or contract against today's documents."""
    if not BUILT_TEMPLATE.is_file():
        return False
    built = BUILT_TEMPLATE.stat().st_mtime
    for name in BUILD_SOURCES:
        source = REPO_ROOT / name
        files = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
        if any(p.stat().st_mtime > built and "__pycache__" not in p.parts for p in files):
            return False
    return True


class NotReady(Exception):
    """The arguments or the machine are not ready; the message says what to do."""


@dataclass(frozen=True)
class LocalAws:
    """A seeded moto server and a podman API service whose containers use it as their AWS."""

    endpoint_url: str  # for this host
    container_endpoint_url: str  # for the function containers
    docker_host: str
    created: dict[str, str]
    cloudformation: cloudformation.Responder  # ResponseURLs for custom resource requests


@contextlib.contextmanager
def local_aws(env_file: Path = seed.ENV_FILE) -> Iterator[LocalAws]:
    """The moto server on podman's bridge gateway, seeded for env_file, the CloudFormation stand-in on
    the same address, and the podman service whose containers use the one and trust the other."""
    missing = services.missing_tools()
    if missing:
        raise NotReady("sam local invoke needs: " + "; ".join(missing))
    gateway = services.bridge_gateway()
    with services.moto_server(gateway) as moto, cloudformation.responder(gateway) as responder:
        created = seed.seed(moto.host_url, REGION, seed.environment(env_file))
        container_env = {
            "AWS_ENDPOINT_URL": moto.container_url,
            "SSL_CERT_FILE": cloudformation.CONTAINER_CA_FILE,
        }
        ca_mount = f"{responder.ca_file}:{cloudformation.CONTAINER_CA_FILE}:ro"
        with services.podman_service(container_env, volumes=[ca_mount]) as podman:
            yield LocalAws(moto.host_url, moto.container_url, podman.docker_host, created, responder)


def function_names(template: Path = BUILT_TEMPLATE) -> list[str]:
    """The AWS::Serverless::Function logical ids of the built template."""
    from facetrain_offline.sam import load_sam

    resources = load_sam(template)["Resources"]
    return sorted(name for name, spec in resources.items() if spec["Type"] == "AWS::Serverless::Function")


def check_arguments(function: str, event: Path, image: str) -> None:
    """Refuse, with what to do, an unbuilt template, an unknown function, an unreadable event, a missing
    image."""
    if not BUILT_TEMPLATE.is_file():
        raise NotReady(f"no {BUILT_TEMPLATE.relative_to(REPO_ROOT)}: run `make build` first")
    known = function_names()
    if function not in known:
        raise NotReady(f"no function {function!r} in template.yaml; the functions: {', '.join(known)}")
    try:
        json.loads(event.read_text())
    except OSError as error:
        raise NotReady(f"cannot read the event {event}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise NotReady(f"the event {event} is not JSON: {error}") from None
    exists = subprocess.run(["podman", "image", "exists", image], check=False)  # noqa: S603, S607
    if exists.returncode != 0:
        raise NotReady(f"no image {image}: run container/lambda-runtime/build.sh (make invoke builds it)")


def sam_invoke(
    aws: LocalAws,
    function: str,
    event: Path,
    *,
    image: str = DEFAULT_IMAGE,
    env_file: Path = seed.ENV_FILE,
    capture: bool = False,
    timeout_s: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """`sam local invoke FUNCTION` with event and env_file, in image, through aws's podman service.
    Past timeout_s, sam is interrupted (Ctrl+C: it removes the function's container) and the result's
    returncode is 124."""
    start_env = json.loads(env_file.read_text()).get("StartFunction", {})
    command = [
        str(SAM), "local", "invoke", function,
        "--template", str(BUILT_TEMPLATE),
        "--event", str(event),
        "--env-vars", str(env_file),
        "--invoke-image", image,
        "--skip-pull-image",
        "--region", REGION,
        # No default in the template; sam local needs a value, the function reads it from env_file.
        "--parameter-overrides", f"TrainingImageUri={start_env.get('TRAINING_IMAGE_URI', '')}",
    ]  # fmt: skip
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **FAKE_CREDENTIALS,
        "DOCKER_HOST": aws.docker_host,
        "SAM_CLI_TELEMETRY": "0",
        "PYENV_VERSION": "3.13.0",
    }
    output = subprocess.PIPE if capture else None
    with subprocess.Popen(  # noqa: S603
        command, cwd=REPO_ROOT, env=environment, text=True, stdout=output, stderr=output
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # Ctrl+C: sam removes the function's container, but then still waits for its own timer
            # thread (the function's timeout, 900 s for CleanupFunction) before it exits: killed.
            process.send_signal(signal.SIGINT)
            try:
                stdout, stderr = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
            note = f"\nlocal_invoke: sam local invoke {function} interrupted after {timeout_s} s\n"
            print(note, file=sys.stderr)
            return subprocess.CompletedProcess(command, 124, stdout, (stderr or "") + note)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def invoke_custom_resource(
    aws: LocalAws,
    function: str,
    event: Path,
    *,
    image: str = DEFAULT_IMAGE,
    capture: bool = False,
    timeout_s: float | None = None,
) -> tuple[subprocess.CompletedProcess[str], list[Any]]:
    """sam_invoke with the custom resource request in event answered to aws's CloudFormation stand-in:
    sam's result and the bodies the function PUT to its ResponseURL (crhelper sends one)."""
    response_url = aws.cloudformation.response_url()
    with tempfile.TemporaryDirectory(prefix="facetrain-event-") as folder:
        local_event = cloudformation.rewrite_event(event, response_url, Path(folder))
        result = sam_invoke(aws, function, local_event, image=image, capture=capture, timeout_s=timeout_s)
    return result, aws.cloudformation.received(response_url)


def _invoke_and_report(aws: LocalAws, function: str, event: Path, image: str, *, capture: bool) -> int:
    """Invoke; for a custom resource request, also print what CloudFormation received (stdout). The
    exit status: sam's, else 1 when CloudFormation got no SUCCESS."""
    if not cloudformation.is_custom_resource_request(json.loads(event.read_text())):
        result = sam_invoke(aws, function, event, image=image, capture=capture)
        if capture:
            print(f"--before {function} {event}: {result.stdout}", file=sys.stderr)
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
        return result.returncode
    result, bodies = invoke_custom_resource(aws, function, event, image=image, capture=capture)
    if capture:
        print(f"--before {function} {event}: {result.stdout}", file=sys.stderr)
    out = sys.stderr if capture else sys.stdout
    # "\n": sam's response has no newline of its own
    print(f"\nCloudFormation received at ResponseURL ({len(bodies)} response(s)):", file=out)
    for body in bodies:
        print(json.dumps(body, indent=2), file=out)
    if result.returncode != 0:
        if capture:
            print(result.stderr, file=sys.stderr)
        return result.returncode
    if not bodies or any(not isinstance(b, dict) or b.get("Status") != "SUCCESS" for b in bodies):
        print(f"make invoke: {function} did not answer CloudFormation SUCCESS", file=sys.stderr)
        return 1
    return 0


def _step(text: str) -> tuple[str, Path]:
    function, separator, event = text.partition("=")
    if not separator or not function or not event:
        raise NotReady(f"--before {text!r}: write FUNCTION=EVENT, e.g. ValidateFunction=events/validate.json")
    return function, Path(event)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make invoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("function", help="logical id in template.yaml, e.g. ValidateFunction")
    parser.add_argument("event", type=Path, help="event file, e.g. events/validate.json")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help=f"invoke image (default {DEFAULT_IMAGE})")
    parser.add_argument(
        "--before",
        action="append",
        default=[],
        metavar="FUNCTION=EVENT",
        help="invoke this first, in the same local AWS (repeatable, in order)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("CONTAINERS_CONF", str(services.PROJECT_CONTAINERS_CONF))
    try:
        steps = [_step(before) for before in args.before] + [(args.function, args.event)]
        for function, event in steps:
            check_arguments(function, event, args.image)
        with local_aws() as aws:
            created = ", ".join(aws.created.values())
            print(f"local AWS (moto) at {aws.container_endpoint_url}: {created}", file=sys.stderr)
            for function, event in steps[:-1]:
                status = _invoke_and_report(aws, function, event.resolve(), args.image, capture=True)
                if status != 0:
                    return status
            function, event = steps[-1]
            return _invoke_and_report(aws, function, event.resolve(), args.image, capture=False)
    except (NotReady, services.ServiceError) as problem:
        print(f"make invoke: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
