"""`facetrain runs --state STATE_DIR`: the runs a saved bucket holds, one line each, and which is published.

Every run leaves a folder `<results prefix>runs/<run id>/` (facetrain_lambdas.layout.RunLayout), the same
on AWS (docs/workflow.md, "Where results appear"): `run.json` (validate; `created_at`, the counts,
`no_change`), or `problems.json` alone when validate refused the run; `metrics.json` and
`quality_gate.json` once publish has checked the job's archive; `published.json` once the run was
published. `latest.json` at the results prefix names the published run. Each document is read with the
project's own reader (run_record.parse_run_record, published.parse_latest, contract.metrics); one that
cannot be read is shown as such, with why, and never stops the listing. The listing holds run ids,
times and counts only: no identity name (problems.json names people's photos: it is counted, not shown).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from facetrain.contract.counting import counted
from facetrain.contract.documents import DocumentError
from facetrain.contract.metrics import MetricsDocument, read_metrics
from facetrain.contract.names import METRICS_JSON
from facetrain_lambdas.layout import LATEST_JSON, PROBLEMS_JSON, PUBLISHED_JSON, QUALITY_GATE_JSON, RUN_JSON

from .bucket_state import MANIFEST, SAVED

MISSING = "-"


class SavedBucket:
    """The bucket a `facetrain run --state STATE_DIR` saved: STATE_DIR/bucket/<key> holds each key's current
    object, and the versions manifest (bucket_state.MANIFEST) each version's LastModified."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / SAVED
        self._modified: dict[str, str] | None = None

    def read(self, key: str) -> bytes | None:
        """The current object of `key`, or None when the bucket holds none."""
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def folders(self, prefix: str) -> list[str]:
        """The names of the folders right under `prefix` (a key prefix ending in /)."""
        folder = self.root / prefix
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def last_modified(self, key: str) -> datetime | None:
        """When the current version of `key` was written (None: a state saved before versions were kept)."""
        if self._modified is None:
            self._modified = {}
            try:
                keys = json.loads((self.root / MANIFEST).read_text(encoding="utf-8")).get("keys", {})
                for name, entries in keys.items():
                    self._modified[name] = entries[-1]["last_modified"]
            except (OSError, ValueError, AttributeError, LookupError, TypeError):
                pass  # no manifest, or not one this reader knows: the times are unknown, nothing else
        text = self._modified.get(key)
        return _moment(text) if text else None


@dataclass(frozen=True)
class RunEntry:
    """One run of the history."""

    run_id: str
    when: datetime | None  # run.json's created_at; for a refused run, when problems.json was written
    status: str  # current, published, no change, refused, failed, failed (quality gate), unreadable
    identities: int | None  # enrolled (metrics.json), else the identity folders validate counted
    photos: str | None  # "accepted/total" (metrics.json), else the photos validate counted
    threshold: float | None
    accuracy: float | None  # leave-one-out identification accuracy
    note: str | None = None  # what could not be read, or how many problems refused the run


@dataclass(frozen=True)
class RunHistory:
    runs: list[RunEntry]  # oldest first
    published: str | None  # the run id latest.json names
    published_at: str | None
    note: str | None = None  # why latest.json could not be read


def read_history(bucket: SavedBucket, results_prefix: str) -> RunHistory:
    """Every run folder under `<results_prefix>runs/`, with its status and figures, oldest first."""
    published, published_at, note = _published(bucket, results_prefix)
    runs = [
        _entry(bucket, f"{results_prefix}runs/{run_id}/", run_id, published)
        for run_id in bucket.folders(f"{results_prefix}runs/")
    ]
    oldest = datetime.min.replace(tzinfo=UTC)
    runs.sort(key=lambda run: (run.when or oldest, run.run_id))
    return RunHistory(runs=runs, published=published, published_at=published_at, note=note)


def _published(bucket: SavedBucket, results_prefix: str) -> tuple[str | None, str | None, str | None]:
    """(run id, published_at, None) of latest.json, (None, None, None) without one, or (None, None, why)."""
    body = bucket.read(f"{results_prefix}{LATEST_JSON}")
    if body is None:
        return None, None, None
    from facetrain_lambdas.errors import InvalidInput  # lazy: published.py builds the Lambdas' logger
    from facetrain_lambdas.published import parse_latest

    where = f"{results_prefix}{LATEST_JSON}"
    try:
        latest = parse_latest(json.loads(body), where)
    except ValueError as exc:
        return None, None, f"{where} is not JSON ({exc})"
    except InvalidInput as exc:
        return None, None, "; ".join(exc.problems)
    return latest.run_id, latest.published_at, None


