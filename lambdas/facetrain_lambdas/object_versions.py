"""Every version of the objects under a prefix of the (versioned) data bucket: list, read, delete.

The data bucket keeps each overwritten or deleted object as a noncurrent version, so erasing something
(issue: forget a person) or sweeping old runs means deleting versions by id, not keys: DeleteObject
without a VersionId only hides an object behind a delete marker. Deleting a version by id is permanent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from facetrain.contract.counting import counted

from .errors import transient_aws_errors

DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


@dataclass(frozen=True)
class ObjectVersion:
    """One version (or delete marker) of one key."""

    key: str
    version_id: str
    is_latest: bool
    is_delete_marker: bool
    last_modified: datetime
    size: int = 0


class VersionsNotDeleted(RuntimeError):
    """S3 refused to delete some versions; the message names one of them and S3's reason."""


def list_versions(s3: Any, bucket: str, prefix: str, what: str | None = None) -> Iterator[ObjectVersion]:
    """Every version and delete marker of every key under `prefix` (S3's order: by key, newest first).
    `what` names the prefix in error messages instead of its URI (a person's photo folder names them)."""
    paginator = s3.get_paginator("list_object_versions")
    with transient_aws_errors(f"listing the versions of {what or f's3://{bucket}/{prefix}'}"):
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            entries = [(v, False) for v in page.get("Versions", ())]
            entries += [(m, True) for m in page.get("DeleteMarkers", ())]
            entries.sort(key=lambda e: (e[0]["Key"], -e[0]["LastModified"].timestamp()))
            for entry, is_marker in entries:
                yield ObjectVersion(
                    key=entry["Key"],
                    version_id=entry["VersionId"],
                    is_latest=bool(entry.get("IsLatest")),
                    is_delete_marker=is_marker,
                    last_modified=entry["LastModified"],
                    size=int(entry.get("Size", 0)),
                )


def read_version(s3: Any, bucket: str, version: ObjectVersion) -> bytes:
    """The bytes of one version (not a delete marker)."""
    with transient_aws_errors(f"reading s3://{bucket}/{version.key} version {version.version_id}"):
        response = s3.get_object(Bucket=bucket, Key=version.key, VersionId=version.version_id)
        return bytes(response["Body"].read())


def delete_versions(s3: Any, bucket: str, versions: Iterable[ObjectVersion], what: str | None = None) -> int:
    """Delete these versions for good (DeleteObjects by VersionId, DELETE_BATCH at a time); how many.
    Raises VersionsNotDeleted when S3 refuses any (what went before stays deleted: a retry finishes),
    naming one refused key, or only `what` when given (a photo's key names its person)."""
    targets = [{"Key": v.key, "VersionId": v.version_id} for v in versions]
    for start in range(0, len(targets), DELETE_BATCH):
        chunk = targets[start : start + DELETE_BATCH]
        with transient_aws_errors(f"deleting {counted(len(chunk), 'object version')} in s3://{bucket}"):
            response = s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            example = what or f"e.g. {first.get('Key')} version {first.get('VersionId')}"
            raise VersionsNotDeleted(
                f"S3 did not delete {counted(len(errors), 'object version')} in s3://{bucket} ({example}): "
                f"{first.get('Code')} {first.get('Message')}; run the request again once that is fixed"
            )
    return len(targets)
