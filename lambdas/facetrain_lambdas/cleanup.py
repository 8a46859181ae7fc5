"""cleanup: a CloudFormation custom resource that empties the data bucket when the stack is deleted.

Without it `sam delete` cannot remove the (versioned) data bucket. Create and Update do nothing. The
answers to CloudFormation are crhelper's: every request gets one, also on errors, and crhelper's timer
sends FAILED just before the Lambda's timeout, so the stack never waits an hour for an answer. A bucket
too large to empty in one invocation is not left to that timer: emptying stops TIME_MARGIN_SECONDS before
the timeout and the FAILED answer says how many objects went and what to do with the rest.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.parser.models import CloudFormationCustomResourceBaseModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from crhelper import CfnResource
from facetrain.contract.counting import counted

from .clients import client
from .observability import logger

BATCH = 1000  # DeleteObjects takes at most 1000 keys
TIME_MARGIN_SECONDS = 30.0  # stop emptying this long before the Lambda's timeout, to answer in time

# sleep_on_delete: crhelper waits (120 s by default) before answering a Delete so that CloudWatch Logs
# can take the last lines; Powertools writes its log lines synchronously, so there is nothing to wait for.
helper = CfnResource(json_logging=False, log_level="INFO", boto_level="ERROR", sleep_on_delete=0)


class NotEmptiedInTime(RuntimeError):
    """The bucket still holds objects when the invocation's time is up."""


def empty_bucket(s3: Any, bucket: str, deadline: float | None = None) -> int:
    """Delete every object version and delete marker; return how many were deleted. With a deadline
    (time.monotonic()), raise NotEmptiedInTime when it passes with objects left."""
    deleted = 0
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": BATCH}):
        versions = [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]
        targets = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]
        for start in range(0, len(targets), BATCH):
            if deadline is not None and time.monotonic() > deadline:
                raise NotEmptiedInTime(
                    f"s3://{bucket} was not emptied in time ({deleted} deleted); empty it with "
                    f"`aws s3api delete-objects` or a lifecycle rule, then delete the stack again"
                )
            chunk = targets[start : start + BATCH]
            response = s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise RuntimeError(
                    f"could not delete {counted(len(errors), 'object')}, "
                    f"e.g. {first['Key']}: {first['Message']}"
                )
            deleted += len(chunk)
    return deleted


def _bucket(event: dict[str, Any]) -> str:
    request = CloudFormationCustomResourceBaseModel.model_validate(event)
    properties = request.resource_properties if isinstance(request.resource_properties, dict) else {}
    return str(properties.get("BucketName", ""))


@helper.create
@helper.update
def keep(event: dict[str, Any], context: LambdaContext) -> str:
    """Nothing to create or change; the physical id names the bucket."""
    return str(event.get("PhysicalResourceId") or f"empty-on-delete-{_bucket(event)}")


@helper.delete
def empty(event: dict[str, Any], context: LambdaContext) -> str:
    """Empty the bucket before CloudFormation deletes it."""
    bucket = _bucket(event)
    if bucket:
        deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - TIME_MARGIN_SECONDS
        count = empty_bucket(client("s3"), bucket, deadline)
        logger.info("bucket emptied", extra={"bucket": bucket, "deleted": count})
    return str(event.get("PhysicalResourceId") or f"empty-on-delete-{bucket}")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    """Custom resource entry point; ResourceProperties.BucketName names the bucket."""
    helper(event, context)
