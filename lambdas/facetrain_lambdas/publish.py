"""publish: verify the job's model.tar.gz, store the run's files, apply the quality gate, then update the
current results.

Order matters: nothing at the results prefix root changes until the archive is verified, the run's own
copy is stored, the quality gate passed and the execution found still RUNNING; latest.json is written last
and is the pointer consumers should follow. Every published run also keeps its record as
runs/<run_id>/published.json.

The stop check: StopExecution and the state machine's timeout do not cancel a Lambda invocation under way,
so an execution stopped (ABORTED), timed out or failed while Publish ran would still publish. Publish asks
Step Functions for its own execution's status just before the first write that changes what is current,
and publishes nothing once it is no longer RUNNING (ExecutionStopped).
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from facetrain.contract.counting import counted
from facetrain.contract.metrics import MetricsDocument
from facetrain.contract.names import REJECTED_CSV, REPORT_HTML
from pydantic import BaseModel, Field, model_validator

from .artifact import VerifiedResults, read_model_archive, verify_results
from .clients import client
from .erasure_record import DEFAULT_PREFIX as ERASURE_PREFIX
from .erasure_record import read_records, subjects_in
from .errors import ResultsInvalid, transient_aws_errors
from .function_settings import FunctionSettings
from .layout import CURRENT_FILES, PUBLISHED_JSON, QUALITY_GATE_JSON, RunLayout, s3_uri
from .observability import CORRELATION_ID_PATH, logger, metrics, tracer
from .published import LatestRecord, read_published
from .quality_gate import QualityGateDecision, QualityGateFailed, fpir_upper_bound, gate_problems
from .run_record import RunPointer, RunRecord, load_run_record
from .s3_json import read_json, write_json

CONTENT_TYPES = {
    ".csv": "text/csv",
    ".py": "text/x-python",
    ".pkl": "application/octet-stream",
    ".html": "text/html; charset=utf-8",
}


class JobState(BaseModel):
    """The poll result the state machine carries."""

    training_job_name: str
    model_artifacts: str
    billable_seconds: int = 0


class PublishEvent(BaseModel):
    """Payload from the state machine: the execution's name ($$.Execution.Name) and ARN
    ($$.Execution.Id), the run pointer and the polled job."""

    execution: str
    execution_arn: str = Field(pattern=r"^arn:[\w-]+:states:[\w-]+:\d{12}:execution:[^:]+:[^:]+$")
    run: RunPointer
    job: JobState

    @model_validator(mode="after")
    def _arn_names_the_execution(self) -> PublishEvent:
        """The stop check asks about execution_arn: it must be the execution the event names."""
        if self.execution_arn.rsplit(":", 1)[-1] != self.execution:
            raise ValueError(f"execution_arn {self.execution_arn!r} is not execution {self.execution!r}")
        return self


class ExecutionStopped(Exception):
    """The execution was no longer RUNNING at Publish's commit point: nothing was published (the run's
    own files are stored under runs/<run_id>/; the current files and latest.json are unchanged)."""


class PersonBeingForgotten(Exception):
    """The run enrolls a person an erasure is forgetting (or forgot after the run was validated)."""


class PublishSettings(FunctionSettings):
    """Environment of the publish function (template.yaml)."""

    erasure_prefix: str = Field(ERASURE_PREFIX, validation_alias="ERASURE_RECORDS_PREFIX")


class PublishResult(BaseModel):
    """Pointers to the published results and the text of the success notification."""

    results_uri: str
    latest_key: str
    summary: str


def _artifact_key(layout: RunLayout, uri: str) -> str:
    """The key of model.tar.gz, refused unless it lies in this run's training output."""
    prefix = f"s3://{layout.bucket}/"
    key = uri.removeprefix(prefix)
    if not uri.startswith(prefix) or not key.startswith(f"{layout.run_prefix}training/"):
        raise ResultsInvalid(f"model artefact {uri!r} is not under {layout.training_output_uri}")
    return key


