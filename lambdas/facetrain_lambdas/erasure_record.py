"""The erasure receipt: `<ErasureRecordsPrefix><erasure id>.json`, one per forget request.

It proves what a forget removed without holding what it removed: no name in clear, no embedding, no
photo. Each person is a subject, `sha256(salt + name)` with a random salt of the receipt's own (an
operator who knows the name can check it: `erasure_subject_hash(salt, name)`; without the name the hash
says nothing, and the same person gets unrelated hashes in two receipts). Photo keys name their person,
so a photo's key is kept as the same salted hash; results keys (runs/<run id>/…) are kept as they are.

Lifecycle: written `started` by BeginForget before anything is deleted, updated as the photos go
(`photos-deleted`) and `completed` by Purge. A receipt not `completed` is a forget under way (or one that
failed half-way: the same request, run again, finds it and finishes the job). While it is under way, and
for runs validated before it completed, publish refuses an enrollment holding one of its subjects
(`subjects_in`), so that no retrain republishes the person meanwhile.

The prefix has its own lifecycle rule (ErasureRecordDays); the forget and the retention sweep never
delete receipts.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from facetrain.contract.documents import parse_document
from pydantic import BaseModel, ConfigDict, Field

from .errors import transient_aws_errors
from .s3_json import write_json

FORMAT = "facetrain.erasure"
VERSION = 1
SALT_BYTES = 16
DEFAULT_PREFIX = "erasures/"  # template.yaml ErasureRecordsPrefix's default

ErasureStatus = Literal["started", "photos-deleted", "completed"]


def erasure_subject_hash(salt: str, name: str) -> str:
    """sha256 of the salt's bytes followed by the name's UTF-8 bytes, in hex: how a receipt names a
    person (or a photo key). `salt` is the receipt's, in hex."""
    return hashlib.sha256(bytes.fromhex(salt) + name.encode("utf-8")).hexdigest()


def new_salt() -> str:
    return secrets.token_hex(SALT_BYTES)


class RemovedPhoto(BaseModel):
    """A version of one of the subjects' photos, deleted for good: its key as a salted hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_sha256: str
    version_id: str
    delete_marker: bool = False


class RemovedResult(BaseModel):
    """A version of a results object that held a subject, deleted for good; `replaced_by` is the version
    id of the rewrite without them, when the object was rewritten rather than deleted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    version_id: str
    replaced_by: str | None = None


class ErasureRecord(BaseModel):
    """One forget request: who (salted hashes), what was removed, when, by which execution."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["facetrain.erasure"] = FORMAT
    version: Literal[1] = VERSION
    erasure_id: str  # the execution's name
    execution_arn: str
    status: ErasureStatus = "started"
    requested_at: str  # ISO 8601, UTC
    completed_at: str | None = None
    salt: str
    subjects: list[str]  # erasure_subject_hash(salt, name) of each person forgotten
    names_requested: int  # names in the request; those neither enrolled nor pending are not subjects
    not_enrolled: list[int] = Field(default_factory=list)  # 1-based positions of those names
    photo_versions: list[RemovedPhoto] = Field(default_factory=list)
    results_versions: list[RemovedResult] = Field(default_factory=list)
    results_versions_scanned: int = 0
    republished_run_id: str | None = None  # the run published without them (None: nothing to republish)
    finished_by: str | None = None  # a later forget of the same people that did this one's job
    republish_failed: str | None = None  # the error of a failed republish (they were purged all the same)

    def names(self, name: str) -> bool:
        """True when `name` is one of this receipt's subjects."""
        return erasure_subject_hash(self.salt, name) in self.subjects

    def counts(self) -> dict[str, int]:
        rewritten = sum(1 for v in self.results_versions if v.replaced_by)
        return {
            "subjects": len(self.subjects),
            "photo_versions_deleted": len(self.photo_versions),
            "results_versions_scanned": self.results_versions_scanned,
            "results_versions_rewritten": rewritten,
            "results_versions_deleted": len(self.results_versions) - rewritten,
        }


class ErasurePointer(BaseModel):
    """What BeginForget hands on ($.erasure in the execution's state): the receipt, and whether the
    enrollment must be republished (validate reads it in a forget's input)."""

    model_config = ConfigDict(extra="forbid")

    record_key: str
    subjects: int
    retrain: bool


def record_key(prefix: str, erasure_id: str) -> str:
    return f"{prefix}{erasure_id}.json"


def write_record(s3: Any, bucket: str, prefix: str, record: ErasureRecord) -> str:
    """Store the receipt; its key."""
    key = record_key(prefix, record.erasure_id)
    write_json(s3, bucket, key, record.model_dump(mode="json"))
    return key


def parse_record(data: object, where: str) -> ErasureRecord:
    return parse_document(
        ErasureRecord,
        data,
        where,
        format=FORMAT,
        version=VERSION,
        remedy="it was not written by this facetrain; move it out of the erasure records prefix",
    )


def read_records(
    s3: Any, bucket: str, prefix: str, skipped: Callable[[str, str], None] | None = None
) -> Iterator[tuple[str, ErasureRecord]]:
    """Every receipt under the prefix (current versions), with its key. An object there that is not a
    receipt (not JSON, another format) is skipped, told to `skipped` (its key, the problem): a stray file
    must not stop every publish. (No logger here: the offline runner imports this module, and the
    Lambdas' logger must be built under a function's environment.)"""
    paginator = s3.get_paginator("list_objects_v2")
    with transient_aws_errors(f"listing s3://{bucket}/{prefix}"):
        pages = list(paginator.paginate(Bucket=bucket, Prefix=prefix))
    for page in pages:
        for item in page.get("Contents", ()):
            key = item["Key"]
            if not key.endswith(".json"):
                continue
            with transient_aws_errors(f"reading s3://{bucket}/{key}"):
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            try:
                record = parse_record(json.loads(body), f"s3://{bucket}/{key}")
            except ValueError as exc:  # DocumentError and json's errors
                if skipped is not None:
                    skipped(key, str(exc))
                continue
            yield key, record


def subjects_in(
    records: Iterable[tuple[str, ErasureRecord]], names: Iterable[str], validated_at: str
) -> list[str]:
    """Keys of the receipts that forbid publishing an enrollment of `names` from a run validated at
    `validated_at` (ISO 8601, UTC): those under way, and those completed after the run was validated (it
    may have listed the photos before they were deleted)."""
    names = list(names)
    forbidding = []
    for key, record in records:
        in_force = record.status != "completed" or (record.completed_at or "") >= validated_at
        if in_force and any(record.names(name) for name in names):
            forbidding.append(key)
    return forbidding
