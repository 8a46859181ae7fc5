"""JSON documents in S3: read, read if present, write. AWS errors that go away by themselves become
TransientError (the state machine retries them); a missing object is None only where asked for."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from .errors import transient_aws_errors

MISSING_OBJECT_CODES = ("NoSuchKey", "404")


def read_json(s3: Any, bucket: str, key: str) -> Any:
    """Load a JSON document from S3 (ValueError when it is not JSON)."""
    with transient_aws_errors(f"reading s3://{bucket}/{key}"):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return json.loads(body)


def read_json_if_present(s3: Any, bucket: str, key: str) -> Any | None:
    """read_json, or None when there is no such object; any other S3 error (access, throttling) is raised,
    never mistaken for "not there"."""
    try:
        return read_json(s3, bucket, key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in MISSING_OBJECT_CODES:
            return None
        raise


def write_json(s3: Any, bucket: str, key: str, data: object) -> None:
    """Store a JSON document in S3."""
    with transient_aws_errors(f"writing s3://{bucket}/{key}"):
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(data, indent=1, ensure_ascii=False).encode(),
            ContentType="application/json",
        )
