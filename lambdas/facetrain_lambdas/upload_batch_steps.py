"""batch: the upload-batch steps of the state machine — wait for uploads to settle, then release or hand
over the bucket when the run is done (see upload_batch)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from .clients import client
from .errors import transient_aws_errors
from .function_settings import FunctionSettings
from .observability import CORRELATION_ID_PATH, logger, tracer
from .upload_batch import UploadBatch, UploadStateStore, check_settled, finish_batch


class CheckEvent(BaseModel):
    """Are the uploads settled? (the state machine's CheckUploadsSettled step)"""

    action: Literal["check"]
    execution: str


class FinishEvent(BaseModel):
    """The run is over: release the bucket or start the one follow-up execution."""

    action: Literal["finish"]
    execution: str
    state_machine_arn: str
    generation: int = Field(ge=0)


class BatchEvent(BaseModel):
    request: Annotated[CheckEvent | FinishEvent, Field(discriminator="action")]


class UploadBatchSettings(FunctionSettings):
    """Environment of the upload-batch function (template.yaml)."""

    table: str = Field(validation_alias="UPLOAD_STATE_TABLE")
    bucket: str = Field(validation_alias="DATA_BUCKET")
    settle_seconds: int = Field(ge=0, validation_alias="UPLOAD_SETTLE_SECONDS")


# The environment this handler reads (template test: every function gets each required variable).
SETTINGS: tuple[type[FunctionSettings], ...] = (UploadBatchSettings,)


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point (environment: UploadBatchSettings)."""
    request = parse(event={"request": event}, model=BatchEvent).request
    settings = UploadBatchSettings.from_env()
    store = UploadStateStore(client("dynamodb"), settings.table, settings.bucket)
    if isinstance(request, CheckEvent):
        with transient_aws_errors("reading the upload state"):
            check = check_settled(store, settings.settle_seconds)
        logger.info("uploads settled?", extra={"settled": check.settled, "generation": check.generation})
        return UploadBatch(
            generation=check.generation, settled=check.settled, wait_seconds=check.wait_seconds
        ).model_dump()
    with transient_aws_errors("releasing the upload batch"):
        outcome = finish_batch(
            store, client("stepfunctions"), request.state_machine_arn, request.execution, request.generation
        )
    logger.info("upload batch finished", extra={"released": outcome.released, "follow_up": outcome.follow_up})
    return {"released": outcome.released, "follow_up": outcome.follow_up}
