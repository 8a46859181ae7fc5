"""Render the job's files (each checked by reading it back), then move them into model/ all at once."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .contract.embeddings_file import dump_embeddings
from .contract.enrollment_csv import parse_csv, render_csv
from .contract.hyperparameters import EMBEDDER_DESCRIPTIONS
from .contract.metrics import MetricsDocument
from .contract.names import EMBEDDINGS_PKL, ENROLLMENT_CSV, METRICS_JSON, REJECTED_CSV, RULES_PY
from .contract.rules_file import render_rules
from .contract.spreadsheet_cells import neutralised
from .enrollment import Enrollment
from .stopping import signals_deferred

NOT_FOR_PRODUCTION = (
    "NOT FOR PRODUCTION: embeddings from random weights (weights=none), for tests only; "
    "they do not recognise anyone"
)


def render_rejected(enrollment: Enrollment, warning: str | None) -> str:
    """rejected.csv: identity, photo, reason code, and what to do about it; the enrollment's rows, then the
    known strangers' (identity empty, photo `_strangers/…`). People open it in a spreadsheet: a cell that
    starts like a formula gets a leading `'` (contract.spreadsheet_cells says why here and not a refusal)."""
    buffer = io.StringIO()
    if warning:
        buffer.write(f"# {warning}\n")
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")  # no row starts with '#'
    writer.writerow(["identity", "photo", "reason", "message"])
    for row in enrollment.rejected_rows:
        writer.writerow([neutralised(cell) for cell in (row.identity, row.photo, row.reason, row.message)])
    return buffer.getvalue()


def rules_data(
    enrollment: Enrollment,
    settings: Mapping[str, object],
    run: Mapping[str, object],
    decision: Mapping[str, object],
) -> dict:
    """The decision rules as plain data; `decision` is the evaluation's threshold, its source and target."""
    return {
        "metric": "euclidean",
        "embedder": run["embedder"],
        "embeddings": EMBEDDER_DESCRIPTIONS[str(run["embedder"])],
        "accept_threshold": decision["threshold"],
        "threshold_source": decision["threshold_source"],
        "target_far": decision["target_far"],
        "embedding_dim": run["embedding_dim"],
        "identities": [item.identity for item in enrollment.identities],
        "image_size": settings["image_size"],
        "margin": settings["margin"],
        "weights": run["weights"],
        "weights_sha256": run["weights_sha256"],
        "model_files": run["model_files"],
        "not_for_production": run["not_for_production"],
        "dataset_fingerprint": enrollment.dataset_fingerprint,
        "created_at": run["created_at"],
    }


def render_reports(enrollment: Enrollment, metrics: Mapping[str, object]) -> dict[str, bytes]:
    """rejected.csv and metrics.json: written whether or not an enrollment could be made. metrics.json is
    checked against its model first (MetricsDocument: what publish reads), so a job never writes one its
    readers refuse."""
    MetricsDocument.model_validate(metrics)
    warning = NOT_FOR_PRODUCTION if metrics.get("not_for_production") else None
    return {
        REJECTED_CSV: render_rejected(enrollment, warning).encode(),
        METRICS_JSON: (json.dumps(metrics, indent=2, ensure_ascii=False) + "\n").encode(),
    }


def render_enrollment(
    enrollment: Enrollment,
    settings: Mapping[str, object],
    run: Mapping[str, object],
    decision: Mapping[str, object],
) -> dict[str, bytes]:
    """final_mean_embeddings.csv, rules.py (accept threshold from `decision`, the evaluation's summary) and
    saved_embeddings.pkl, each verified by reading it back."""
    warning = NOT_FOR_PRODUCTION if run["not_for_production"] else None
    dimension = int(run["embedding_dim"])  # type: ignore[call-overload]
    table = render_csv(
        ((item.identity, item.num_images, item.mean) for item in enrollment.identities), dimension, warning
    )
    if [row[0] for row in parse_csv(table, dimension)] != [item.identity for item in enrollment.identities]:
        raise RuntimeError("final_mean_embeddings.csv did not parse back to the enrolled identities")
    pickled = io.BytesIO()
    dump_embeddings(
        {**run, "warning": warning, "hyperparameters": dict(settings)},
        enrollment.records,
        pickled,
        strangers=enrollment.strangers.records,  # apart from the records: never enrolled, kept for reuse
    )
    return {
        EMBEDDINGS_PKL: pickled.getvalue(),
        RULES_PY: render_rules(rules_data(enrollment, settings, run, decision)).encode("ascii"),
        ENROLLMENT_CSV: table.encode(),
    }


class OutputsNotWritten(Exception):
    """The outputs could not be written (a full disk, a read-only folder); model/ holds none of them."""


def _not_written(model_dir: Path, name: str, exc: OSError) -> OutputsNotWritten:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        usage = shutil.disk_usage(model_dir)
        return OutputsNotWritten(
            f"The disk holding {model_dir} is full ({usage.free} bytes free of {usage.total}) while writing "
            f"{name}: no output was written. Give the training job more storage (VolumeSizeInGB: the "
            "stack's TrainingVolumeSizeGB parameter)."
        )
    return OutputsNotWritten(
        f"{name} could not be written to {model_dir} ({exc.strerror or exc}): no output was written"
    )


def write_outputs(model_dir: Path, files: Mapping[str, bytes]) -> None:
    """Write the files under temporary names, then move them all into model/ with SIGTERM deferred, so
    that model/ holds either none or all of them. Raises OutputsNotWritten, naming the file and the
    disk, when they cannot be written."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, str]] = []
    try:
        for name, payload in files.items():
            try:
                handle, temporary = tempfile.mkstemp(dir=model_dir, prefix=f".{name}.")
                staged.append((Path(temporary), name))
                with os.fdopen(handle, "wb") as out:
                    out.write(payload)
                Path(temporary).chmod(0o644)
            except OSError as exc:
                raise _not_written(model_dir, name, exc) from None
        with signals_deferred():
            for temporary, name in staged:
                temporary.replace(model_dir / name)
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
