"""boto3 clients, made per invocation to follow the environment (region, endpoint, AWS_MAX_ATTEMPTS)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard"}, user_agent_extra="facetrain")


def client(service: str) -> Any:
    """A boto3 client with standard retries (attempts from AWS_MAX_ATTEMPTS, botocore's default 3)."""
    return boto3.client(service, config=_CONFIG)  # type: ignore[call-overload]
