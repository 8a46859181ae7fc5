"""metrics.json and the facts of a run: the one place the job builds them (the contract's MetricsDocument
checks the document when it is written, outputs.render_reports)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .contract.hyperparameters import DLIB_RESNET, EMBEDDING_DIMS, TORCH_RUNTIME
from .contract.metrics import FORMAT as METRICS_FORMAT
from .contract.metrics import VERSION as METRICS_VERSION
from .cpu_threads import intra_op_threads
from .outputs import NOT_FOR_PRODUCTION

if TYPE_CHECKING:
    from .job_state import Enrolled, JobInputs

# Bump when decoding, detection or cropping changes embeddings (2: big faces cropped from a reduced decode).
PREPROCESSING_VERSION = 2


def library_versions(embedder: str, runtime: str) -> dict[str, str]:
    """Versions of the libraries that made the embeddings: the runtime's (ONNX Runtime's CPU or GPU
    build; or torch and facenet-pytorch), and dlib's for dlib-resnet (its wheel is `dlib-bin`, or `dlib`
    built from source)."""
    names = ["facetrain", "pillow", "numpy"]
    if runtime == TORCH_RUNTIME:
        names += ["facenet-pytorch", "torch"]
    else:
        names += ["onnxruntime", "onnxruntime-gpu"]
    if embedder == DLIB_RESNET:
        names += ["dlib-bin", "dlib", "face_recognition_models"]
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def images_per_second(examined: int, slowest_loop: float) -> float | None:
    """Photos examined now (decoded, searched for a face, embedded or rejected) per second of the slowest
    host's photo loop; None when no photo was examined (every embedding reused or resumed: a rate over
    photos that were only hashed would be a number of nothing, 4.5e10 in issue 25)."""
    if not examined or slowest_loop <= 0:
        return None
    return round(examined / slowest_loop, 3)


def run_facts(inputs: JobInputs, fingerprint: str) -> dict[str, object]:
    """What made this enrollment (rules.py and the pickle's metadata carry it)."""
    model = inputs.model
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "embedder": model.embedder,
        "weights": model.label,
        "weights_sha256": model.sha256,
        "model_files": model.digests,
        "not_for_production": inputs.settings.not_for_production,
        "embedding_dim": EMBEDDING_DIMS[model.embedder],
        "preprocessing_version": PREPROCESSING_VERSION,
        "embedding_fingerprint": fingerprint,
        "device": str(inputs.device),
        "versions": library_versions(model.embedder, inputs.settings.runtime),
    }


def metrics_document(
    inputs: JobInputs,
    enrolled: Enrolled,
    run: Mapping[str, object],
    timings: Mapping[str, float],
    evaluation: Mapping[str, object] | None,
) -> dict[str, object]:
    """metrics.json (the contract's MetricsDocument, checked when written): the one place it is built."""
    enrollment, settings = enrolled.enrollment, inputs.settings
    metrics: dict[str, object] = {
        "format": METRICS_FORMAT,
        "version": METRICS_VERSION,
        "status": "succeeded" if enrollment.identities else "failed",
        "run_id": inputs.run_id,
        "not_for_production": settings.not_for_production,
        "warning": NOT_FOR_PRODUCTION if settings.not_for_production else None,
        "images_total": enrollment.images_total,
        "images_accepted": enrollment.images_accepted,
        "images_rejected": len(enrollment.rejected),
        "rejections_by_reason": enrollment.rejections_by_reason,
        "identities": len(enrollment.identities),
        "identities_excluded": enrollment.excluded,
        "files_skipped": len(enrollment.skipped),
        "embedder": run["embedder"],
        "weights": run["weights"],
        "weights_sha256": run["weights_sha256"],
        "model_files": run["model_files"],
        "embedding_dim": run["embedding_dim"],
        "device": run["device"],
        "runtime": settings.runtime,
        "inference_threads": intra_op_threads(),
        "photos_examined": enrolled.examined,
        "images_per_second": images_per_second(enrolled.examined, enrolled.slowest_loop),
        "embeddings_computed": enrolled.computed,
        "embeddings_reused": enrolled.reused,
        "hosts": inputs.cluster.size,
        "dataset_fingerprint": enrollment.dataset_fingerprint,
        "hyperparameters": settings.model_dump(mode="json"),
        "created_at": run["created_at"],
        "versions": run["versions"],
        "strangers": {  # the known strangers, apart from the enrollment's images_* (contract.metrics)
            "photos": enrollment.strangers.photos,
            "used": len(enrollment.strangers.records),
            "rejected": len(enrollment.strangers.rejected),
            "rejections_by_reason": enrollment.strangers.rejections_by_reason,
        },
    }
    if evaluation is not None:
        metrics["evaluation"] = evaluation
    metrics["timings"] = dict(timings)
    return metrics
