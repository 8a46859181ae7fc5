"""boto3 clients, made per invocation to follow the environment (region, endpoint, AWS_MAX_ATTEMPTS)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def client(service: str) -> Any:
    """A boto3 client with standard retries (attempts from AWS_MAX_ATTEMPTS, botocore's default 3).

    The Config is made anew each time: botocore writes the attempts it resolved from the environment into
    the `retries` dict of the Config it is given, so a shared Config would keep the first client's value
    for every later one (an in-process Lambda with AWS_MAX_ATTEMPTS=1 would still retry)."""
    config = Config(retries={"mode": "standard"}, user_agent_extra="facetrain")
    return boto3.client(service, config=config)  # type: ignore[call-overload]
