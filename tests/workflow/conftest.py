"""Fixtures of the workflow tests: template.yaml deployed by facetrain_offline (see support/workflow.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from support.testkit import FakeSageMaker
from support.workflow import REGION, WorkflowStack, deployed_workflow

# The handlers' modules may be imported at collection, outside any function's environment: Powertools
# reads these when its objects are made.
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
def stack(fake_sagemaker: FakeSageMaker) -> Iterator[WorkflowStack]:
    with deployed_workflow(fake_sagemaker) as running:
        yield running
