"""Purge some people from every version of every object under a prefix of the (versioned) data bucket.

`purge_prefix` is the Purge step of a forget request (issue 26): each version is read and given to
erasure_scrub.scrub_object; the versions that hold a trace of the people are replaced or deleted for good:

- a noncurrent version: deleted (by version id);
- the current version with a rewrite: the rewrite is put as the new current version (same ContentType),
  then the old version id is deleted;
- the current version without a safe rewrite: deleted; when other versions of the key remain, a delete
  marker is put on top first, so that an older version never silently becomes current again.

Order makes it safe to stop anywhere and run again (idempotent): a rewrite is put before the version it
replaces is deleted, a delete marker before the version under it; a version left behind by a stop is
noncurrent by then and found again by the next run, which deletes it. A run that finds nothing changes
nothing. Every version is checked against MAX_RESULT_FILE_BYTES before anything is changed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

from facetrain.contract.result_files import MAX_RESULT_FILE_BYTES
from pydantic import BaseModel, Field

from .erasure_scrub import scrub_object
from .errors import transient_aws_errors
from .layout import s3_uri
from .object_versions import ObjectVersion, delete_versions, list_versions, read_version


class RewrittenObject(BaseModel):
    """A key whose current version was replaced by a rewrite without the people."""

    key: str
    deleted_version_ids: list[str]  # the replaced current version first, then its noncurrent versions
    new_version_id: str


class DeletedVersion(BaseModel):
    key: str
    version_id: str


class PurgeReport(BaseModel):
    """What a purge changed (object keys and version ids: no names, no content)."""

    rewritten: list[RewrittenObject] = Field(default_factory=list)
    deleted: list[DeletedVersion] = Field(default_factory=list)  # of keys not rewritten
    delete_markers: list[str] = Field(default_factory=list)  # keys hidden behind a new delete marker
    versions_scanned: int = 0
    versions_rewritten: int = 0
    versions_deleted: int = 0  # every version deleted, the replaced current ones included

    @property
    def changed(self) -> bool:
        return bool(self.rewritten or self.deleted or self.delete_markers)


class ObjectTooLarge(ValueError):
    """A version is over MAX_RESULT_FILE_BYTES: the message names it and what to do."""


def _check_sizes(bucket: str, versions: list[ObjectVersion]) -> None:
    for version in versions:
        if version.size > MAX_RESULT_FILE_BYTES:
            raise ObjectTooLarge(
                f"{s3_uri(bucket, version.key)} version {version.version_id} is {version.size} bytes, "
                f"over the {MAX_RESULT_FILE_BYTES} bytes the purge reads (no file of a run is that large): "
                "nothing was changed. Check what it is and, if it may hold the people, delete that version "
                f"(aws s3api delete-object --bucket {bucket} --key {version.key} --version-id "
                f"{version.version_id}), then run the request again"
            )


def _content_type(s3: Any, bucket: str, version: ObjectVersion) -> str | None:
    with transient_aws_errors(f"reading s3://{bucket}/{version.key} version {version.version_id}"):
        head = s3.head_object(Bucket=bucket, Key=version.key, VersionId=version.version_id)
    return head.get("ContentType")


def _put(s3: Any, bucket: str, key: str, body: bytes, content_type: str | None) -> str:
    """Put a new current version; its version id."""
    extra = {"ContentType": content_type} if content_type else {}
    with transient_aws_errors(f"writing {s3_uri(bucket, key)}"):
        return str(s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)["VersionId"])


def _hide(s3: Any, bucket: str, key: str) -> None:
    """Put a delete marker on top of the key (DeleteObject without a version id)."""
    with transient_aws_errors(f"hiding {s3_uri(bucket, key)} behind a delete marker"):
        s3.delete_object(Bucket=bucket, Key=key)


def purge_prefix(
    s3: Any, bucket: str, prefix: str, names: Collection[str], images_prefix: str
) -> PurgeReport:
    """Scan every version of every key under `prefix` and rewrite or delete those holding a trace of
    `names` (photos under `images_prefix`); see the module docstring. Raises ObjectTooLarge (nothing
    changed), VersionsNotDeleted or TransientError (a retry finishes the job)."""
    report = PurgeReport()
    by_key: dict[str, list[ObjectVersion]] = defaultdict(list)
    for version in list_versions(s3, bucket, prefix):
        if not version.is_delete_marker:
            by_key[version.key].append(version)
    _check_sizes(bucket, [v for versions in by_key.values() for v in versions])
    doomed: list[ObjectVersion] = []
    for key, versions in by_key.items():
        to_delete: list[ObjectVersion] = []
        current: tuple[ObjectVersion, bytes | None] | None = None
        for version in versions:
            report.versions_scanned += 1
            scrubbed = scrub_object(key, read_version(s3, bucket, version), names, images_prefix)
            if not scrubbed.contains:
                continue
            if version.is_latest:
                current = (version, scrubbed.replacement)
            to_delete.append(version)
        if not to_delete:
            continue
        deleted_ids = [v.version_id for v in to_delete]
        if current is not None and current[1] is not None:
            old, replacement = current
            new_id = _put(s3, bucket, key, replacement, _content_type(s3, bucket, old))
            deleted_ids.remove(old.version_id)
            report.rewritten.append(
                RewrittenObject(
                    key=key, deleted_version_ids=[old.version_id, *deleted_ids], new_version_id=new_id
                )
            )
            report.versions_rewritten += 1
        else:
            if current is not None and len(to_delete) < len(versions):
                _hide(s3, bucket, key)  # before the delete: the version under it must not become current
                report.delete_markers.append(key)
            report.deleted.extend(DeletedVersion(key=key, version_id=v) for v in deleted_ids)
        doomed.extend(to_delete)
    report.versions_deleted = delete_versions(s3, bucket, doomed)
    return report