def _entry(bucket: SavedBucket, folder: str, run_id: str, published: str | None) -> RunEntry:
    from facetrain_lambdas.run_record import parse_run_record  # lazy: the Lambdas' modules are slow

    body = bucket.read(f"{folder}{RUN_JSON}")
    if body is None:
        return _without_record(bucket, folder, run_id)
    where = f"{folder}{RUN_JSON}"
    try:
        record = parse_run_record(json.loads(body), where)
    except DocumentError as exc:  # names the file, what does not fit and what to do
        return RunEntry(run_id, None, "unreadable", None, None, None, None, note=str(exc))
    except ValueError as exc:
        note = f"{where} is not JSON ({exc}): it was not written by validate"
        return RunEntry(run_id, None, "unreadable", None, None, None, None, note=note)
    metrics, note = _metrics(bucket, folder)
    gate = _json(bucket.read(f"{folder}{QUALITY_GATE_JSON}"))
    if run_id == published:
        status = "current"
    elif bucket.read(f"{folder}{PUBLISHED_JSON}") is not None:
        status = "published"  # published once, replaced since
    elif record.no_change:
        status = "no change"
    elif isinstance(gate, dict) and gate.get("passed") is False:
        status = "failed (quality gate)"
    else:
        status = "failed"
    evaluation = metrics.evaluation if metrics else None
    accuracy = evaluation.identification_accuracy if evaluation else None
    if accuracy is None and isinstance(gate, dict) and isinstance(gate.get("identification_accuracy"), float):
        accuracy = gate["identification_accuracy"]
    return RunEntry(
        run_id=run_id,
        when=_moment(record.created_at),
        status=status,
        identities=metrics.identities if metrics else record.dataset.identities,
        photos=f"{metrics.images_accepted}/{metrics.images_total}" if metrics else str(record.dataset.images),
        threshold=evaluation.threshold if evaluation else None,
        accuracy=accuracy,
        note=note,
    )


def _without_record(bucket: SavedBucket, folder: str, run_id: str) -> RunEntry:
    """A run folder without run.json: refused by validate (problems.json), or left by something else."""
    key = f"{folder}{PROBLEMS_JSON}"
    problems = _json(bucket.read(key))
    if problems is None:
        note = "no run.json nor problems.json: validate never accepted nor refused this run id"
        return RunEntry(run_id, None, "unreadable", None, None, None, None, note=note)
    listed = problems.get("problems") if isinstance(problems, dict) else None
    count = counted(len(listed), "problem") if isinstance(listed, list) else "problems"
    note = f"{count} in {key}"
    return RunEntry(run_id, bucket.last_modified(key), "refused", None, None, None, None, note=note)


def _metrics(bucket: SavedBucket, folder: str) -> tuple[MetricsDocument | None, str | None]:
    """The run's metrics.json as publish stored it (None before publish checked the job's archive)."""
    body = bucket.read(f"{folder}{METRICS_JSON}")
    if body is None:
        return None, None
    try:
        return read_metrics(body.decode("utf-8", errors="replace")), None
    except DocumentError as exc:
        return None, f"{folder}{METRICS_JSON}: {exc}"


def _json(body: bytes | None) -> Any:
    try:
        return None if body is None else json.loads(body)
    except ValueError:
        return None


def _moment(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


COLUMNS = ("RUN ID", "WHEN (UTC)", "STATUS", "IDENTITIES", "PHOTOS", "THRESHOLD", "ACCURACY")


def history_lines(history: RunHistory) -> list[str]:
    """The listing: a header, one line per run (oldest first), then which run is published, then notes."""
    rows = [
        (
            run.run_id,
            run.when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if run.when else MISSING,
            run.status,
            MISSING if run.identities is None else str(run.identities),
            run.photos or MISSING,
            MISSING if run.threshold is None else f"{run.threshold:.4f}",
            MISSING if run.accuracy is None else f"{run.accuracy:.4f}",
        )
        for run in history.runs
    ]
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [COLUMNS, *rows]
    ]
    if history.published:
        lines.append(f"published: {history.published} (latest.json; published {history.published_at})")
    else:
        lines.append(f"published: none{f' ({history.note})' if history.note else ''}")
    lines += [f"note   {run.run_id}: {run.note}" for run in history.runs if run.note]
    return lines


def list_runs(state_dir: Path, results_prefix: str) -> tuple[int, list[str]]:
    """`facetrain runs`: (exit code, lines). 2 with what to do when STATE_DIR holds no saved bucket."""
    bucket = SavedBucket(state_dir)
    if not bucket.root.is_dir():
        return 2, [
            f"--state {state_dir} holds no saved bucket ({bucket.root} is missing): give the --state folder "
            "of `facetrain run`"
        ]
    history = read_history(bucket, results_prefix)
    if not history.runs:
        return 0, [f"no run in {state_dir} (nothing under {results_prefix}runs/)"]
    return 0, history_lines(history)
