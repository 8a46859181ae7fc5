"""The region `make image`, `make deploy` and `make delete` share, and what `make deploy` refuses first.

python tools/deploy_checks.py region
    prints the region: AWS_REGION, else AWS_DEFAULT_REGION, else `aws configure get region`; none of
    them: exit 1 saying how to set one.
python tools/deploy_checks.py check REGION OVERRIDES
    OVERRIDES is the --parameter-overrides text `make deploy` passes (`K=V K=V`, shell quoting);
    exit 1 listing each problem: a TrainingImageUri of another region than REGION (both named), and
    a MaxPollIntervalSeconds below PollIntervalSeconds (template defaults fill the one not given),
    which CloudFormation cannot compare.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
ECR_REGION = re.compile(r"^\d{12}\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")
NO_REGION = (
    "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or run 'aws configure set region REGION'; "
    "make image, make deploy and make delete all use it"
)


def configured_region() -> str | None:
    """`aws configure get region` (the profile's region), or None without one or without the CLI."""
    aws = shutil.which("aws")
    if aws is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603 (fixed args, the aws on PATH)
            [aws, "configure", "get", "region"], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def resolve_region(
    environ: Mapping[str, str], configured: Callable[[], str | None] = configured_region
) -> str | None:
    """AWS_REGION, else AWS_DEFAULT_REGION, else the AWS CLI's configured region (asked only then)."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if environ.get(name, "").strip():
            return environ[name].strip()
    return configured()


def parse_overrides(text: str) -> dict[str, str]:
    """`K=V K=V` (shell quoting, as sam reads --parameter-overrides) as a dict; a later K wins.
    ValueError for a word that is not K=V."""
    overrides: dict[str, str] = {}
    for word in shlex.split(text):
        key, equals, value = word.partition("=")
        if not equals or not re.fullmatch(r"[A-Za-z0-9]+", key):
            raise ValueError(f"cannot read parameter override {word!r}: write NAME=VALUE")
        overrides[key] = value
    return overrides


def template_defaults(template: Path = TEMPLATE) -> dict[str, str]:
    """The Default of each parameter of template.yaml (its other sections are not read)."""

    class _Loader(yaml.SafeLoader):
        """Reads CloudFormation's short forms (!Ref, !Sub, ...) as nothing: only Parameters are used."""

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    parameters = yaml.load(template.read_text(encoding="utf-8"), Loader=_Loader)["Parameters"]  # noqa: S506
    return {name: str(spec["Default"]) for name, spec in parameters.items() if "Default" in spec}


def image_region(image_uri: str) -> str | None:
    """The region of an ECR image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/...), None for another URI."""
    match = ECR_REGION.match(image_uri)
    return match.group("region") if match else None


def deploy_problems(region: str, overrides: Mapping[str, str], defaults: Mapping[str, str]) -> list[str]:
    """What `make deploy` refuses before `sam deploy` (none: [])."""
    problems: list[str] = []
    image = overrides.get("TrainingImageUri", "")
    found = image_region(image)
    if found is None:
        problems.append(f"TrainingImageUri {image!r} is not an ECR image URI (run make image)")
    elif found != region:
        problems.append(
            f"TrainingImageUri {image} is in region {found}, but the stack deploys to region {region}: "
            f"run make image with AWS_REGION={region}, or make deploy with AWS_REGION={found}"
        )
    values = {**defaults, **overrides}
    first, longest = values.get("PollIntervalSeconds"), values.get("MaxPollIntervalSeconds")
    if first is not None and longest is not None and float(longest) < float(first):
        problems.append(
            f"MaxPollIntervalSeconds {longest} is below PollIntervalSeconds {first}: every wait after the "
            "first would be the shorter one; give a MaxPollIntervalSeconds at least as long"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); problems go to stderr."""
    parser = argparse.ArgumentParser(prog="deploy_checks.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("region", help="print the region make image/deploy/delete use")
    check = commands.add_parser("check", help="refuse what make deploy must not deploy")
    check.add_argument("region")
    check.add_argument("overrides")
    args = parser.parse_args(argv)
    if args.command == "region":
        region = resolve_region(os.environ)
        if region is None:
            print(f"deploy_checks: {NO_REGION}", file=sys.stderr)
            return 1
        print(region)
        return 0
    try:
        problems = deploy_problems(args.region, parse_overrides(args.overrides), template_defaults())
    except ValueError as exc:
        problems = [str(exc)]
    for problem in problems:
        print(f"deploy_checks: refused: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