def fetch_and_verify(s3: Any, layout: RunLayout, artifact_uri: str) -> VerifiedResults:
    """Download model.tar.gz (spooled to /tmp) and verify it."""
    key = _artifact_key(layout, artifact_uri)
    with tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024) as archive:
        with transient_aws_errors(f"downloading {artifact_uri}"):
            s3.download_fileobj(layout.bucket, key, archive)
        archive.seek(0)
        return verify_results(read_model_archive(archive))


def _content_type(name: str) -> str:
    return next((kind for suffix, kind in CONTENT_TYPES.items() if name.endswith(suffix)), "application/json")


def _strangers_line(metrics_: MetricsDocument) -> str | None:
    """The known strangers (face_imgs/_strangers/) in the notification: how many were searched and how
    many the published threshold accepts; None without any."""
    strangers = metrics_.strangers
    if strangers is None or not strangers.photos:
        return None
    open_set = metrics_.evaluation.open_set if metrics_.evaluation else None
    searched = open_set.known_strangers if open_set else None
    accepted = f", {searched.errors} of them accepted at the threshold" if searched else ""
    rejected = f" ({strangers.rejected} rejected)" if strangers.rejected else ""
    searched_photos = counted(strangers.used, "photo")
    return f"Known strangers: {searched_photos} searched{accepted}{rejected}; never enrolled."


def _left_out_lines(metrics_: MetricsDocument) -> list[str]:
    """The identities the run left out (not enrolled), one line each with its photos' reasons; [] when
    none. They are named here because the notification is an e-mail to the operators, who must act on it,
    as a failure's reason names the photo to fix; the Lambda never logs this text."""
    excluded = metrics_.identities_excluded
    if not excluded:
        return []
    return [
        f"Left out, not enrolled: {counted(len(excluded), 'identity', 'identities')} (the others were "
        "published; set require_all_identities=true to fail such a run instead):",
        *(f"- {identity}: {why}" for identity, why in excluded.items()),
        "",
    ]


def _training_job_line(record: RunRecord, job: JobState, metrics_: MetricsDocument) -> str:
    """Where the job ran, from what reports it: the device from the job itself (metrics.json), billable
    seconds from DescribeTrainingJob. A completed SageMaker job always reports billable time; none (0) is
    a job SageMaker did not run on its instances (`facetrain run`'s local process on this machine), so the
    requested instances are named as requested only, never as where it ran."""
    device = "CPU" if metrics_.device == "cpu" else f"GPU ({metrics_.device})"
    instances = f"{record.request.instance_count} x {record.request.instance_type}"
    if job.billable_seconds:
        return (
            f"Training job: {job.training_job_name} on {instances}, ran on {device}: "
            f"{counted(job.billable_seconds, 'billable second')}."
        )
    return (
        f"Training job: {job.training_job_name} ran on {device} with no billable time reported: not on "
        f"SageMaker's instances (a local run, e.g. `facetrain run`); {instances} was requested."
    )


def summary_text(record: RunRecord, job: JobState, results: VerifiedResults, layout: RunLayout) -> str:
    """The success notification."""
    metrics_ = results.metrics
    left_out = len(metrics_.identities_excluded)
    lines = [
        f"facetrain run {record.request.run_id} published "
        f"{counted(len(results.identities), 'identity', 'identities')}"
        + (f"; {left_out} left out, named below." if left_out else "."),
        "",
        f"Photos: {metrics_.images_accepted} of {metrics_.images_total} used, "
        f"{metrics_.images_rejected} rejected "
        f"(see {s3_uri(layout.bucket, layout.run_file_key(REJECTED_CSV))}).",
        _training_job_line(record, job, metrics_),
        f"Current results: {s3_uri(layout.bucket, layout.results_prefix)} ({', '.join(CURRENT_FILES)}).",
        f"This run's files: {s3_uri(layout.bucket, layout.run_prefix)}",
        f"Run fingerprint (photos, config files and settings): {record.run_fingerprint}",
    ]
    if line := _strangers_line(metrics_):
        lines.insert(3, line)
    if record.dataset.skipped:
        lines.insert(
            3,
            f"Left out at validation: {counted(record.dataset.skipped, 'object')} under the images prefix "
            f"(see warnings in {s3_uri(layout.bucket, layout.run_record_key)}).",
        )
    if results.not_for_production:
        lines.insert(1, "WARNING: random weights (weights=none): NOT FOR PRODUCTION.")
    after_headline = lines.index("") + 1
    lines[after_headline:after_headline] = _left_out_lines(metrics_)
    return "\n".join(lines)


