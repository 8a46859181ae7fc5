"""stop: the job of an ended execution is found as the workflow found it, stopped only while it runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from facetrain_lambdas.run_request import StackDefaults
from facetrain_lambdas.s3_json import write_json
from facetrain_lambdas.stop import ExecutionEnded, StopOutcome, notification, stop_job_of
from handler_fixtures import BUCKET, latest_document, run_record

DEFAULTS = StackDefaults(bucket=BUCKET)


class Jobs:
    """A SageMaker client with one job (or none) and a record of stop requests (in `calls` too, when
    given, to see their order among other calls)."""

    def __init__(self, status: str | None, stop_error: str | None = None, calls: list[str] | None = None):
        self.status, self.stop_error = status, stop_error
        self.stopped: list[str] = []
        self.calls = calls if calls is not None else []

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:
        if self.status is None:
            raise ClientError({"Error": {"Code": "ValidationException"}}, "DescribeTrainingJob")
        return {"TrainingJobName": TrainingJobName, "TrainingJobStatus": self.status}

    def stop_training_job(self, TrainingJobName: str) -> None:
        if self.stop_error:
            raise ClientError({"Error": {"Code": self.stop_error, "Message": "in status Completed"}}, "Stop")
        self.stopped.append(TrainingJobName)
        self.calls.append("StopTrainingJob")


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


@pytest.mark.parametrize(
    ("published_run", "published"), [("r1", True), ("r0", False), (None, False), ("foreign", False)]
)
def test_a_stopped_run_that_published_all_the_same_is_said_to_have(s3, published_run, published) -> None:
    """StopExecution does not cancel the Publish Lambda under way: latest.json says whether it finished."""
    _store(s3)
    if published_run == "foreign":
        write_json(s3, BUCKET, "results/latest.json", {"format": "someone.else", "version": 9})
    elif published_run:
        write_json(s3, BUCKET, "results/latest.json", latest_document(run_id=published_run, execution="r1"))
    outcome = stop_job_of(s3, Jobs("Completed"), _ended(), DEFAULTS)
    assert outcome.published is published
    message = notification(outcome)
    assert message and ("run r1 is current" in message) is published
    assert ("Nothing was published" in message) is not published
    # A Completed job means Publish may have been under way: "not yet" is all that can be said.
    assert ("unless it had checked a moment before the stop took effect" in message) is not published


# How reading latest.json can fail: (error code, HTTP status).
READ_FAILURES = [
    ("AccessDenied", 403),
    ("SlowDown", 503),
    ("InternalError", 500),
    ("KMS.DisabledException", 400),
]


@pytest.mark.parametrize(("code", "http_status"), READ_FAILURES, ids=[c for c, _ in READ_FAILURES])
def test_latest_json_is_read_after_the_stop_request_and_a_failing_read_stops_the_job_all_the_same(
    s3, code: str, http_status: int
) -> None:
    """Publish's status may change until the stop takes effect, so latest.json is read after the stop
    request; an S3 error there neither keeps the job running nor the notification from going out."""
    _store(s3)
    calls: list[str] = []

    def failing_read(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key", "").endswith("latest.json"):
            calls.append("GetObject latest.json")
            error = {
                "Error": {"Code": code, "Message": "no"},
                "ResponseMetadata": {"HTTPStatusCode": http_status},
            }
            raise ClientError(error, "GetObject")  # type: ignore[arg-type]

    s3.meta.events.register("before-parameter-build.s3.GetObject", failing_read)
    jobs = Jobs("InProgress", calls=calls)
    outcome = stop_job_of(s3, jobs, _ended(), DEFAULTS)

    assert calls == ["StopTrainingJob", "GetObject latest.json"]
    assert jobs.stopped == ["facetrain-r1"] and outcome.stopped and outcome.published is None
    message = notification(outcome)
    assert message and "it has been stopped" in message
    assert "Whether run r1 published is unknown: latest.json could not be read" in message
    assert "Nothing was published" not in message and "is current" not in message


@pytest.mark.parametrize("job", ["InProgress", "Completed", None])
def test_latest_json_is_read_after_the_job_is_dealt_with_whatever_its_status(s3, job: str | None) -> None:
    _store(s3)
    calls: list[str] = []
    s3.meta.events.register(
        "before-parameter-build.s3.GetObject",
        lambda params, **_: calls.append(f"GetObject {params['Key'].rsplit('/', 1)[-1]}"),
    )
    jobs = Jobs(job, calls=calls)
    jobs_describe = jobs.describe_training_job

    def describe(TrainingJobName: str) -> dict[str, Any]:
        calls.append("DescribeTrainingJob")
        return jobs_describe(TrainingJobName)

    jobs.describe_training_job = describe  # type: ignore[method-assign]
    stop_job_of(s3, jobs, _ended(), DEFAULTS)
    stop = ["StopTrainingJob"] if job == "InProgress" else []
    assert calls == ["GetObject run.json", "DescribeTrainingJob", *stop, "GetObject latest.json"]


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
