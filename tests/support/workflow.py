"""The workflow under test: template.yaml deployed into moto by facetrain_offline (the stack `facetrain run`
uses: real handlers in-process, the real ASL), with FakeSageMaker in place of training, and helpers to run
executions and read what they left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from facetrain_offline.execution_follower import FINAL_STATUSES
from facetrain_offline.execution_status_events import ExecutionStatusEvents
from facetrain_offline.lambda_runtime import InProcessLambdas
from facetrain_offline.local_aws import DEFAULT_TEMPLATE, local_aws
from facetrain_offline.local_stack import LocalStack
from facetrain_offline.parameter_checks import OFFLINE_SHORT_WAITS
from facetrain_offline.stack import ACCOUNT, deploy

from support.testkit import FakeSageMaker

REGION = "us-east-1"
STACK_NAME = "facetrain"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/facetrain:test"
# Waits of 0 s, then at most 1 s: the loop runs as deployed, without the minutes.
TEST_PARAMETERS = {"TrainingImageUri": IMAGE, "PollIntervalSeconds": "0", "MaxPollIntervalSeconds": "1"}
# No botocore retries in the functions: throttling reaches the handlers' TransientError at once.
TEST_ENVIRONMENT = {"AWS_MAX_ATTEMPTS": "1"}


@dataclass
class WorkflowStack:
    """The deployed stack, its fake SageMaker, and clients of the local account."""

    local: LocalStack
    fake_sagemaker: FakeSageMaker
    s3: Any = field(init=False)
    sfn: Any = field(init=False)
    sagemaker: Any = field(init=False)

    def __post_init__(self) -> None:
        session = boto3.Session(region_name=self.local.region)
        self.s3, self.sfn, self.sagemaker = (session.client(n) for n in ("s3", "stepfunctions", "sagemaker"))

    @property
    def bucket(self) -> str:
        return self.local.physical(self.local.only("AWS::S3::Bucket"))

    @property
    def state_machine_arn(self) -> str:
        return self.local.physical(self.local.only("AWS::StepFunctions::StateMachine"))

    @property
    def lambdas(self) -> InProcessLambdas:
        return self.local.lambdas

    def run(self, execution_input: object, name: str, timeout: float = 60) -> dict[str, Any]:
        """Start an execution and wait for it to end; return DescribeExecution."""
        arn = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(execution_input)
        )["executionArn"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            description = self.sfn.describe_execution(executionArn=arn)
            if description["status"] in FINAL_STATUSES:
                return description
            time.sleep(0.05)
        raise TimeoutError(f"execution {name} still running after {timeout} s")

    def wait_for_invocations(self, logical_id: str, count: int = 1, timeout: float = 30) -> list[str | None]:
        """Wait until a function has been invoked `count` times; return the error types (None: success)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            errors = [error for name, error in self.lambdas.invocations if name == logical_id]
            if len(errors) >= count:
                return errors
            time.sleep(0.05)
        raise TimeoutError(f"{logical_id} was not invoked {count} time(s) within {timeout} s")

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        return self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]

    def notifications(self) -> list[dict[str, str]]:
        """Messages published to the notification topic since the last call: {"Subject", "Message"}."""
        return self.local.notifications()

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()


@contextmanager
def deployed_workflow(
    fake_sagemaker: FakeSageMaker,
    parameters: dict[str, str] | None = None,
    kind: type[WorkflowStack] = WorkflowStack,
    template: Path = DEFAULT_TEMPLATE,
) -> Iterator[WorkflowStack]:
    """template.yaml (or a variant of it) deployed into a fresh moto account (TEST_PARAMETERS unless
    other parameters are given), handlers and FakeSageMaker installed."""
    with local_aws(REGION):
        local = deploy(
            template,
            TEST_PARAMETERS if parameters is None else parameters,
            stack_name=STACK_NAME,
            region=REGION,
            extra_environment=TEST_ENVIRONMENT,
            short_waits=OFFLINE_SHORT_WAITS,  # waits of 0-1 s: the loop runs as deployed, without minutes
        )
        with local.lambdas.installed(), fake_sagemaker.installed(), ExecutionStatusEvents(local).running():
            yield kind(local, fake_sagemaker)
