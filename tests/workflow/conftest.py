"""Fixtures of the workflow tests: an offline stack (see offline_stack.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from facetrain_testkit import REGION, FakeSageMaker
from offline_stack import OfflineStack, offline_stack

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "POWERTOOLS_SERVICE_NAME": "facetrain",
    "POWERTOOLS_METRICS_NAMESPACE": "facetrain",
}.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture
def fake_sagemaker() -> FakeSageMaker:
    """Set fail_with, in_progress_polls, throttle_describes or files_override before running."""
    return FakeSageMaker()


@pytest.fixture
def stack(fake_sagemaker: FakeSageMaker) -> Iterator[OfflineStack]:
    with offline_stack(fake_sagemaker) as running:
        yield running