def check_quality_gate(
    s3: Any, record: RunRecord, results: VerifiedResults, latest: LatestRecord | None
) -> QualityGateDecision:
    """Apply the run's quality gate against the published run (`latest`); record the decision under
    runs/<run_id>/; raise QualityGateFailed."""
    layout = record.layout
    evaluation = results.metrics.evaluation.model_dump() if results.metrics.evaluation else None
    gate = record.quality_gate
    published = latest.identification_accuracy if latest else None
    problems = gate_problems(gate, evaluation, published)
    decision = QualityGateDecision(
        run_id=record.request.run_id,
        gate=gate,
        identification_accuracy=(evaluation or {}).get("identification_accuracy"),
        published_identification_accuracy=published,
        fpir_upper_95=fpir_upper_bound(evaluation),
        passed=not problems,
        problems=problems,
    )
    write_json(s3, layout.bucket, layout.run_file_key(QUALITY_GATE_JSON), decision.model_dump(mode="json"))
    if problems:
        metrics.add_metric(name="RunsRefusedByQualityGate", unit=MetricUnit.Count, value=1)
        raise QualityGateFailed(
            f"run {record.request.run_id} was not published: " + "; ".join(problems) + ". Its files, report "
            f"included, are under {s3_uri(layout.bucket, layout.run_prefix)}; the published results are "
            "unchanged."
        )
    return decision


def refuse_forgotten_people(
    s3: Any, layout: RunLayout, erasure_prefix: str, record: RunRecord, results: VerifiedResults
) -> None:
    """Raise PersonBeingForgotten, before anything of the run is stored, when the run holds a person of an
    erasure under way or completed after the run was validated (erasure_record.subjects_in): enrolled, or
    with a photo in its manifest (a rejected photo is named in rejected.csv and metrics.json). A retrain
    must never republish someone a forget is erasing."""
    records = list(read_records(s3, layout.bucket, erasure_prefix, skipped=warn_not_a_receipt))
    if not records:
        return
    people = set(results.identities) | manifest_folders(read_json(s3, layout.bucket, record.manifest_key))
    forbidding = subjects_in(records, people, record.created_at)
    if forbidding:
        metrics.add_metric(name="PublishesRefusedForErasure", unit=MetricUnit.Count, value=1)
        raise PersonBeingForgotten(
            f"run {layout.run_id} was validated before a forget of a person it enrolls "
            f"({', '.join(s3_uri(layout.bucket, key) for key in forbidding)}): nothing was published and "
            "nothing of it stored beside its training output under "
            f"{s3_uri(layout.bucket, layout.run_prefix)}. Retrain: the photos of the people forgotten are "
            "gone."
        )


def warn_not_a_receipt(key: str, problem: str) -> None:
    logger.warning("not an erasure receipt: skipped", extra={"key": key, "problem": problem})


def manifest_folders(manifest: object) -> set[str]:
    """The person folders of a run's photo manifest ([{"prefix": …}, "<person>/<photo>", …])."""
    entries = manifest[1:] if isinstance(manifest, list) else []
    return {e.split("/", 1)[0] for e in entries if isinstance(e, str) and "/" in e}


def ensure_still_running(sfn: Any, event: PublishEvent, layout: RunLayout) -> None:
    """The commit point: raise ExecutionStopped unless the execution is still RUNNING (Step Functions'
    DescribeExecution). A stop that takes effect after this check finds Publish writing for a moment more:
    the current files and latest.json, which it then completes."""
    with transient_aws_errors(f"describing execution {event.execution_arn}"):
        status = sfn.describe_execution(executionArn=event.execution_arn)["status"]
    if status != "RUNNING":
        metrics.add_metric(name="PublishesStopped", unit=MetricUnit.Count, value=1)
        raise ExecutionStopped(
            f"execution {event.execution} is {status}: it was stopped before run {layout.run_id}'s results "
            "became current: nothing published. The current results and latest.json are unchanged; the "
            f"run's own files are under {s3_uri(layout.bucket, layout.run_prefix)}."
        )


