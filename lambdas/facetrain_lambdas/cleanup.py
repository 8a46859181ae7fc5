"""cleanup: a CloudFormation custom resource that empties the data bucket when the stack is deleted.

Without it `sam delete` cannot remove the (versioned) data bucket. Create and Update do nothing. Every
request is answered, also on errors, so the stack never waits for CloudFormation's one-hour timeout.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import CloudFormationCustomResourceBaseModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from .clients import client
from .observability import logger

BATCH = 1000  # DeleteObjects takes at most 1000 keys


def empty_bucket(s3: Any, bucket: str) -> int:
    """Delete every object version and delete marker; return how many were deleted."""
    deleted = 0
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": BATCH}):
        versions = [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]
        targets = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]
        for start in range(0, len(targets), BATCH):
            chunk = targets[start : start + BATCH]
            response = s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise RuntimeError(
                    f"could not delete {len(errors)} object(s), e.g. {first['Key']}: {first['Message']}"
                )
            deleted += len(chunk)
    return deleted


def respond(event: CloudFormationCustomResourceBaseModel, status: str, reason: str, physical_id: str) -> None:
    """PUT the result to CloudFormation's pre-signed response URL."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:3000],
            "PhysicalResourceId": physical_id,
            "StackId": event.stack_id,
            "RequestId": event.request_id,
            "LogicalResourceId": event.logical_resource_id,
        }
    ).encode()
    url = str(event.response_url)
    if not url.startswith("https://"):
        raise ValueError(f"refusing to answer CloudFormation at a non-https URL: {url}")
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - https only, checked above
        response.read()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    """Custom resource entry point; ResourceProperties.BucketName names the bucket."""
    request = parse(event=event, model=CloudFormationCustomResourceBaseModel)
    properties = request.resource_properties if isinstance(request.resource_properties, dict) else {}
    bucket = str(properties.get("BucketName", ""))
    physical_id = str(event.get("PhysicalResourceId") or f"empty-on-delete-{bucket}")
    try:
        if request.request_type == "Delete" and bucket:
            count = empty_bucket(client("s3"), bucket)
            logger.info("bucket emptied", extra={"bucket": bucket, "deleted": count})
        respond(request, "SUCCESS", "ok", physical_id)
    except Exception as exc:
        logger.exception("custom resource failed")
        respond(request, "FAILED", f"{type(exc).__name__}: {exc}", physical_id)
