"""stop: an execution that ended ABORTED, TIMED_OUT or FAILED stops the training job its run started.

Without `.sync` integrations nothing else would: an aborted or timed-out execution leaves its job running
(and billing) up to MaxRuntimeInSeconds. Step Functions sends an "Execution Status Change" event to
EventBridge when an execution ends; the template's rule hands those of this state machine to this
function, which works out the job as the workflow itself did:

1. The run: the execution input, resolved as validate resolves it (run id, bucket, results prefix).
   An input validate refuses never had a run, so it never had a job.
2. The run record `runs/<run_id>/run.json`: absent, validation never passed (no job); written by
   another execution (the run id was taken), not this execution's job; unreadable (another format or
   version), its owner is unknown: the job is left alone and the notification says why.
3. The job `job_name(run_id)`: absent, never started; InProgress, StopTrainingJob (SageMaker sends the
   container SIGTERM, then SIGKILL after its grace period; the status goes Stopping → Stopped); any other
   status (Stopping, Stopped, Completed, Failed), left alone.
4. Published or not: latest.json, read after the stop request (a failing read must not keep a running
   job from being stopped). A Lambda invocation under way is not cancelled by StopExecution; Publish asks
   for its execution's status before it changes the current results and publishes nothing once the
   execution has stopped, but one that asked a moment before the stop took effect finishes.
5. The notification: an aborted or timed-out execution ends without the state machine's own failure
   notification, so one is sent here, always; a FAILED execution has sent one, so a second only says that
   its still-running job was stopped.

Redelivered events are harmless: a job already Stopping is left alone.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from facetrain.contract.documents import DocumentError
from pydantic import BaseModel, ConfigDict, Field

from .clients import client
from .errors import InvalidInput, TransientError, transient_aws_errors
from .function_settings import FunctionSettings
from .layout import RunLayout
from .observability import logger, metrics, tracer
from .published import read_published
from .run_record import read_run_record_if_present
from .run_request import StackDefaults, resolve_request
from .training_job import describe_job, job_name

EndedStatus = Literal["ABORTED", "TIMED_OUT", "FAILED"]
NOTIFICATION_SUBJECT = "facetrain retraining failed"


class ExecutionEnded(BaseModel):
    """The `detail` of a Step Functions "Execution Status Change" event (the fields used here)."""

    model_config = ConfigDict(populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str = Field(alias="stateMachineArn")
    name: str
    status: EndedStatus
    input: str | None = None  # left out of the event when over EventBridge's size limit


class StopOutcome(BaseModel):
    """What was found and done for one ended execution."""

    execution: str
    status: EndedStatus
    run_id: str | None = None
    training_job_name: str | None = None
    job_status: str | None = None  # before the stop request, when a job was found
    stopped: bool = False
    # The run's results are the current ones (its Publish ran before the stop took effect); None when
    # latest.json could not be read.
    published: bool | None = False
    reason: str


def stop_job_of(s3: Any, sagemaker: Any, ended: ExecutionEnded, defaults: StackDefaults) -> StopOutcome:
    """Find the training job of an ended execution's run, stop it if it still runs, then say whether the
    run published (steps 1-4)."""
    outcome = {"execution": ended.name, "status": ended.status}
    try:
        raw = json.loads(ended.input or "{}")
        request = resolve_request(raw, ended.name, defaults)
    except (ValueError, InvalidInput):
        return StopOutcome(**outcome, reason="the input was refused by validation: no run, no training job")
    layout = RunLayout(bucket=request.bucket, results_prefix=request.results_prefix, run_id=request.run_id)
    try:
        record = read_run_record_if_present(s3, layout)
    except DocumentError as exc:
        return StopOutcome(**outcome, run_id=request.run_id, reason=f"{exc}; its job, if any, is left alone")
    if record is None:
        return StopOutcome(**outcome, run_id=request.run_id, reason="validation did not finish: no job")
    if record.request.execution != ended.name:
        return StopOutcome(
            **outcome,
            run_id=request.run_id,
            reason=f"run {request.run_id} belongs to execution {record.request.execution}: "
            "its job is not this one's",
        )
    name = job_name(record.request.run_id)
    job = _stop_if_running(sagemaker, name)
    # Step 4 after the stop request: an S3 error here must neither keep a running job from being stopped
    # nor the notification from going out (it says the answer is unknown).
    published = _is_published(s3, layout)
    return StopOutcome(
        **outcome, run_id=record.request.run_id, training_job_name=name, published=published, **job
    )


def _stop_if_running(sagemaker: Any, name: str) -> dict[str, Any]:
    """Step 3: StopTrainingJob when the job is InProgress; the outcome's job fields (job_status, stopped,
    reason)."""
    description = describe_job(sagemaker, name)
    if description is None:
        return {"reason": "no training job was started"}
    job_status = str(description.get("TrainingJobStatus"))
    if job_status != "InProgress":
        return {"job_status": job_status, "reason": f"the job is {job_status}: left alone"}
    try:
        with transient_aws_errors(f"stopping training job {name}"):
            sagemaker.stop_training_job(TrainingJobName=name)
    except ClientError as error:  # it ended between the describe and the stop request
        if error.response.get("Error", {}).get("Code") != "ValidationException":
            raise
        return {"job_status": job_status, "reason": f"the job had ended: {error}"}
    return {"job_status": job_status, "stopped": True, "reason": "stop requested"}


def _is_published(s3: Any, layout: RunLayout) -> bool | None:
    """True when latest.json names this run: a Lambda invocation under way runs to its end whatever
    StopExecution says, so an execution stopped while Publish ran may have published all the same. None
    when latest.json cannot be read (access, throttling): unknown, never "nothing published"."""
    try:
        published = read_published(s3, layout)
    except InvalidInput:  # another format: not written by this stack's publish
        return False
    except (ClientError, TransientError) as error:
        logger.warning("latest.json could not be read", extra={"key": layout.latest_key, "error": str(error)})
        return None
    return published is not None and published.run_id == layout.run_id


def notification(outcome: StopOutcome) -> str | None:
    """The failure notification's message for an outcome (step 4), or None when none is due."""
    job = (
        f"Its training job {outcome.training_job_name} was {outcome.job_status}: it has been stopped "
        "(SageMaker sends SIGTERM, and SIGKILL after its grace period)."
        if outcome.stopped
        else f"Training job: {outcome.training_job_name or 'none'} ({outcome.reason})."
    )
    nothing = _published_line(outcome)
    if outcome.status == "ABORTED":
        return f"facetrain execution {outcome.execution} was stopped (ABORTED). {job} {nothing}"
    if outcome.status == "TIMED_OUT":
        return (
            f"facetrain execution {outcome.execution} timed out (TIMED_OUT) and was stopped. {job} {nothing}"
        )
    if outcome.stopped:
        return f"facetrain execution {outcome.execution} failed (FAILED). {job}"
    return None


