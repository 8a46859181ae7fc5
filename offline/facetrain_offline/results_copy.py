"""The published results in the local bucket: which run they are, whether latest.json names only files the
bucket holds, and copying them out into the output folder, laid out as the bucket is (RunLayout: the
current files and latest.json at the top, the run's own files under runs/<run id>/).

A run that did not publish (refused by validate, failed in its job or at the quality gate, stopped) leaves
its evidence in the output folder at the same place, runs/<run id>/ (never at the top, where the published
results are): `copy_run_evidence`. `evidence_lines` are the terminal's last lines pointing at them."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facetrain.contract.documents import DocumentError
from facetrain.contract.names import METRICS_JSON, REJECTED_CSV, REPORT_HTML
from facetrain.contract.result_files import result_file_cap
from facetrain_lambdas.layout import LATEST_JSON, PROBLEMS_JSON, QUALITY_GATE_JSON, RunLayout

if TYPE_CHECKING:
    from facetrain_lambdas.published import LatestRecord


def read_latest(s3: Any, bucket: str, results_prefix: str) -> LatestRecord | None:
    """The published run's latest.json, or None when nothing is published."""
    latest_key = f"{results_prefix}{LATEST_JSON}"
    try:
        data = json.loads(s3.get_object(Bucket=bucket, Key=latest_key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None
    from facetrain_lambdas.published import parse_latest  # lazy: the Lambdas' modules read env at import

    return parse_latest(data, f"s3://{bucket}/{latest_key}")


def published_keys(latest: LatestRecord, bucket: str, results_prefix: str) -> list[str]:
    """The keys latest.json names (the current files, the run's own files), latest.json itself last."""
    layout = RunLayout(bucket=bucket, results_prefix=results_prefix, run_id=latest.run_id)
    return [
        *(layout.current_file_key(name) for name in latest.current_files),
        *(layout.run_file_key(name) for name in latest.run_files),
        layout.latest_key,
    ]


def missing_published_files(s3: Any, bucket: str, results_prefix: str) -> list[str]:
    """The keys latest.json names that the bucket does not hold ([] when nothing is published)."""
    latest = read_latest(s3, bucket, results_prefix)
    if latest is None:
        return []
    held = {
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=results_prefix)
        for obj in page.get("Contents", [])
    }
    return [key for key in published_keys(latest, bucket, results_prefix) if key not in held]


def copy_results(s3: Any, bucket: str, results_prefix: str, out_dir: Path) -> list[str]:
    """The current files, the published run's own files and latest.json (last: an interrupted copy never
    leaves a latest.json naming files that are not there), into out_dir at the places RunLayout gives them
    under the results prefix; the paths copied (relative to out_dir)."""
    latest = read_latest(s3, bucket, results_prefix)
    if latest is None:
        return []
    copied: list[str] = []
    for key in published_keys(latest, bucket, results_prefix):
        relative = key.removeprefix(results_prefix)
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
        copied.append(relative)
    return copied


# What a run that did not publish leaves for its operator, in the order the terminal points at it, with
# what each holds (None: copied, not pointed at). The enrollment files of an unpublished run stay in the
# bucket: in the output folder they could be taken for results.
EVIDENCE_FILES: dict[str, str | None] = {
    REPORT_HTML: "the run's report",
    REJECTED_CSV: "each photo not used, and why",
    PROBLEMS_JSON: "every problem that refused the run",
    QUALITY_GATE_JSON: "the quality gate's decision",
    METRICS_JSON: None,
}
ARCHIVE_MEMBERS = (REPORT_HTML, REJECTED_CSV, METRICS_JSON)  # what the job writes, even when it fails


@dataclass(frozen=True)
class FinishedExecution:
    """What copy_run_evidence needs of one execution (DescribeExecution's name, input and startDate)."""

    name: str
    run_id: str
    started: datetime  # timezone-aware

    @classmethod
    def described(cls, execution: dict[str, Any]) -> FinishedExecution:
        """From DescribeExecution: the run id is the input's `run_id`, else the execution name (validate's
        default, run_request.resolve_request)."""
        try:
            given = json.loads(execution.get("input") or "{}")
        except ValueError:
            given = {}
        run_id = given.get("run_id") if isinstance(given, dict) else None
        return cls(
            name=execution["name"],
            run_id=run_id if isinstance(run_id, str) and run_id else execution["name"],
            started=execution["startDate"],
        )


def copy_run_evidence(
    s3: Any, bucket: str, results_prefix: str, execution: FinishedExecution, out_dir: Path
) -> list[str]:
    """The evidence of a run that did not publish (EVIDENCE_FILES: problems.json, quality_gate.json, and the
    report, rejected.csv and metrics.json the job wrote), into out_dir/runs/<run id>/; the paths copied,
    relative to out_dir. A run id that another execution's run.json claims is not this run's (validate
    refused it as reused): nothing is copied; of the rest, only objects written since the execution started
    (to the second: S3's LastModified) are its own. A file publish stored under runs/<run id>/ is taken from
    there, else from the newest training/<job>/output/model.tar.gz (SageMaker, and the local backend,
    upload model/ whether the job succeeded, failed or was stopped): its members of those names, regular
    files within their cap (contract.result_files), streamed to disk; an archive that cannot be read adds
    nothing (publish named it in the run's failure)."""
    from facetrain_lambdas.run_request import RUN_ID  # lazy: the Lambdas' modules are slow to import

    if not RUN_ID.fullmatch(execution.run_id):  # validate refused it: no folder of it exists
        return []
    layout = RunLayout(bucket=bucket, results_prefix=results_prefix, run_id=execution.run_id)
    if _claimed_by_another(s3, layout, execution.name):
        return []
    since = execution.started.replace(microsecond=0)  # S3's LastModified has whole seconds
    fresh = {
        obj["Key"]: obj["LastModified"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=layout.run_prefix)
        for obj in page.get("Contents", [])
        if obj["LastModified"] >= since
    }
    folder = out_dir / "runs" / execution.run_id
    found = set()
    for name in EVIDENCE_FILES:
        if (key := layout.run_file_key(name)) in fresh:
            folder.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(folder / name))
            found.add(name)
    archives = sorted(
        (modified, key)
        for key, modified in fresh.items()
        if key.startswith(f"{layout.run_prefix}training/") and key.endswith("/output/model.tar.gz")
    )
    wanted = [name for name in ARCHIVE_MEMBERS if name not in found]
    if archives and wanted:
        found |= _extract_members(s3, bucket, archives[-1][1], wanted, folder)
    return [f"runs/{execution.run_id}/{name}" for name in EVIDENCE_FILES if name in found]


