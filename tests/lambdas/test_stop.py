"""stop: the job of an ended execution is found as the workflow found it, stopped only while it runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from facetrain_lambdas.run_request import StackDefaults
from facetrain_lambdas.s3_json import write_json
from facetrain_lambdas.stop import ExecutionEnded, StopOutcome, notification, stop_job_of
from handler_fixtures import BUCKET, run_record

DEFAULTS = StackDefaults(bucket=BUCKET)


class Jobs:
    """A SageMaker client with one job (or none) and a record of stop requests."""

    def __init__(self, status: str | None, stop_error: str | None = None) -> None:
        self.status, self.stop_error = status, stop_error
        self.stopped: list[str] = []

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:
        if self.status is None:
            raise ClientError({"Error": {"Code": "ValidationException"}}, "DescribeTrainingJob")
        return {"TrainingJobName": TrainingJobName, "TrainingJobStatus": self.status}

    def stop_training_job(self, TrainingJobName: str) -> None:
        if self.stop_error:
            raise ClientError({"Error": {"Code": self.stop_error, "Message": "in status Completed"}}, "Stop")
        self.stopped.append(TrainingJobName)


def _ended(status: str = "ABORTED", name: str = "r1", given: dict[str, Any] | None = None) -> ExecutionEnded:
    return ExecutionEnded.model_validate(
        {
            "executionArn": f"arn:aws:states:us-east-1:123456789012:execution:facetrain-retraining:{name}",
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:facetrain-retraining",
            "name": name,
            "status": status,
            "input": json.dumps(given or {}),
        }
    )


def _store(s3: Any, **changes: object) -> None:
    record = run_record(**changes)
    write_json(s3, BUCKET, record.layout.run_record_key, record.model_dump())


def test_a_running_job_is_stopped(s3) -> None:
    _store(s3)
    jobs = Jobs("InProgress")
    outcome = stop_job_of(s3, jobs, _ended(), DEFAULTS)
    assert jobs.stopped == ["facetrain-r1"]
    assert outcome.stopped and outcome.job_status == "InProgress" and outcome.run_id == "r1"


def test_the_run_id_of_the_input_names_the_job(s3) -> None:
    _store(s3, run_id="weekly-7", execution="console-abc")
    jobs = Jobs("InProgress")
    stop_job_of(s3, jobs, _ended(name="console-abc", given={"run_id": "weekly-7"}), DEFAULTS)
    assert jobs.stopped == ["facetrain-weekly-7"]


@pytest.mark.parametrize("status", ["Completed", "Failed", "Stopped", "Stopping"])
def test_a_job_that_is_not_running_is_left_alone(s3, status: str) -> None:
    _store(s3)
    jobs = Jobs(status)
    outcome = stop_job_of(s3, jobs, _ended("FAILED"), DEFAULTS)
    assert jobs.stopped == [] and not outcome.stopped and outcome.job_status == status
    assert "left alone" in outcome.reason


def test_a_job_that_ends_before_the_stop_request_is_left_alone(s3) -> None:
    _store(s3)
    outcome = stop_job_of(s3, Jobs("InProgress", stop_error="ValidationException"), _ended(), DEFAULTS)
    assert not outcome.stopped and "had ended" in outcome.reason
    with pytest.raises(ClientError):  # anything else is an error the event's retries deal with
        stop_job_of(s3, Jobs("InProgress", stop_error="AccessDeniedException"), _ended(), DEFAULTS)


def test_no_record_no_job_or_a_refused_input_stop_nothing(s3) -> None:
    jobs = Jobs("InProgress")
    assert "validation did not finish" in stop_job_of(s3, jobs, _ended(), DEFAULTS).reason
    refused = _ended(given={"no_such_field": 1})
    assert "refused by validation" in stop_job_of(s3, jobs, refused, DEFAULTS).reason
    _store(s3)
    assert "no training job" in stop_job_of(s3, Jobs(None), _ended(), DEFAULTS).reason
    assert jobs.stopped == []


def test_the_job_of_a_run_another_execution_owns_is_not_stopped(s3) -> None:
    _store(s3, execution="the-first-one")
    jobs = Jobs("InProgress")
    outcome = stop_job_of(s3, jobs, _ended(name="r1"), DEFAULTS)
    assert jobs.stopped == [] and "belongs to execution the-first-one" in outcome.reason


def _outcome(status: str, stopped: bool) -> StopOutcome:
    return StopOutcome(
        execution="r1",
        status=status,
        run_id="r1",
        training_job_name="facetrain-r1",
        job_status="InProgress" if stopped else "Completed",
        stopped=stopped,
        reason="stop requested" if stopped else "the job is Completed: left alone",
    )


def test_aborted_and_timed_out_runs_are_always_notified_failed_ones_only_when_a_job_was_stopped() -> None:
    aborted = notification(_outcome("ABORTED", stopped=True))
    assert aborted and "was stopped (ABORTED)" in aborted and "facetrain-r1" in aborted
    assert "Nothing was published" in aborted
    timed_out = notification(_outcome("TIMED_OUT", stopped=False))
    assert timed_out and "timed out" in timed_out and "left alone" in timed_out
    failed = notification(_outcome("FAILED", stopped=True))
    assert failed and "has been stopped" in failed
    assert notification(_outcome("FAILED", stopped=False)) is None  # the state machine has notified
