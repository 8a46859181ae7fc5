"""Write the job's files into model/: each rendered and checked first, then moved in atomically."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .contract import EMBEDDINGS_PKL, ENROLLMENT_CSV, METRICS_JSON, REJECTED_CSV, RULES_PY
from .embeddings_file import dump_embeddings
from .enrollment import Enrollment
from .enrollment_csv import parse_csv, render_csv
from .rules_file import render_rules

NOT_FOR_PRODUCTION = (
    "NOT FOR PRODUCTION: embeddings from random weights (weights=none), for tests only; "
    "they do not recognise anyone"
)


def render_rejected(enrollment: Enrollment, warning: str | None) -> str:
    """rejected.csv: identity, photo, reason code, and what to do about it."""
    buffer = io.StringIO()
    if warning:
        buffer.write(f"# {warning}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["identity", "photo", "reason", "message"])
    for row in enrollment.rejected:
        writer.writerow([row.identity, row.photo, row.reason, row.message])
    return buffer.getvalue()


def rules_data(enrollment: Enrollment, settings: Mapping[str, object], run: Mapping[str, object]) -> dict:
    """The decision rules as plain data."""
    return {
        "metric": "euclidean",
        "embeddings": "L2-normalised InceptionResnetV1 embeddings; identity means re-normalised",
        "accept_threshold": settings["accept_threshold"],
        "embedding_dim": run["embedding_dim"],
        "identities": [item.identity for item in enrollment.identities],
        "image_size": settings["image_size"],
        "margin": settings["margin"],
        "weights": run["weights"],
        "weights_sha256": run["weights_sha256"],
        "not_for_production": run["not_for_production"],
        "dataset_fingerprint": enrollment.dataset_fingerprint,
        "created_at": run["created_at"],
    }


def _write_atomic(directory: Path, name: str, payload: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
        Path(temporary).chmod(0o644)
        Path(temporary).replace(directory / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_report_files(model_dir: Path, enrollment: Enrollment, metrics: Mapping[str, object]) -> None:
    """rejected.csv and metrics.json: written whether or not an enrollment could be made."""
    model_dir.mkdir(parents=True, exist_ok=True)
    warning = NOT_FOR_PRODUCTION if metrics.get("not_for_production") else None
    _write_atomic(model_dir, REJECTED_CSV, render_rejected(enrollment, warning).encode())
    _write_atomic(
        model_dir, METRICS_JSON, (json.dumps(metrics, indent=2, ensure_ascii=False) + "\n").encode()
    )


def write_enrollment(
    model_dir: Path,
    enrollment: Enrollment,
    settings: Mapping[str, object],
    run: Mapping[str, object],
) -> None:
    """final_mean_embeddings.csv, rules.py and saved_embeddings.pkl, each verified before it is moved in."""
    model_dir.mkdir(parents=True, exist_ok=True)
    warning = NOT_FOR_PRODUCTION if run["not_for_production"] else None
    dimension = int(run["embedding_dim"])  # type: ignore[call-overload]
    table = render_csv(
        ((item.identity, item.num_images, item.mean) for item in enrollment.identities), dimension, warning
    )
    if [row[0] for row in parse_csv(table, dimension)] != [item.identity for item in enrollment.identities]:
        raise RuntimeError("final_mean_embeddings.csv did not parse back to the enrolled identities")
    rules = render_rules(rules_data(enrollment, settings, run))
    pickled = io.BytesIO()
    dump_embeddings(
        {**run, "warning": warning, "hyperparameters": dict(settings)}, enrollment.records, pickled
    )
    _write_atomic(model_dir, EMBEDDINGS_PKL, pickled.getvalue())
    _write_atomic(model_dir, RULES_PY, rules.encode())
    _write_atomic(model_dir, ENROLLMENT_CSV, table.encode())
