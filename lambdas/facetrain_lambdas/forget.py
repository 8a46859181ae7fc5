"""forget: erase people from everything the data bucket keeps — the console input `{"forget": [names]}`.

The state machine carries it out in three steps, of which this function is the first and the last:

1. BeginForget (`begin_forget`): check the request — each name is a folder name; a name that is neither
   enrolled (a row of any stored enrollment), nor has photos (any version), nor is in an erasure under
   way is "not enrolled", and a request of only such names fails (NothingToForget); a request that would
   leave no photo folder to enroll anyone is refused (LastPersonRefused); so is one while another
   execution of the state machine runs (RetrainingUnderWay: it could publish them again). Then write the
   receipt (`erasure_record`, status `started`) and delete every version and delete marker of their
   photos (`photos-deleted`).
2. The usual Validate → train → Publish, with the published run's settings (`run_request`: forget mode),
   so the enrollment is republished without them, the others' embeddings reused. Skipped when nothing
   published names them.
3. PurgeForgotten (`purge_forgotten`): every version of every object under the results prefix is scanned;
   those holding them are rewritten without them or deleted (erasure_purge), the receipt is completed,
   and the notification's text returned.

Idempotent: a forget that failed half-way leaves its receipt `started`; the same request, run again,
finds them "under way", finishes the job, and completes the earlier receipt too. Meanwhile publish refuses
any enrollment holding them (erasure_record.subjects_in). Nothing here logs a name or a photo key.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from facetrain.contract.counting import counted
from facetrain.contract.enrollment_csv import EnrollmentCsvError, parse_csv
from facetrain.contract.names import ENROLLMENT_CSV, STRANGERS_FOLDER, is_skipped
from pydantic import BaseModel, ConfigDict, Field

from .clients import client
from .erasure_purge import purge_prefix
from .erasure_record import DEFAULT_PREFIX as ERASURE_PREFIX
from .erasure_record import (
    ErasurePointer,
    ErasureRecord,
    RemovedPhoto,
    RemovedResult,
    erasure_subject_hash,
    new_salt,
    parse_record,
    read_records,
    record_key,
    write_record,
)
from .errors import InvalidInput, transient_aws_errors
from .function_settings import FunctionSettings
from .layout import RunLayout, s3_uri
from .object_versions import delete_versions, list_versions, read_version
from .observability import CORRELATION_ID_PATH, logger, metrics, tracer
from .publish import warn_not_a_receipt
from .published import read_published
from .s3_json import read_json_if_present

MAX_NAMES = 100
STEP_FUNCTIONS_HISTORY_DAYS = 90  # Step Functions keeps a closed execution's history (its input) this long


class ForgetSettings(FunctionSettings):
    """Environment of the forget function (template.yaml)."""

    bucket: str = Field(validation_alias="DATA_BUCKET")
    images_prefix: str = Field("face_imgs/", validation_alias="IMAGES_PREFIX")
    results_prefix: str = Field("results/", validation_alias="RESULTS_PREFIX")
    erasure_prefix: str = Field(ERASURE_PREFIX, validation_alias="ERASURE_RECORDS_PREFIX")


class ForgetRequest(BaseModel):
    """The console input of a forget: only `forget` (it retrains with the published run's settings)."""

    model_config = ConfigDict(extra="forbid")

    forget: list[str] = Field(min_length=1, max_length=MAX_NAMES)


class BeginEvent(BaseModel):
    """BeginForget's payload from the state machine."""

    action: Literal["begin"]
    execution: str
    execution_arn: str
    state_machine_arn: str
    input: dict[str, Any]


class PurgeEvent(BaseModel):
    """PurgeForgotten's payload from the state machine."""

    action: Literal["purge"]
    execution: str
    input: dict[str, Any]
    erasure: ErasurePointer
    state: dict[str, Any] = Field(
        default_factory=dict
    )  # the execution's state: `failure` when the retrain failed

    @property
    def republish_failure(self) -> tuple[str, str] | None:
        """(Error, Cause) of the republish, when it failed before PurgeForgotten."""
        failure = self.state.get("failure")
        if not isinstance(failure, dict):
            return None
        return str(failure.get("Error", "")), str(failure.get("Cause", ""))


class PurgeResult(BaseModel):
    """The notification (subject and text) of a forget, and its receipt."""

    record_key: str
    subject: str
    summary: str


SUBJECT_DONE = "facetrain forget done"
SUBJECT_REPUBLISH_FAILED = "facetrain forget: erased, but the republish failed"


class NothingToForget(Exception):
    """No name of the request is enrolled, has photos or is being forgotten: nothing was changed."""


class LastPersonRefused(Exception):
    """The request would leave no one to enroll."""


class RetrainingUnderWay(Exception):
    """Another execution runs: it could publish the people again; nothing was changed."""


def request_names(raw: object) -> list[str]:
    """The names of a forget input, checked (InvalidInput naming each problem by position, not by name)."""
    try:
        request = ForgetRequest.model_validate(raw)
    except Exception as exc:  # pydantic's message would quote the names: say what the input must be
        raise InvalidInput(
            [
                f'a forget input is {{"forget": ["<name>", ...]}} with 1 to {MAX_NAMES} folder names and no '
                f"other field (it retrains with the published run's settings); {type(exc).__name__}"
            ]
        ) from None
    problems = []
    for position, name in enumerate(request.forget, start=1):
        if not name or "/" in name or name in (".", "..") or is_skipped(name) or name == STRANGERS_FOLDER:
            problems.append(
                f"forget name {position} is not a person's folder name (empty, holds '/', or starts with "
                "'_' or '.'): give the folder name under the images prefix, as it is spelled there"
            )
    if problems:
        raise InvalidInput(problems)
    return list(dict.fromkeys(request.forget))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _photo_prefix(settings: ForgetSettings, name: str) -> str:
    return f"{settings.images_prefix}{name}/"


def _photo_folders(s3: Any, settings: ForgetSettings) -> set[str]:
    """The person folders under the images prefix now (current objects)."""
    folders: set[str] = set()
    paginator = s3.get_paginator("list_objects_v2")
    with transient_aws_errors(f"listing {s3_uri(settings.bucket, settings.images_prefix)}"):
        for page in paginator.paginate(Bucket=settings.bucket, Prefix=settings.images_prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", ()):
                name = common["Prefix"][len(settings.images_prefix) : -1]
                if name and not is_skipped(name):
                    folders.add(name)
    return folders


def enrolled_names(s3: Any, settings: ForgetSettings) -> tuple[set[str], set[str]]:
    """(names in the published enrollment, names in any stored enrollment: every version of the current
    CSV and of every run's). A CSV that cannot be read counts as naming no one here (a warning names its
    key); the purge scans it all the same."""
    published: set[str] = set()
    stored: set[str] = set()
    current_key = f"{settings.results_prefix}{ENROLLMENT_CSV}"
    for version in list_versions(s3, settings.bucket, settings.results_prefix):
        if version.is_delete_marker or not version.key.endswith(ENROLLMENT_CSV):
            continue
        text = read_version(s3, settings.bucket, version).decode("utf-8", "replace")
        try:
            names = {name for name, _, _ in parse_csv(text)}
        except EnrollmentCsvError:
            logger.warning("an enrollment CSV cannot be read", extra={"key": version.key})
            continue
        stored |= names
        if version.key == current_key and version.is_latest:
            published = names
    return published, stored


def _other_running_execution(sfn: Any, state_machine_arn: str, own_arn: str) -> str | None:
    paginator = sfn.get_paginator("list_executions")
    with transient_aws_errors("listing the running executions"):
        for page in paginator.paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING"):
            for execution in page.get("executions", ()):
                if execution["executionArn"] != own_arn:
                    return str(execution["name"])
    return None


def _own_record(s3: Any, settings: ForgetSettings, erasure_id: str) -> ErasureRecord | None:
    """This execution's receipt, when a retried invocation already wrote it."""
    key = record_key(settings.erasure_prefix, erasure_id)
    data = read_json_if_present(s3, settings.bucket, key)
    return None if data is None else parse_record(data, s3_uri(settings.bucket, key))


@tracer.capture_method
def begin_forget(s3: Any, sfn: Any, event: BeginEvent, settings: ForgetSettings) -> ErasurePointer:
    """Check the request, write the receipt, delete every version of the people's photos."""
    names = request_names(event.input)
    record = _own_record(s3, settings, event.execution)
    # A retried invocation is past this check: the runs its own deletions started may be running now.
    other = None if record else _other_running_execution(sfn, event.state_machine_arn, event.execution_arn)
    if other:
        raise RetrainingUnderWay(
            f"execution {other} of the retraining state machine is running: it could publish the people "
            "to forget again. Nothing was changed: forget again once it has ended (or stop it)."
        )
    records = list(read_records(s3, settings.bucket, settings.erasure_prefix, warn_not_a_receipt))
    under_way = {n for n in names for _, r in records if r.status != "completed" and r.names(n)}
    forgotten_before = {n for n in names for _, r in records if r.status == "completed" and r.names(n)}
    published, stored = enrolled_names(s3, settings)
    photo_versions = {
        n: list(list_versions(s3, settings.bucket, _photo_prefix(settings, n), _photos_of(p, len(names))))
        for p, n in enumerate(names, start=1)
    }
    # Forgotten before: purged again (a trace a version or an archive kept, an --out copy), idempotently.
    subjects = [
        n for n in names if n in stored or photo_versions[n] or n in under_way or n in forgotten_before
    ]
    not_enrolled = [position for position, n in enumerate(names, start=1) if n not in subjects]
    if not subjects:
        raise NothingToForget(
            f"{_positions(not_enrolled, len(names))} not enrolled: no photos under the images prefix, no "
            "row in any stored enrollment, no erasure of them before or under way. Nothing was changed; "
            "check the spelling (a name is the person's folder name, case and accents as there)."
        )
    folders = _photo_folders(s3, settings)
    if folders and not folders - set(subjects):
        raise LastPersonRefused(
            "forgetting them would leave no photo folder under the images prefix: no one would be enrolled, "
            "and an enrollment needs at least one person. Nothing was changed. To erase everyone, delete "
            "the stack (`make delete`: the bucket and everything in it go; docs/workflow.md)."
        )
    if record is None:
        salt = new_salt()
        record = ErasureRecord(
            erasure_id=event.execution,
            execution_arn=event.execution_arn,
            requested_at=_now(),
            salt=salt,
            subjects=[erasure_subject_hash(salt, n) for n in subjects],
            names_requested=len(names),
            not_enrolled=not_enrolled,
        )
    key = write_record(s3, settings.bucket, settings.erasure_prefix, record)
    doomed = [v for n in subjects for v in photo_versions[n]]
    delete_versions(s3, settings.bucket, doomed, "the photos of the people to forget")
    record.photo_versions = _merged(
        record.photo_versions,
        (
            RemovedPhoto(
                key_sha256=erasure_subject_hash(record.salt, v.key),
                version_id=v.version_id,
                delete_marker=v.is_delete_marker,
            )
            for v in doomed
        ),
    )
    record.status = "photos-deleted"
    write_record(s3, settings.bucket, settings.erasure_prefix, record)
    metrics.add_metric(name="PeopleForgotten", unit=MetricUnit.Count, value=len(subjects))
    metrics.add_metric(name="PhotoVersionsErased", unit=MetricUnit.Count, value=len(doomed))
    logger.info(
        "forget begun: photos deleted",
        extra={"subjects": len(subjects), "not_enrolled": len(not_enrolled), "photo_versions": len(doomed)},
    )
    return ErasurePointer(
        record_key=key, subjects=len(subjects), retrain=any(n in published for n in subjects)
    )


def _photos_of(position: int, total: int) -> str:
    """How an error names a person's photo folder: by the name's position in the request."""
    return f"the photos of forget name {position} of {total}"


def _merged(old: list[RemovedPhoto], new: Iterable[RemovedPhoto]) -> list[RemovedPhoto]:
    seen = {(p.key_sha256, p.version_id) for p in old}
    return [*old, *(p for p in new if (p.key_sha256, p.version_id) not in seen)]


def _positions(positions: list[int], total: int, verb: str = "is") -> str:
    """`name 2 of 3 is` / `names 1, 3 of 3 are`: which names of the request, without quoting them."""
    if len(positions) == 1:
        return f"name {positions[0]} of {total} {verb}"
    return f"names {', '.join(map(str, positions))} of {total} {'were' if verb == 'was' else 'are'}"


@tracer.capture_method
def purge_forgotten(s3: Any, event: PurgeEvent, settings: ForgetSettings) -> PurgeResult:
    """Scan and purge every version under the results prefix; complete the receipt (and any earlier one
    under way for the same people); the notification's text."""
    names = request_names(event.input)
    records = dict(read_records(s3, settings.bucket, settings.erasure_prefix, warn_not_a_receipt))
    record = records.get(event.erasure.record_key)
    if record is None:
        raise RuntimeError(f"the erasure receipt {event.erasure.record_key} is missing: forget again")
    subjects = [n for n in names if record.names(n)]
    report = purge_prefix(s3, settings.bucket, settings.results_prefix, subjects, settings.images_prefix)
    removed = [RemovedResult(key=d.key, version_id=d.version_id) for d in report.deleted]
    removed += [
        RemovedResult(key=r.key, version_id=old, replaced_by=r.new_version_id)
        for r in report.rewritten
        for old in r.deleted_version_ids
    ]
    latest = read_published(s3, RunLayout(settings.bucket, settings.results_prefix, "-"))
    now = _now()
    record.results_versions = [*record.results_versions, *removed]
    record.results_versions_scanned += report.versions_scanned
    failure = event.republish_failure
    record.republished_run_id = latest.run_id if event.erasure.retrain and latest and not failure else None
    record.republish_failed = failure[0] if failure else None
    record.status = "completed"
    record.completed_at = now
    write_record(s3, settings.bucket, settings.erasure_prefix, record)
    finished = _complete_earlier(s3, settings, records, subjects, record.erasure_id, now)
    metrics.add_metric(name="ResultVersionsErased", unit=MetricUnit.Count, value=len(removed))
    logger.info("forget completed", extra={**record.counts(), "earlier_receipts_completed": finished})
    receipt = s3_uri(settings.bucket, event.erasure.record_key)
    return PurgeResult(
        record_key=event.erasure.record_key,
        subject=SUBJECT_REPUBLISH_FAILED if failure else SUBJECT_DONE,
        summary=summary_text(record, receipt, finished, failure),
    )


def _complete_earlier(
    s3: Any,
    settings: ForgetSettings,
    records: dict[str, ErasureRecord],
    subjects: list[str],
    erasure_id: str,
    now: str,
) -> int:
    """Complete the receipts of earlier forgets of these people that failed half-way (this one did their
    job); how many."""
    finished = 0
    for record in records.values():
        if record.erasure_id == erasure_id or record.status == "completed":
            continue
        if all(any(erasure_subject_hash(record.salt, n) == s for n in subjects) for s in record.subjects):
            record.status = "completed"
            record.completed_at = now
            record.finished_by = erasure_id
            write_record(s3, settings.bucket, settings.erasure_prefix, record)
            finished += 1
    return finished


def summary_text(
    record: ErasureRecord, receipt_uri: str, finished: int, failure: tuple[str, str] | None = None
) -> str:
    """The notification of a completed forget: counts and pointers, no name."""
    counts = record.counts()
    lines = [
        f"facetrain forgot {counted(counts['subjects'], 'person', 'people')} "
        f"(execution {record.erasure_id}).",
        f"Receipt: {receipt_uri} (salted hashes, no names; an operator who knows a name can match it).",
        f"Photos: {counted(counts['photo_versions_deleted'], 'object version')} deleted for good.",
        f"Results: {counted(counts['results_versions_scanned'], 'object version')} scanned, "
        f"{counts['results_versions_rewritten']} rewritten without them, "
        f"{counts['results_versions_deleted']} deleted.",
    ]
    if failure:
        lines.append(
            f"The retrain that republishes the enrollment without them failed ({failure[0]}: {failure[1]}). "
            "They were erased all the same: the current enrollment files were rewritten without them "
            "(what cannot be rewritten, such as report.html, was deleted). Fix the cause and start a "
            "retraining to republish the others with a threshold calibrated without them."
        )
    elif record.republished_run_id:
        lines.append(f"The enrollment was republished without them as run {record.republished_run_id}.")
    else:
        lines.append("No published enrollment named them: nothing was republished.")
    if not record.photo_versions and not record.results_versions:
        lines.append("Nothing of theirs was left to remove (they had been forgotten before).")
    if record.not_enrolled:
        lines.append(
            f"{_positions(record.not_enrolled, record.names_requested)} not enrolled: nothing to do."
        )
    if finished:
        lines.append(
            f"Also completed: {counted(finished, 'earlier forget')} of the same people that had stopped "
            "half-way."
        )
    lines.append(
        "Step Functions keeps this execution's input, which names them, for "
        f"{STEP_FUNCTIONS_HISTORY_DAYS} days after it ends (no setting shortens it)."
    )
    return "\n".join(lines)


# The environment this handler reads (template test: every function gets each required variable).
SETTINGS: tuple[type[FunctionSettings], ...] = (ForgetSettings,)


# log_event=False pinned: the event holds the names (POWERTOOLS_LOGGER_LOG_EVENT must never log it).
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point: `action` begin (BeginForget) or purge (PurgeForgotten)."""
    settings = ForgetSettings.from_env()
    s3 = client("s3")
    if event.get("action") == "begin":
        return begin_forget(
            s3, client("stepfunctions"), parse(event=event, model=BeginEvent), settings
        ).model_dump()
    return purge_forgotten(s3, parse(event=event, model=PurgeEvent), settings).model_dump()