def _published_line(outcome: StopOutcome) -> str:
    """Whether the run published, as latest.json said after the stop request. Only a Completed job reaches
    Publish, and a Publish that saw the execution RUNNING just before the stop took effect finishes: for
    such a run "not yet" is all that can be said."""
    if outcome.published:
        return f"Its results had been published before the stop took effect: run {outcome.run_id} is current."
    if outcome.published is None:
        return (
            f"Whether run {outcome.run_id} published is unknown: latest.json could not be read; check which "
            "run it names."
        )
    if outcome.job_status != "Completed":
        return "Nothing was published; the current results are unchanged."
    return (
        f"Nothing was published when this was checked (latest.json does not name run {outcome.run_id}): "
        "Publish changes nothing once it sees the execution stopped, unless it had checked a moment before "
        f"the stop took effect, in which case latest.json names run {outcome.run_id} shortly."
    )


class NotificationSettings(FunctionSettings):
    """Where the stop function tells operators (template.yaml)."""

    topic_arn: str = Field(validation_alias="NOTIFICATION_TOPIC_ARN")


# The environment this handler reads (template test: every function gets each required variable).
SETTINGS: tuple[type[FunctionSettings], ...] = (StackDefaults, NotificationSettings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """EventBridge entry point (environment: StackDefaults and NotificationSettings)."""
    defaults, notify = StackDefaults.from_env(), NotificationSettings.from_env()
    envelope = parse(event=event, model=EventBridgeModel)
    ended = ExecutionEnded.model_validate(envelope.detail)
    logger.append_keys(execution=ended.name)
    if ended.input is None:  # too large for the event: ask Step Functions
        with transient_aws_errors(f"describing execution {ended.execution_arn}"):
            ended.input = client("stepfunctions").describe_execution(executionArn=ended.execution_arn)[
                "input"
            ]
    outcome = stop_job_of(client("s3"), client("sagemaker"), ended, defaults)
    logger.info("execution ended", extra=outcome.model_dump())
    if outcome.stopped:
        metrics.add_metric(name="TrainingJobsStopped", unit=MetricUnit.Count, value=1)
    message = notification(outcome)
    if message:
        with transient_aws_errors("publishing the notification"):
            client("sns").publish(TopicArn=notify.topic_arn, Subject=NOTIFICATION_SUBJECT, Message=message)
    return outcome.model_dump()
