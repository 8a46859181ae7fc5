"""Published results read straight from S3, with the caller's own S3 client (this package never imports
boto3: the training job's import contract).

Which files: publish (facetrain_lambdas.publish) stores a run's files under <results prefix>runs/<run id>/,
then copies them to the top of the prefix (the current files), and writes latest.json last, naming the run
(`run_id`) and its own files (`run_files`: file name -> key). The current files at the top are replaced
one by one while a new run is published, so reading them could mix two runs; a run's own files are
written once, before any latest.json names them, and never replaced by a publish (validate refuses a run
id that is taken; the retention sweep keeps the published run). So latest.json is read first, then the
files it names under runs/<run id>/: a publish in progress gives the run published before it, whole.
The one exception is a forget (facetrain_lambdas.erasure_purge), which rewrites the forgotten people out
of every run's files in place, object by object: a load during its purge may get files rewritten and
files not yet rewritten together (or fail their checks, ResultsError); load again once the forget has
ended.

Every object is read within a cap (contract.result_files, as `facetrain identify` reads a folder) into
memory; the results are checked as a folder's are (identify.results_from). S3's refusals become a
ResultsError naming the key and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from . import identify as _identify
from .contract.latest_pointer import LATEST_FORMAT, LATEST_JSON, LATEST_VERSIONS_READ
from .contract.names import EMBEDDINGS_PKL, ENROLLMENT_CSV, RULES_PY

ResultsError = _identify.ResultsError

MAX_LATEST_BYTES = 1024 * 1024  # publish writes a few KB
RESULTS_FILES = (RULES_PY, ENROLLMENT_CSV, EMBEDDINGS_PKL)
# The stack's operator policy (template.yaml OperatorPolicy, README "Who may do what") grants this read.
READ_PERMISSION = (
    "s3:GetObject on the results prefix ({arn}), as the stack's operator policy grants (output "
    "OperatorPolicyArn, statement ReadPhotosSettingsAndResults)"
)


class S3Reader(Protocol):
    """What is used of the caller's S3 client (a boto3 `client("s3")`): GetObject alone. An error it
    raises with a botocore-style `response` ({"Error": {"Code", "Message"}}) becomes a ResultsError."""

    def get_object(self, *, Bucket: str, Key: str) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class ResultsPrefix:
    """Where results are published: a bucket and a key prefix ("" or ending in "/")."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, uri: str) -> ResultsPrefix:
        """From "s3://BUCKET/PREFIX/" (the trailing "/" may be left out)."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket:
            raise ResultsError(
                f"{uri!r} is not an S3 results prefix: give s3://BUCKET/PREFIX/, e.g. the stack's data "
                "bucket and its results prefix, s3://BUCKET/results/"
            )
        return cls(bucket, prefix if not prefix or prefix.endswith("/") else f"{prefix}/")

    def uri(self, key: str | None = None) -> str:
        return f"s3://{self.bucket}/{self.prefix if key is None else key}"

    @property
    def arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}/{self.prefix}*"


@dataclass(frozen=True)
class PublishedRun:
    """What latest.json says is published: the run and the keys of its own files."""

    run_id: str
    files: dict[str, str]  # RESULTS_FILES name -> key under <prefix>runs/<run id>/


def _error_code(exc: Exception) -> tuple[str, str] | None:
    """(code, message) of an S3 error response (botocore's ClientError, duck-typed); None for another."""
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    if not isinstance(error, dict):
        return None
    return str(error.get("Code", "")), str(error.get("Message", ""))


def read_object(s3: S3Reader, where: ResultsPrefix, key: str, cap: int, missing: str) -> bytes:
    """The bytes of one object, at most `cap` (refused past it, unread); `missing`: the message for a key
    that does not exist. ResultsError for S3's refusals; other errors (the network) as they are."""
    uri = where.uri(key)
    try:
        response = s3.get_object(Bucket=where.bucket, Key=key)
    except Exception as exc:
        answer = _error_code(exc)
        if answer is None:
            raise
        code, message = answer
        if code in ("NoSuchKey", "404"):
            raise ResultsError(missing) from None
        if code == "NoSuchBucket":
            raise ResultsError(
                f"the bucket {where.bucket} does not exist: give the stack's data bucket "
                f"(s3://BUCKET/{where.prefix})"
            ) from None
        if code in ("AccessDenied", "403"):
            raise ResultsError(
                f"S3 refused to read {uri} (AccessDenied: {message}): the caller needs "
                + READ_PERMISSION.format(arn=where.arn)
                + "; without s3:ListBucket on the bucket, S3 also answers AccessDenied for a key that does "
                "not exist"
            ) from None
        raise ResultsError(f"S3 refused to read {uri} ({code}: {message})") from None
    body = response["Body"]
    too_large = ResultsError(
        f"{uri} is over the cap of {cap} bytes for {key.rsplit('/', 1)[-1]}: it is not what facetrain "
        "publishes; check the results prefix"
    )
    try:
        if int(response.get("ContentLength") or 0) > cap:
            raise too_large
        data = body.read(cap + 1)  # + 1: a body longer than announced is refused too
    finally:
        body.close()
    if len(data) > cap:
        raise too_large
    return data


def read_latest(s3: S3Reader, where: ResultsPrefix) -> PublishedRun:
    """The published run latest.json names, with the keys of its results files; ResultsError when nothing
    is published there or latest.json is not facetrain's."""
    key = f"{where.prefix}{LATEST_JSON}"
    uri = where.uri(key)
    data = read_object(
        s3,
        where,
        key,
        MAX_LATEST_BYTES,
        f"nothing is published at {where.uri()}: {uri} does not exist. Check the bucket and results prefix "
        "(the stack's data bucket and ResultsPrefix, e.g. s3://BUCKET/results/), or wait until a run is "
        "published (publish writes latest.json last)",
    )
    not_ours = f"{uri} is not a facetrain latest.json ({{}}): check the results prefix"
    try:
        latest = json.loads(data)
    except ValueError:
        raise ResultsError(not_ours.format("not JSON")) from None
    if not isinstance(latest, dict) or latest.get("format") != LATEST_FORMAT:
        raise ResultsError(not_ours.format(f"its format is not {LATEST_FORMAT}"))
    if latest.get("version") not in LATEST_VERSIONS_READ:
        raise ResultsError(
            f"{uri} is {LATEST_FORMAT} version {latest.get('version')!r}, which this facetrain does not "
            f"read (versions {', '.join(map(str, LATEST_VERSIONS_READ))}): upgrade facetrain"
        )
    run_id, files = latest.get("run_id"), latest.get("run_files")
    if not isinstance(run_id, str) or not run_id or "/" in run_id or not isinstance(files, dict):
        raise ResultsError(not_ours.format("no run_id and run_files"))
    run_prefix = f"{where.prefix}runs/{run_id}/"
    named: dict[str, str] = {}
    for name in RESULTS_FILES:
        run_key = files.get(name)
        if not isinstance(run_key, str) or run_key != f"{run_prefix}{name}":
            raise ResultsError(
                f"{uri} names no {name} of run {run_id} under {where.uri(run_prefix)} (run_files: "
                f"{run_key!r}): it was not written by facetrain's publish; publish a run again"
            )
        named[name] = run_key
    return PublishedRun(run_id, named)


def load_published(s3: S3Reader, uri: str, device: str = "auto") -> tuple[_identify.Results, str]:
    """The results published at `uri` (s3://BUCKET/PREFIX/), checked, and the run id they are."""
    where = ResultsPrefix.parse(uri)
    run = read_latest(s3, where)

    def read(name: str) -> bytes:
        key = run.files[name]
        missing = (
            f"{where.uri(key)} is missing, though {LATEST_JSON} names it as run {run.run_id}'s {name}: the "
            "run's files were deleted since (by an administrator, or a sweep after a newer run was "
            "published); load again, and if it persists, publish a run again"
        )
        return read_object(s3, where, key, _identify.RESULTS_FILE_CAPS[name], missing)

    return _identify.results_from(read, where.uri(f"{where.prefix}runs/{run.run_id}/"), device), run.run_id
