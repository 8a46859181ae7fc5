"""trigger: S3 upload events (EventBridge → SQS, batched) → at most one retraining per settled batch.

Each SQS record holds one EventBridge "Object Created"/"Object Deleted" event from the data bucket. A
record that is not such an event is reported as a batch item failure (SQS retries it, then the dead-letter
queue keeps it); the others are counted once each (see upload_batch) and start an execution when needed.
Several batches may run at once: their writes to the bucket's counter retry transaction conflicts.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from .clients import client
from .errors import transient_aws_errors
from .function_settings import FunctionSettings
from .observability import logger, metrics, tracer
from .upload_batch import UploadStateStore, handle_changes


class TriggerSettings(FunctionSettings):
    """Environment of the trigger function (template.yaml)."""

    table: str = Field(validation_alias="UPLOAD_STATE_TABLE")
    state_machine_arn: str = Field(validation_alias="STATE_MACHINE_ARN")
    bucket: str = Field(validation_alias="DATA_BUCKET")


def event_id_of(record: SQSRecord, bucket: str) -> str:
    """The EventBridge event id of a record, after checking it is an S3 event from our bucket."""
    event = S3EventNotificationEventBridgeModel.model_validate(json.loads(record.body))
    if event.detail.bucket.name != bucket:
        raise ValueError(f"event {event.id} is from bucket {event.detail.bucket.name}, not {bucket}")
    return event.id


# The environment this handler reads (template test: every function gets each required variable).
SETTINGS: tuple[type[FunctionSettings], ...] = (TriggerSettings,)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """SQS batch of upload events: count them, start an execution when none owns the bucket."""
    settings = TriggerSettings.from_env()
    event_ids: list[str] = []
    processor = BatchProcessor(event_type=EventType.SQS)
    response = process_partial_response(
        event=event,
        record_handler=lambda record: event_ids.append(event_id_of(record, settings.bucket)),
        processor=processor,
        context=context,
    )
    store = UploadStateStore(client("dynamodb"), settings.table, settings.bucket)
    with transient_aws_errors("recording upload events"):
        outcome = handle_changes(store, client("stepfunctions"), settings.state_machine_arn, event_ids)
    metrics.add_metric(name="UploadEvents", unit=MetricUnit.Count, value=outcome.new_events)
    metrics.add_metric(name="DuplicateUploadEvents", unit=MetricUnit.Count, value=outcome.duplicates)
    metrics.add_metric(name="UploadTransactionConflicts", unit=MetricUnit.Count, value=store.conflicts)
    logger.info(
        "upload events recorded",
        extra={
            "new": outcome.new_events,
            "duplicates": outcome.duplicates,
            "generation": outcome.generation,
            "started": outcome.started,
            "owner": outcome.owner,
            "conflicts_retried": store.conflicts,
        },
    )
    return response
