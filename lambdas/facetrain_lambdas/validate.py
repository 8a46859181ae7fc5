"""validate: check the execution input, photos and settings; snapshot them as manifests and a run record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from facetrain.contract.counting import counted
from facetrain.contract.documents import DocumentError
from facetrain.contract.names import EMBEDDINGS_PKL
from facetrain.contract.photo_limits import MAX_PHOTO_BYTES
from pydantic import BaseModel

from .clients import client
from .dataset import DEFAULT_PAGE_SIZE, check_photos, list_objects, manifest, run_fingerprint
from .errors import InvalidInput, transient_aws_errors
from .function_settings import FunctionSettings
from .layout import RunLayout, s3_uri
from .observability import CORRELATION_ID_PATH, logger, metrics, tracer
from .published import LatestRecord, read_published
from .run_record import (
    DatasetSummary,
    RunPointer,
    RunRecord,
    ValidationProblems,
    read_run_record_if_present,
)
from .run_request import RunRequest, StackDefaults, resolve_request
from .run_settings import config_files, resolve_settings
from .s3_json import write_json

MAX_RECORDED_WARNINGS = 1000  # run.json is read by every later state: keep it bounded


class ValidateEvent(BaseModel):
    """Payload from the state machine: the execution name and the execution input, untouched."""

    execution: str
    input: Any = None


def _claimed_by_other_execution(s3: Any, layout: RunLayout, execution: str) -> str | None:
    """The execution that already used this run id, if it is not this one (InvalidInput when the run id
    holds a run record this stack cannot read: its owner is unknown, so the id is not reused)."""
    try:
        previous = read_run_record_if_present(s3, layout)
    except DocumentError as exc:
        raise InvalidInput([f"run_id '{layout.run_id}' is taken: {exc}"]) from None
    if previous is None or previous.request.execution == execution:
        return None
    return previous.request.execution


def _recorded(warnings: list[str]) -> list[str]:
    """The warnings as run.json keeps them: at most MAX_RECORDED_WARNINGS lines, then a count."""
    if len(warnings) <= MAX_RECORDED_WARNINGS:
        return warnings
    return [*warnings[:MAX_RECORDED_WARNINGS], f"… and {len(warnings) - MAX_RECORDED_WARNINGS} more"]


def previous_embeddings_key(latest: LatestRecord | None, layout: RunLayout) -> str | None:
    """The published run's own saved_embeddings.pkl (immutable, under runs/<run_id>/), if it lies there:
    exactly there, since start tells the job the previous manifest's prefix as that run's folder
    (training_job.manifest_prefixes; facetrain.channel_layout)."""
    if latest is None:
        return None
    key = latest.run_files.get(EMBEDDINGS_PKL)
    expected = RunLayout(layout.bucket, layout.results_prefix, latest.run_id).run_file_key(EMBEDDINGS_PKL)
    return key if key == expected else None


def with_published_settings(s3: Any, request: RunRequest) -> RunRequest:
    """A forget's request with the published run's training settings (hyperparameters, instances), so
    that the enrollment republished without the people forgotten is the same one otherwise, the others'
    embeddings reused (unchanged settings keep the embedding fingerprint). As it was without a published
    run or a readable run.json of it."""
    layout = RunLayout(bucket=request.bucket, results_prefix=request.results_prefix, run_id=request.run_id)
    latest = read_published(s3, layout)
    if latest is None:
        return request
    try:
        published = read_run_record_if_present(
            s3, RunLayout(layout.bucket, layout.results_prefix, latest.run_id)
        )
    except DocumentError:
        published = None
    if published is None:
        return request
    return request.model_copy(
        update={
            "hyperparameters": dict(published.request.hyperparameters),
            "instance_type": published.request.instance_type,
            "instance_count": published.request.instance_count,
        }
    )


@tracer.capture_method
def validate_run(
    s3: Any,
    request: RunRequest,
    max_photo_bytes: int = MAX_PHOTO_BYTES,  # the job's cap (one source of truth: not a stack setting)
    page_size: int = DEFAULT_PAGE_SIZE,
) -> RunPointer:
    """Validate a resolved request against the bucket; write manifests and run.json, or raise InvalidInput."""
    layout = RunLayout(bucket=request.bucket, results_prefix=request.results_prefix, run_id=request.run_id)
    problems: list[str] = []
    owner = _claimed_by_other_execution(s3, layout, request.execution)
    if owner:
        raise InvalidInput(
            [
                f"run_id '{request.run_id}' was already used by execution '{owner}': "
                "pass a new run_id or leave it out"
            ]
        )
    with transient_aws_errors(f"listing {s3_uri(request.bucket, request.config_prefix)}"):
        config_objects = list(list_objects(s3, request.bucket, request.config_prefix, page_size))
    resolved = resolve_settings(
        s3, request.bucket, request.config_prefix, config_objects, request.hyperparameters
    )
    problems.extend(resolved.problems)
    min_per_identity = resolved.settings.min_images_per_identity if resolved.settings else 1
    with transient_aws_errors(f"listing {s3_uri(request.bucket, request.images_prefix)}"):
        snapshot, photo_problems = check_photos(
            list_objects(s3, request.bucket, request.images_prefix, page_size),
            request.bucket,
            request.images_prefix,
            min_per_identity,
            max_photo_bytes,
        )
    problems.extend(photo_problems)
    metrics.add_metric(name="ValidationProblems", unit=MetricUnit.Count, value=len(problems))
    warnings = snapshot.all_warnings
    metrics.add_metric(name="ValidationWarnings", unit=MetricUnit.Count, value=len(warnings))
    if snapshot.warnings:  # a count and where they are listed: their keys name people, so only at DEBUG
        listed_in = s3_uri(request.bucket, layout.problems_key if problems else layout.run_record_key)
        logger.warning(
            f"validation: {counted(len(snapshot.warnings), 'warning')} about files or folders under the "
            f"images prefix ({counted(snapshot.skipped, 'object')} left out of the run)",
            extra={"run_id": request.run_id, "listed_in": listed_in},
        )
        logger.debug("the warnings", extra={"warnings": snapshot.warnings[:MAX_RECORDED_WARNINGS]})
    if snapshot.too_few:  # a count, never the names
        logger.warning(snapshot.too_few.warning, extra={"run_id": request.run_id})
    if problems:
        write_json(
            s3,
            request.bucket,
            layout.problems_key,
            ValidationProblems(run_id=request.run_id, problems=problems, warnings=warnings).model_dump(
                mode="json"
            ),
        )
        # where the person finds the whole list: the run's folder, relative, as on AWS and offline alike
        # (never the bucket's URI: offline it is a local bucket the person never sees)
        where = f"runs/{request.run_id}/problems.json under the results prefix; offline, in OUT_DIR"
        raise InvalidInput(problems, where=where, warnings=warnings)

    assert resolved.settings is not None
    write_json(
        s3,
        request.bucket,
        layout.manifest_key,
        manifest(request.bucket, request.images_prefix, snapshot.keys),
    )
    cfg_manifest_key = None
    if resolved.config_keys:
        cfg_manifest_key = layout.cfg_manifest_key
        write_json(
            s3,
            request.bucket,
            cfg_manifest_key,
            manifest(request.bucket, request.config_prefix, resolved.config_keys),
        )
    fingerprint = run_fingerprint(
        snapshot.fingerprint,
        config_files(config_objects, request.config_prefix),
        resolved.settings.model_dump(mode="json"),
    )
    latest = read_published(s3, layout)
    no_change = not request.force and latest is not None and latest.run_fingerprint == fingerprint
    previous_key = previous_embeddings_key(latest, layout)
    previous_manifest_key = None
    if previous_key is not None:
        previous_manifest_key = layout.previous_manifest_key
        folder, _, name = previous_key.rpartition("/")
        write_json(s3, request.bucket, previous_manifest_key, manifest(request.bucket, f"{folder}/", [name]))
    dataset = DatasetSummary(
        identities=len(snapshot.identities),
        images=len(snapshot.keys) - snapshot.strangers,
        bytes=snapshot.total_bytes,
        skipped=snapshot.skipped,
        strangers=snapshot.strangers,
    )
    record = RunRecord(
        request=request,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        settings=resolved.settings,
        manifest_key=layout.manifest_key,
        cfg_manifest_key=cfg_manifest_key,
        previous_manifest_key=previous_manifest_key,
        previous_run_id=latest.run_id if latest and previous_manifest_key else None,
        dataset=dataset,
        run_fingerprint=fingerprint,
        warnings=_recorded(warnings),
        no_change=no_change,
    )
    write_json(s3, request.bucket, layout.run_record_key, record.model_dump(mode="json"))
    metrics.add_metric(name="Identities", unit=MetricUnit.Count, value=dataset.identities)
    metrics.add_metric(name="Images", unit=MetricUnit.Count, value=dataset.images)
    metrics.add_metric(name="KnownStrangers", unit=MetricUnit.Count, value=dataset.strangers)
    if no_change:
        metrics.add_metric(name="RunsWithoutChange", unit=MetricUnit.Count, value=1)
    logger.info(
        "run validated",
        extra={"run_id": request.run_id, "dataset": dataset.model_dump(), "no_change": no_change},
    )
    return RunPointer(
        run_id=request.run_id,
        bucket=request.bucket,
        run_record_key=layout.run_record_key,
        manifest_key=layout.manifest_key,
        run_fingerprint=fingerprint,
        identities=dataset.identities,
        images=dataset.images,
        strangers=dataset.strangers,
        no_change=no_change,
    )


# The environment this handler reads (template test: every function gets each required variable).
SETTINGS: tuple[type[FunctionSettings], ...] = (StackDefaults,)


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point (environment: see StackDefaults.from_env)."""
    payload = parse(event=event, model=ValidateEvent)
    defaults = StackDefaults.from_env()
    request = resolve_request(payload.input, payload.execution, defaults)
    logger.append_keys(run_id=request.run_id)
    s3 = client("s3")
    if request.source == "forget":
        request = with_published_settings(s3, request)
    pointer = validate_run(s3, request).model_dump()
    # Executions started on the state machine's previous definition select `dataset_fingerprint` from this
    # payload (its old name): both are returned until no such execution can still be running (50 h).
    return {**pointer, "dataset_fingerprint": pointer["run_fingerprint"]}
