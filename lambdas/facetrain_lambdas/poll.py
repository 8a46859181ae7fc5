"""poll: describe the training job and choose the next wait (exponential backoff with a cap)."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from .clients import client
from .errors import transient_aws_errors
from .observability import CORRELATION_ID_PATH, logger, metrics, tracer

NO_REASON = "SageMaker gave no FailureReason"
# States of a wait/poll loop iteration (Wait, Poll, Choice) and of the rest of a successful console run
# (RouteTrigger, Validate, AnythingToTrain, Start, Publish, AfterPublish, RunEnded, NotifySuccess): see
# state_machine/retraining.asl.json.
LOOP_TRANSITIONS = 3
OTHER_TRANSITIONS = 8


class PollEvent(BaseModel):
    """Payload from the state machine; the intervals come from DefinitionSubstitutions."""

    execution: str
    training_job_name: str
    previous_wait_seconds: int | None = Field(None, ge=0)
    poll_interval_seconds: int = Field(ge=0)
    max_poll_interval_seconds: int = Field(ge=0)


class PollResult(BaseModel):
    """What the Choice state and the later states need to know about the job."""

    training_job_name: str
    status: Literal["InProgress", "Completed", "Failed", "Stopping", "Stopped"]
    secondary_status: str
    failure_reason: str
    billable_seconds: int
    model_artifacts: str
    wait_seconds: int


def next_wait(previous: int | None, base: int, cap: int) -> int:
    """base the first time, then double the previous wait, never above cap."""
    if previous is None:
        return min(base, cap)
    return min(max(previous * 2, base), cap)


def transitions_for(job_seconds: int, base: int, cap: int) -> int:
    """State transitions of a successful run whose job takes job_seconds (first poll after base)."""
    waited, wait, polls = 0, next_wait(None, base, cap), 0
    while True:
        waited += wait
        polls += 1
        if waited >= job_seconds:
            return OTHER_TRANSITIONS + LOOP_TRANSITIONS * polls
        wait = next_wait(wait, base, cap)


def describe(sagemaker: Any, event: PollEvent) -> PollResult:
    """DescribeTrainingJob, reduced to the small result the state machine keeps."""
    with transient_aws_errors(f"describing training job {event.training_job_name}"):
        job = sagemaker.describe_training_job(TrainingJobName=event.training_job_name)
    return PollResult(
        training_job_name=event.training_job_name,
        status=job["TrainingJobStatus"],
        secondary_status=job.get("SecondaryStatus", ""),
        failure_reason=job.get("FailureReason") or NO_REASON,
        billable_seconds=int(job.get("BillableTimeInSeconds") or 0),
        model_artifacts=job.get("ModelArtifacts", {}).get("S3ModelArtifacts", ""),
        wait_seconds=next_wait(
            event.previous_wait_seconds, event.poll_interval_seconds, event.max_poll_interval_seconds
        ),
    )


def log_status(result: PollResult) -> None:
    """Log the job's status; a job that did not complete at WARNING, its FailureReason only at DEBUG: the
    reason may name a photo or a person (facetrain.train), and the execution's failure carries it."""
    job = {"job": result.training_job_name, "status": result.status, "secondary": result.secondary_status}
    logger.info("training job status", extra=job)
    if result.status in ("Failed", "Stopped"):
        logger.warning("training job did not complete: its FailureReason is in the notification", extra=job)
        logger.debug("training job failure reason", extra={"reason": result.failure_reason})


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point (no environment of its own)."""
    payload = parse(event=event, model=PollEvent)
    result = describe(client("sagemaker"), payload)
    metrics.add_metric(name="TrainingJobPolls", unit=MetricUnit.Count, value=1)
    log_status(result)
    if result.status in ("Failed", "Stopped"):
        metrics.add_metric(name="TrainingJobsFailed", unit=MetricUnit.Count, value=1)
    return result.model_dump()
