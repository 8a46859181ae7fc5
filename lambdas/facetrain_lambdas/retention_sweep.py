"""retention_sweep: the daily sweep of old runs, the run-history part of the retention schedule.

Every run folder under <results prefix>runs/ older than RunHistoryDays is deleted for good: every
version and delete marker of every object in it, by version id (object_versions.delete_versions), so
that no noncurrent copy outlives it. A run's age counts from its run.json's `created_at` (validate writes
it when the run begins); a run without one (validate refused it: problems.json only) counts from the
newest change (LastModified of any version or delete marker) in its folder.

Kept, whatever their age:
- the published run (latest.json's `run_id`): the current files are copies of its files, and the next
  run's incremental reuse reads its `runs/<run_id>/saved_embeddings.pkl` and nothing else
  (validate.previous_embeddings_key; start hands the job that run's folder as the previous channel);
- the run each kept run reuses (its run.json's `previous_run_id`): a run validated before another run
  published may still be training on the pickle of the run that was published then.
No older run is read again by anything, so nothing else is needed.

RunHistoryDays is at least MIN_RUN_HISTORY_DAYS (3; the template's MinValue, checked here too), longer
than an execution may run (the state machine's 50 h timeout): a run whose execution may still be writing
its folder is never old enough. Nothing outside <results prefix>runs/ is touched (the current files,
latest.json, photos, settings, erasure receipts): the function's role may delete only there.

Idempotent: what a sweep deleted is gone, and the next finds nothing old left; a sweep that fails or runs
out of time (it stops TIME_MARGIN_SECONDS before the Lambda's timeout, between runs) is finished by the
next one. Logs and the result hold run ids and counts, never object contents.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from facetrain.contract.counting import counted
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .clients import client
from .errors import InvalidInput
from .function_settings import FunctionSettings
from .layout import LATEST_JSON, RUN_JSON, s3_uri
from .object_versions import VersionsNotDeleted, delete_versions, list_versions
from .observability import logger, metrics, tracer
from .published import parse_latest
from .s3_json import read_json_if_present

MIN_RUN_HISTORY_DAYS = 3  # > the state machine's 50 h timeout (template.yaml RunHistoryDays MinValue)
TIME_MARGIN_SECONDS = 60.0  # stop starting on another run this long before the Lambda's timeout


class RetentionSettings(FunctionSettings):
    """The sweep's environment (template.yaml)."""

    bucket: str = Field(validation_alias="DATA_BUCKET")
    results_prefix: str = Field("results/", validation_alias="RESULTS_PREFIX")
    run_history_days: int = Field(ge=MIN_RUN_HISTORY_DAYS, le=36500, validation_alias="RUN_HISTORY_DAYS")


# The environment this handler reads (template test: every function gets each required variable).
SETTINGS: tuple[type[FunctionSettings], ...] = (RetentionSettings,)


class ScheduledSweep(BaseModel):
    """The schedule's input (template.yaml, RetentionSweepFunction's Daily event); both only logged."""

    model_config = ConfigDict(extra="ignore")

    schedule: str = ""
    scheduled_time: str = ""


class RunDates(BaseModel):
    """What the sweep reads of a run.json: any version of the record has these (the whole record is not
    parsed: a record of another version, which run_record refuses, must still age and go)."""

    model_config = ConfigDict(extra="ignore")

    created_at: datetime
    previous_run_id: str | None = None


class SweepRefused(RuntimeError):
    """The sweep cannot tell which run is published: it deletes nothing; the message says what to do."""


class RunsNotSwept(RuntimeError):
    """S3 refused to delete some runs' versions; the others were swept. The message names each run."""


@dataclass(frozen=True)
class RunFolder:
    """One run's folder as the version listing shows it."""

    run_id: str
    prefix: str  # <results prefix>runs/<run_id>/
    newest_change: datetime  # newest LastModified of any version or delete marker in it
    has_run_record: bool  # run.json's current version is an object (not a delete marker)


@dataclass(frozen=True)
class RunAge:
    """When a run was created, and the run it reuses embeddings from."""

    run_id: str
    created_at: datetime
    previous_run_id: str | None


class SweepPlan(BaseModel):
    """Which runs go and which stay (run ids, sorted)."""

    expired: list[str]
    kept_recent: list[str]
    kept_published: list[str]
    kept_reused: list[str]  # old, but a kept run reuses its embeddings


class SweepResult(BaseModel):
    """What a sweep did: counts and run ids, nothing else."""

    cutoff: str  # runs created before this (ISO 8601, UTC) were old
    published_run_id: str | None
    runs: int
    swept: list[str]
    versions_deleted: int
    kept_recent: int
    kept_published: list[str]
    kept_reused: list[str]
    left_for_next_sweep: list[str]  # old, not reached before the time margin


def runs_prefix(results_prefix: str) -> str:
    """<results prefix>runs/"""
    return f"{results_prefix}runs/"


def run_folders(s3: Any, bucket: str, results_prefix: str) -> list[RunFolder]:
    """Every run folder under <results prefix>runs/, from one listing of every version and delete marker
    (a folder holding only delete markers or noncurrent versions is a run too). Objects directly under
    runs/ belong to no run and are left alone."""
    prefix = runs_prefix(results_prefix)
    newest: dict[str, datetime] = {}
    with_record: set[str] = set()
    for version in list_versions(s3, bucket, prefix):
        run_id, separator, rest = version.key[len(prefix) :].partition("/")
        if not run_id or not separator:
            continue
        newest[run_id] = max(newest.get(run_id, version.last_modified), version.last_modified)
        if rest == RUN_JSON and version.is_latest and not version.is_delete_marker:
            with_record.add(run_id)
    return [
        RunFolder(run_id, f"{prefix}{run_id}/", newest[run_id], run_id in with_record)
        for run_id in sorted(newest)
    ]


