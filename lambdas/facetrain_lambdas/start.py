"""start: create the run's SageMaker training job (idempotent under retries)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from .clients import client
from .function_settings import FunctionSettings
from .observability import CORRELATION_ID_PATH, logger, metrics, tracer
from .run_record import RunPointer, load_run_record
from .training_job import TrainingSettings, start_training_job, training_job_request


class StartEvent(BaseModel):
    """Payload from the state machine."""

    execution: str
    run: RunPointer
    poll_interval_seconds: int = Field(ge=0)


class StartResult(BaseModel):
    """The job to poll and how long to wait before the first poll."""

    training_job_name: str
    created: bool
    wait_seconds: int


@tracer.capture_method
def start_run(s3: Any, sagemaker: Any, event: StartEvent, training: TrainingSettings) -> StartResult:
    """Read the run record and start its training job."""
    record = load_run_record(s3, event.run)
    request = training_job_request(record, training)
    created = start_training_job(sagemaker, request)
    name = request["TrainingJobName"]
    logger.info("training job started" if created else "training job already existed", extra={"job": name})
    if created:
        metrics.add_metric(name="TrainingJobsStarted", unit=MetricUnit.Count, value=1)
    return StartResult(training_job_name=name, created=created, wait_seconds=event.poll_interval_seconds)


# The environment this handler reads (template test: every function gets each required variable).
SETTINGS: tuple[type[FunctionSettings], ...] = (TrainingSettings,)


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point (environment: see TrainingSettings.from_env)."""
    payload = parse(event=event, model=StartEvent)
    logger.append_keys(run_id=payload.run.run_id)
    return start_run(client("s3"), client("sagemaker"), payload, TrainingSettings.from_env()).model_dump()
