"""Fixtures of the workflow tests: template.yaml deployed by facetrain_offline (see support/workflow.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.handler_env import set_default_handler_env
from support.testkit import FakeSageMaker
from support.workflow import REGION, WorkflowStack, deployed_workflow

# The handlers' modules may be imported at collection, outside any function's environment: Powertools
# reads these when its objects are made.
set_default_handler_env(REGION)


@pytest.fixture
def fake_sagemaker() -> FakeSageMaker:
    """Set fail_with, in_progress_polls, throttle_describes or files_override before running."""
    return FakeSageMaker()


@pytest.fixture
def stack(fake_sagemaker: FakeSageMaker) -> Iterator[WorkflowStack]:
    with deployed_workflow(fake_sagemaker) as running:
        yield running
