"""Backoff, the transition budget, and DescribeTrainingJob reduced for the Choice state."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from facetrain_lambdas.errors import TransientError
from facetrain_lambdas.poll import NO_REASON, PollEvent, describe, next_wait, transitions_for


def test_backoff_doubles_from_the_base_to_the_cap() -> None:
    waits, wait = [], None
    for _ in range(8):
        wait = next_wait(wait, 30, 900)
        waits.append(wait)
    assert waits == [30, 60, 120, 240, 480, 900, 900, 900]


def test_zero_base_and_small_cap_for_tests() -> None:
    assert [next_wait(None, 0, 1), next_wait(0, 0, 1), next_wait(1, 0, 1)] == [0, 0, 1]


@pytest.mark.parametrize(("seconds", "expected"), [(30, 11), (3600, 29), (600, 20)])
def test_transitions_of_a_successful_run(seconds: int, expected: int) -> None:
    assert transitions_for(seconds, base=60, cap=900) == expected


class _SageMaker:
    def __init__(self, response: dict | Exception) -> None:
        self.response = response

    def describe_training_job(self, TrainingJobName: str) -> dict:
        if isinstance(self.response, Exception):
            raise self.response
        return self.response


EVENT = PollEvent(
    execution="e",
    training_job_name="facetrain-r1",
    previous_wait_seconds=60,
    poll_interval_seconds=30,
    max_poll_interval_seconds=900,
)


def test_failed_job_carries_its_reason() -> None:
    result = describe(
        _SageMaker(
            {"TrainingJobStatus": "Failed", "SecondaryStatus": "Failed", "FailureReason": "AlgorithmError: x"}
        ),
        EVENT,
    )
    assert (result.status, result.failure_reason, result.wait_seconds) == ("Failed", "AlgorithmError: x", 120)


def test_completed_job() -> None:
    result = describe(
        _SageMaker(
            {
                "TrainingJobStatus": "Completed",
                "SecondaryStatus": "Completed",
                "BillableTimeInSeconds": 321,
                "ModelArtifacts": {"S3ModelArtifacts": "s3://b/k/model.tar.gz"},
            }
        ),
        EVENT,
    )
    assert (result.billable_seconds, result.model_artifacts, result.failure_reason) == (
        321,
        "s3://b/k/model.tar.gz",
        NO_REASON,
    )


def test_throttling_is_transient_and_validation_is_not() -> None:
    throttled = ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "Describe"
    )
    with pytest.raises(TransientError):
        describe(_SageMaker(throttled), EVENT)
    missing = ClientError({"Error": {"Code": "ValidationException", "Message": "Could not find"}}, "Describe")
    with pytest.raises(ClientError):
        describe(_SageMaker(missing), EVENT)