@tracer.capture_method
def publish_run(
    s3: Any,
    sfn: Any,
    event: PublishEvent,
    erasure_prefix: str = ERASURE_PREFIX,
    now: datetime | None = None,
) -> PublishResult:
    """Verify, refuse an enrollment of people being forgotten, store the run's files, pass the quality
    gate, check the execution still runs, then update the current files and latest.json (ExecutionStopped:
    nothing current changed)."""
    record = load_run_record(s3, event.run)
    layout = record.layout
    results = fetch_and_verify(s3, layout, event.job.model_artifacts)
    refuse_forgotten_people(s3, layout, erasure_prefix, record, results)
    for name, body in sorted(results.files.items()):
        with transient_aws_errors(f"writing {name}"):
            s3.put_object(
                Bucket=layout.bucket,
                Key=layout.run_file_key(name),
                Body=body,
                ContentType=_content_type(name),
            )
    latest_before = read_published(s3, layout)
    gate = check_quality_gate(s3, record, results, latest_before)
    ensure_still_running(sfn, event, layout)
    # Verified, stored, through the gate and not stopped: from here on the current results change.
    current = [name for name in (*CURRENT_FILES, REPORT_HTML) if name in results.files]
    for name in current:
        with transient_aws_errors(f"updating the current {name}"):
            s3.copy_object(
                Bucket=layout.bucket,
                Key=layout.current_file_key(name),
                CopySource={"Bucket": layout.bucket, "Key": layout.run_file_key(name)},
                MetadataDirective="COPY",
            )
    evaluation = results.metrics.evaluation
    latest = LatestRecord(
        run_id=record.request.run_id,
        previous_run_id=latest_before.run_id if latest_before else None,
        execution=event.execution,
        published_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        training_job_name=event.job.training_job_name,
        run_fingerprint=record.run_fingerprint,
        identities=len(results.identities),
        images_accepted=results.metrics.images_accepted,
        images_rejected=results.metrics.images_rejected,
        identification_accuracy=evaluation.identification_accuracy if evaluation else None,
        accept_threshold=evaluation.threshold if evaluation else None,
        quality_gate=gate,
        not_for_production=results.not_for_production,
        run_files={name: layout.run_file_key(name) for name in sorted(results.files)},
        current_files={name: layout.current_file_key(name) for name in current},
    ).model_dump(mode="json")
    # Every published run keeps its own record (runs/<run_id>/published.json); latest.json points to one.
    write_json(s3, layout.bucket, layout.run_file_key(PUBLISHED_JSON), latest)
    write_json(s3, layout.bucket, layout.latest_key, latest)
    metrics.add_metric(name="RunsPublished", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="IdentitiesPublished", unit=MetricUnit.Count, value=len(results.identities))
    metrics.add_metric(name="BillableSeconds", unit=MetricUnit.Seconds, value=event.job.billable_seconds)
    logger.info(
        "results published", extra={"run_id": record.request.run_id, "identities": len(results.identities)}
    )
    return PublishResult(
        results_uri=s3_uri(layout.bucket, layout.results_prefix),
        latest_key=layout.latest_key,
        summary=summary_text(record, event.job, results, layout),
    )


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler(capture_response=False)  # the summary names left-out identities: not in X-Ray
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point (environment: PublishSettings)."""
    payload = parse(event=event, model=PublishEvent)
    logger.append_keys(run_id=payload.run.run_id)
    settings = PublishSettings.from_env()
    return publish_run(client("s3"), client("stepfunctions"), payload, settings.erasure_prefix).model_dump()


# The environment this handler reads (template test: every function gets each required variable).
SETTINGS: tuple[type[FunctionSettings], ...] = (PublishSettings,)