def _utc(moment: datetime) -> datetime:
    """validate writes UTC with an offset; a time without one is taken as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_age(s3: Any, bucket: str, folder: RunFolder) -> RunAge:
    """The run's created_at and previous_run_id from its run.json; without a readable one (none, not
    JSON, no created_at), the folder's newest change, with a warning naming the run."""
    if folder.has_run_record:
        key = f"{folder.prefix}{RUN_JSON}"
        try:
            data = read_json_if_present(s3, bucket, key)
            if data is not None:
                dates = RunDates.model_validate(data)
                return RunAge(folder.run_id, _utc(dates.created_at), dates.previous_run_id)
        except (ValueError, ValidationError):  # not JSON, or no created_at / previous_run_id of its type
            logger.warning(
                "run.json has no readable created_at: the run's age counts from its newest change",
                extra={"run_id": folder.run_id, "key": key},
            )
    return RunAge(folder.run_id, folder.newest_change, None)


def published_run_id(s3: Any, bucket: str, results_prefix: str) -> str | None:
    """latest.json's run_id, or None when nothing is published.

    Stricter than published.read_published, which takes a latest.json that is not JSON as nothing
    published (retraining then replaces it): a sweep that did so would delete the published run. Here
    such a file, or one of another format, stops the sweep (SweepRefused)."""
    key = f"{results_prefix}{LATEST_JSON}"
    where = s3_uri(bucket, key)
    remedy = "the sweep deletes nothing until a retraining publishes a run (it rewrites latest.json)"
    try:
        data = read_json_if_present(s3, bucket, key)
    except ValueError:
        raise SweepRefused(f"{where} is not JSON, so the published run is unknown: {remedy}") from None
    if data is None:
        return None
    try:
        return parse_latest(data, where).run_id
    except InvalidInput as exc:
        raise SweepRefused(f"{exc.problems[0]} ({remedy})") from None


def plan_sweep(ages: Iterable[RunAge], published: str | None, cutoff: datetime) -> SweepPlan:
    """Runs created before `cutoff` expire, except the published run and the runs a kept run reuses."""
    ages = list(ages)
    recent = {age.run_id for age in ages if age.created_at >= cutoff}
    kept = recent | ({published} if published else set())
    reused = {age.previous_run_id for age in ages if age.run_id in kept and age.previous_run_id}
    old = {age.run_id for age in ages} - recent
    return SweepPlan(
        expired=sorted(old - kept - reused),
        kept_recent=sorted(recent),
        kept_published=sorted(old & kept),
        kept_reused=sorted((old & reused) - kept),
    )


@tracer.capture_method
def sweep_runs(
    s3: Any,
    bucket: str,
    results_prefix: str,
    run_history_days: int,
    now: datetime,
    deadline: float | None = None,
) -> SweepResult:
    """Delete for good every version of every run older than `run_history_days` at `now`, except those
    plan_sweep keeps. With a deadline (time.monotonic()), no run is started once it has passed: those left
    are named in the result, for the next sweep. RunsNotSwept when S3 refused some versions (after the
    other runs were swept); SweepRefused when latest.json cannot be read."""
    if run_history_days < MIN_RUN_HISTORY_DAYS:
        raise ValueError(f"run_history_days is {run_history_days}, at least {MIN_RUN_HISTORY_DAYS}")
    cutoff = now - timedelta(days=run_history_days)
    published = published_run_id(s3, bucket, results_prefix)
    folders = {folder.run_id: folder for folder in run_folders(s3, bucket, results_prefix)}
    plan = plan_sweep((run_age(s3, bucket, folder) for folder in folders.values()), published, cutoff)
    swept: list[str] = []
    left: list[str] = []
    failed: list[str] = []
    deleted = 0
    for run_id in plan.expired:
        if deadline is not None and time.monotonic() > deadline:
            left.append(run_id)
            continue
        try:
            deleted += delete_versions(s3, bucket, list_versions(s3, bucket, folders[run_id].prefix))
        except VersionsNotDeleted as exc:
            failed.append(f"run {run_id}: {exc}")
            continue
        swept.append(run_id)
    if failed:
        raise RunsNotSwept(
            f"{counted(len(failed), 'old run')} not deleted "
            f"({counted(len(swept), 'other was', 'others were')}, {counted(deleted, 'version')}):\n"
            + "\n".join(failed)
        )
    return SweepResult(
        cutoff=cutoff.isoformat(timespec="seconds"),
        published_run_id=published,
        runs=len(folders),
        swept=swept,
        versions_deleted=deleted,
        kept_recent=len(plan.kept_recent),
        kept_published=plan.kept_published,
        kept_reused=plan.kept_reused,
        left_for_next_sweep=left,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """EventBridge Scheduler entry point, once a day (environment: RetentionSettings)."""
    settings = RetentionSettings.from_env()
    trigger = parse(event=event, model=ScheduledSweep)
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - TIME_MARGIN_SECONDS
    result = sweep_runs(
        client("s3"),
        settings.bucket,
        settings.results_prefix,
        settings.run_history_days,
        now=datetime.now(UTC),
        deadline=deadline,
    )
    metrics.add_metric(name="RunsSwept", unit=MetricUnit.Count, value=len(result.swept))
    metrics.add_metric(name="RunVersionsDeleted", unit=MetricUnit.Count, value=result.versions_deleted)
    logger.info(
        "retention sweep",
        extra={"scheduled_time": trigger.scheduled_time, "run_history_days": settings.run_history_days}
        | result.model_dump(),
    )
    if result.left_for_next_sweep:
        logger.warning(
            "retention sweep ran out of time: the next sweep deletes the runs left",
            extra={"left": len(result.left_for_next_sweep)},
        )
    return result.model_dump()
