"""The local AWS `facetrain run`, the tests and `facetrain launch` stand up: moto with the real ASL
interpreter and Docker-less Lambda, IAM enforced, S3 events as AWS sends them, and rules that invoke
their Lambda targets; and where the template lies."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import boto3
from moto import mock_aws

from .eventbridge_delivery import lambda_targets_invoked, s3_events_as_aws_sends_them
from .iam_enforcement import iam_enforced
from .identities import LocalAccount, local_account
from .lambda_runtime import environment

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
REGION = "eu-west-1"
MOCK_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


@contextlib.contextmanager
def local_aws(region: str = REGION) -> Iterator[LocalAccount]:
    """moto with the real ASL interpreter and Docker-less Lambda, IAM enforced (iam_enforcement.py), S3
    events as AWS sends them, rules that invoke their Lambda targets.

    Whoever does not say otherwise is the local administrator (identities.py): boto3's default session
    and the environment's AWS_* credentials are the administrator's for the block's duration; the
    functions, the state machine, the training job and the operator sign as themselves."""
    with mock_aws(config=MOCK_CONFIG), local_account(region) as account:  # type: ignore[arg-type]
        saved_session = boto3.DEFAULT_SESSION
        boto3.DEFAULT_SESSION = account.admin.session(region)
        try:
            with (
                environment({"AWS_DEFAULT_REGION": region, **account.admin.environment()}),
                iam_enforced(account.roles, account.denials),
                s3_events_as_aws_sends_them(),
                lambda_targets_invoked(),
            ):
                yield account
        finally:
            boto3.DEFAULT_SESSION = saved_session
