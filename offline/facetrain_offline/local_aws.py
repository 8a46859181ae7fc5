"""The local AWS `facetrain run`, the tests and `facetrain launch` stand up: moto with the real ASL
interpreter and Docker-less Lambda, S3 events as AWS sends them, and rules that invoke their Lambda
targets; and where the template lies."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from moto import mock_aws

from .eventbridge_delivery import lambda_targets_invoked, s3_events_as_aws_sends_them
from .lambda_runtime import environment

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
REGION = "eu-west-1"
MOCK_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


@contextlib.contextmanager
def local_aws(region: str = REGION) -> Iterator[None]:
    """moto with the real ASL interpreter and Docker-less Lambda, S3 events as AWS sends them, rules that
    invoke their Lambda targets, and the environment boto3 needs."""
    fake_credentials = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}  # moto accepts any
    with (
        environment({"AWS_DEFAULT_REGION": region, **fake_credentials}),
        mock_aws(config=MOCK_CONFIG),  # type: ignore[arg-type]
        s3_events_as_aws_sends_them(),
        lambda_targets_invoked(),
    ):
        yield