def _claimed_by_another(s3: Any, layout: RunLayout, execution: str) -> bool:
    """Whether the run folder's run.json belongs to another execution (or cannot be read: validate then
    refused the run id as taken)."""
    from facetrain_lambdas.run_record import read_run_record_if_present  # lazy, as above

    try:
        record = read_run_record_if_present(s3, layout)
    except DocumentError:
        return True
    return record is not None and record.request.execution != execution


def _extract_members(s3: Any, bucket: str, key: str, names: list[str], folder: Path) -> set[str]:
    """The members of the model.tar.gz at `key` named `names` (`name` or `./name`), regular files within
    their cap, written into folder (through a temporary name: a member cut short leaves nothing); the names
    written. publish's reader (artifact.read_model_archive) is not used: it refuses an archive without the
    enrollment files, which a failed job's is."""
    written: set[str] = set()
    with tempfile.TemporaryFile() as archive:
        s3.download_fileobj(bucket, key, archive)
        archive.seek(0)
        try:
            with tarfile.open(fileobj=archive, mode="r:*") as tar:
                for member in tar:
                    name = member.name.removeprefix("./")
                    if name not in names or name in written or not member.isfile():
                        continue
                    if member.size > result_file_cap(name):
                        continue
                    folder.mkdir(parents=True, exist_ok=True)
                    partial = folder / f".{name}.partial"
                    try:
                        with tar.extractfile(member) as data, partial.open("wb") as target:  # type: ignore[union-attr]
                            shutil.copyfileobj(data, target)
                        partial.replace(folder / name)
                    finally:
                        partial.unlink(missing_ok=True)
                    written.add(name)
        except (tarfile.TarError, EOFError, OSError):
            pass  # what was written stays; the rest of an unreadable archive adds nothing
    return written


def evidence_lines(out_dir: Path, copied: list[str]) -> list[str]:
    """The terminal's last lines: where the run's report, rejected.csv, problems and decision are in
    out_dir (the files of `copied`, relative paths, that EVIDENCE_FILES names and that are still there: a
    forget's scan may have deleted one), one line each."""
    lines = []
    for name, what in EVIDENCE_FILES.items():
        for relative in copied if what else []:
            here = (out_dir / relative).is_file()
            if here and relative.startswith("runs/") and relative.rsplit("/", 1)[-1] == name:
                lines.append(f"see    {out_dir / relative}: {what}")
    return lines
