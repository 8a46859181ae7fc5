"""boto3 clients, made per invocation to follow the environment (region, credentials, endpoint,
AWS_MAX_ATTEMPTS)."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config


def client(service: str) -> Any:
    """A boto3 client with standard retries (attempts from AWS_MAX_ATTEMPTS, botocore's default 3).

    The Config is made anew each time: botocore writes the attempts it resolved from the environment into
    the `retries` dict of the Config it is given, so a shared Config would keep the first client's value
    for every later one (an in-process Lambda with AWS_MAX_ATTEMPTS=1 would still retry).

    The session is made anew too: boto3's default session keeps the first credentials it resolved, and
    a function signs with the credentials of its own environment (on Lambda, its execution role's;
    offline, several functions share one process). The service models are read once and shared."""
    config = Config(retries={"mode": "standard"}, user_agent_extra="facetrain")
    session = botocore.session.get_session()
    session.register_component("data_loader", _LOADER)
    return boto3.Session(botocore_session=session).client(service, config=config)  # type: ignore[call-overload]


_LOADER = botocore.loaders.create_loader()
