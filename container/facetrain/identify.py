"""`facetrain identify PHOTO… --results DIR`: who is in these photos, per a published enrollment.

The photos go through the training job's own pipeline (photos.decode_photo → FaceEncoder.detect/crop/
embed, via PhotoPipeline) with the settings the job used, read back from the results: rules.py (threshold,
image size, margin, weights and their sha256) and saved_embeddings.pkl's metadata (every other setting,
the seed of weights=none included). Each embedding is compared with final_mean_embeddings.csv.

Exit codes: 0 every photo was examined (a photo without a usable face is an answer: identity null and an
error); 1 some photo could not be read (missing, unreadable, not an image, too large), its line says why;
2 bad usage or unusable results (a file missing or invalid, weights absent or different); nothing printed
on stdout then.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .contract.embeddings_file import EmbeddingsFileError, load_embeddings
from .contract.enrollment_csv import EnrollmentCsvError, parse_csv
from .contract.hyperparameters import Hyperparameters
from .contract.names import EMBEDDINGS_PKL, ENROLLMENT_CSV, RULES_PY
from .contract.rules_file import RulesError, load_rules
from .faces import DeviceError, FaceEncoder, choose_device
from .job_metrics import PREPROCESSING_VERSION
from .model_files import WeightsError, resolve_model
from .outputs import NOT_FOR_PRODUCTION
from .photos import PhotoRef
from .pipeline import Accepted, PhotoPipeline, Rejected

UNREADABLE = ("unreadable", "not_an_image", "too_large")  # reasons for exit code 1
EXIT_OK, EXIT_UNREADABLE, EXIT_USAGE = 0, 1, 2


class ResultsError(ValueError):
    """The results folder cannot be used to identify photos."""


@dataclass(frozen=True)
class Results:
    """A published enrollment, as identify needs it."""

    rules: dict[str, Any]
    settings: Hyperparameters
    identities: list[str]
    means: np.ndarray  # (K, D) float64, unit rows

    @property
    def threshold(self) -> float:
        return float(self.rules["accept_threshold"])

    @property
    def not_for_production(self) -> bool:
        return bool(self.rules.get("not_for_production")) or self.settings.not_for_production


def _read(folder: Path, name: str) -> bytes:
    path = folder / name
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ResultsError(f"{path}: {exc.strerror}; --results must be a published results folder") from None


def load_results(folder: Path, device: str = "auto") -> Results:
    """Read rules.py (never executed), the means CSV and the embeddings metadata; check they agree."""
    try:
        rules = load_rules(_read(folder, RULES_PY).decode("utf-8"))
        metadata = load_embeddings(_read(folder, EMBEDDINGS_PKL))["metadata"]
        rows = parse_csv(_read(folder, ENROLLMENT_CSV).decode("utf-8"), rules.get("embedding_dim"))  # type: ignore[arg-type]
        settings = Hyperparameters.model_validate({**metadata["hyperparameters"], "device": device})
    except (RulesError, EmbeddingsFileError, EnrollmentCsvError, UnicodeDecodeError, KeyError) as exc:
        raise ResultsError(f"{folder} does not hold usable results: {exc}") from None
    except ValueError as exc:  # pydantic's ValidationError
        raise ResultsError(f"{folder}: the settings in {EMBEDDINGS_PKL} are invalid: {exc}") from None
    used = {
        "embedder": settings.embedder,
        "image_size": settings.image_size,
        "margin": settings.margin,
        "weights": settings.weights,
    }
    for key, value in used.items():
        if rules.get(key, "facenet" if key == "embedder" else None) != value:  # no embedder key: facenet
            raise ResultsError(f"{RULES_PY} says {key}={rules.get(key)!r} but {EMBEDDINGS_PKL} {value!r}")
    if metadata.get("preprocessing_version") != PREPROCESSING_VERSION:
        raise ResultsError(
            f"the results were made with preprocessing version {metadata.get('preprocessing_version')}, "
            f"this facetrain embeds with version {PREPROCESSING_VERSION}: retrain, or use that version"
        )
    identities = [name for name, _, _ in rows]
    if identities != rules["identities"]:
        raise ResultsError(f"{ENROLLMENT_CSV} and {RULES_PY} list different identities")
    means = np.stack([values.astype(np.float64) for _, _, values in rows])
    return Results(rules, settings, identities, means / np.linalg.norm(means, axis=1, keepdims=True))


def make_encoder(results: Results, weights_dir: Path | None) -> FaceEncoder:
    """The job's FaceEncoder with the results' settings and the very model files they were made with."""
    model = resolve_model(results.settings, weights_dir)
    # Results made before model_files was recorded carry the weights file's sha256 alone.
    expected = (results.rules.get("weights_sha256"), results.rules.get("model_files", model.digests))
    here = (model.sha256, model.digests)
    if here != expected:
        raise ResultsError(
            f"the {model.embedder} model files here ({here}) differ from those the results were made with "
            f"({expected}): identify must embed with the same weights and model files"
        )
    return FaceEncoder(results.settings, model, choose_device(results.settings.device))


def _answer(outcome: Accepted | Rejected, results: Results, top: int) -> dict[str, object]:
    photo = outcome.photo.key
    if isinstance(outcome, Rejected):
        return {
            "photo": photo,
            "identity": None,
            "distance": None,
            "accepted": False,
            "candidates": [],
            "reason": outcome.rejection.reason,
            "error": outcome.rejection.message,
        }
    distances = np.linalg.norm(results.means - outcome.embedding.astype(np.float64), axis=1)
    order = np.argsort(distances, kind="stable")[:top]
    candidates = [
        {
            "identity": results.identities[i],
            "distance": round(float(distances[i]), 6),
            "accepted": bool(distances[i] <= results.threshold),
        }
        for i in order
    ]
    best = candidates[0]
    return {
        "photo": photo,
        "identity": best["identity"] if best["accepted"] else None,
        "distance": best["distance"],
        "accepted": best["accepted"],
        "candidates": candidates,
        "face": {
            "box": [round(v, 2) for v in outcome.face.box],
            "probability": outcome.face.probability,
            "faces_found": outcome.face.faces_found,
        },
    }


def identify(
    photos: Sequence[Path], results: Results, encoder: FaceEncoder, top: int = 3
) -> Iterator[dict[str, object]]:
    """One answer per photo, in order: nearest identity if within the threshold, its distance, candidates."""
    refs = [PhotoRef(identity="", key=str(path), path=path) for path in photos]
    warning = NOT_FOR_PRODUCTION if results.not_for_production else None
    for outcome in PhotoPipeline(results.settings, encoder).run(refs):
        answer = _answer(outcome, results, top)
        yield {**answer, "warning": warning} if warning else answer


def run_identify(
    photos: Sequence[Path],
    results_dir: Path,
    top: int = 3,
    device: str = "auto",
    weights_dir: Path | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """The command: print one JSON object per photo on `out`; return the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        results = load_results(results_dir, device)
        if results.not_for_production:
            print("*" * 20 + f" {NOT_FOR_PRODUCTION} " + "*" * 20, file=err, flush=True)
        encoder = make_encoder(results, weights_dir)
    except (ResultsError, WeightsError, DeviceError) as exc:
        print(f"facetrain identify: {exc}", file=err)
        return EXIT_USAGE
    code = EXIT_OK
    for answer in identify(photos, results, encoder, top):
        if answer.get("reason") in UNREADABLE:
            code = EXIT_UNREADABLE
        print(json.dumps(answer, ensure_ascii=False), file=out, flush=True)
    return code
