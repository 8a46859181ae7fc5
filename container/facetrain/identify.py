"""`facetrain identify PHOTO… --results DIR`: who is in these photos, per a published enrollment.

The photos go through the training job's own pipeline (photos.decode_photo → FaceEncoder.detect_all/crop/
embed, via PhotoPipeline) with the settings the job used, read back from the results: rules.py (threshold,
image size, margin, weights and their sha256) and saved_embeddings.pkl's metadata (every other setting,
the seed of weights=none included: min_face_size, detection_thresholds, detection_max_side…). Every face
of a photo is examined (left to right; `largest_only`: the largest alone), and each embedding is searched
among final_mean_embeddings.csv's identities with the one decision rule (contract/decision.py `search`).

One JSON line per photo: photo, faces_found, faces_answered, identities (the accepted ones, in face order),
faces (one item per face: box, probability, identity or null, distance, accepted, margin, candidates; a
face that is not answered has reason and error instead); a photo that could not be examined has an empty
`faces`, reason and error.

Exit codes: 0 every photo was examined (a photo without a usable face is an answer: no faces and an
error); 1 some photo could not be read (missing, a folder or a broken link: said of the path given, by
path_problem; unreadable, not an image, too large in pixels or bytes,
a decode-time bomb: too many JPEG scans or past decode_budget_seconds), its line says why;
2 bad usage or unusable results (a file missing or invalid, weights absent or different); nothing printed
on stdout then.

facetrain.results is the same, as a library: Results.load once, then identify images held in memory.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .accelerator import DeviceError
from .contract.decision import accepts, search
from .contract.embeddings_file import EmbeddingsFileError, load_embeddings
from .contract.enrollment_csv import EnrollmentCsvError, parse_csv
from .contract.hyperparameters import TORCH_RUNTIME, Hyperparameters
from .contract.names import EMBEDDINGS_PKL, ENROLLMENT_CSV, RULES_PY
from .contract.result_files import result_file_cap
from .contract.rules_file import RulesError, load_rules
from .inference.devices import choose_device
from .inference.faces import DetectedFace, FaceEncoder
from .inference.model_files import WeightsError
from .inference.runtimes import open_encoder, resolve_models
from .job_metrics import PREPROCESSING_VERSION
from .outputs import NOT_FOR_PRODUCTION
from .photos import PhotoRef, Rejection
from .pipeline import Accepted, Examined, FaceRejected, PhotoPipeline, Rejected

# reasons for exit code 1: the photo could not be read or decoded (too_large: over its pixel or byte cap;
# too_many_scans, decode_budget: a decode-time bomb, photos.py)
UNREADABLE = ("unreadable", "not_an_image", "too_large", "too_many_scans", "decode_budget")
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


RESULTS_FILES = f"{RULES_PY}, {ENROLLMENT_CSV} and {EMBEDDINGS_PKL}"
RESULTS_SOURCES = "`facetrain run`'s OUT_DIR, or the results prefix copied with `aws s3 sync`"


def _folder_problem(folder: Path) -> ResultsError | None:
    """What is wrong with the results folder itself, said of the folder rather than of a file in it."""
    fix = f"give the folder holding {RESULTS_FILES} ({RESULTS_SOURCES})"
    if not folder.exists():
        return ResultsError(f"the results folder {folder} does not exist: {fix}")
    if not folder.is_dir():
        return ResultsError(f"{folder} is a file, not a results folder: {fix}")
    return None


# The most identify reads of each results file: what the publish Lambda accepts (contract.result_files).
RESULTS_FILE_CAPS = {name: result_file_cap(name) for name in (RULES_PY, ENROLLMENT_CSV, EMBEDDINGS_PKL)}


def _read(folder: Path, name: str) -> bytes:
    """The bytes of one results file: a regular file (a FIFO, socket or device is refused without a
    blocking open or read) of at most RESULTS_FILE_CAPS[name] bytes."""
    path, cap = folder / name, RESULTS_FILE_CAPS[name]
    fix = f"{folder} is not a published results folder: one holds {RESULTS_FILES} ({RESULTS_SOURCES})"
    not_regular = ResultsError(f"{path} is not a regular file (a FIFO, socket, device or folder); {fix}")
    too_large = ResultsError(
        f"{path} is over identify's cap of {cap} bytes for {name}: a training job's {name} is far "
        f"smaller; {fix}"
    )
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a clear word before opening; fstat below decides
            raise not_regular
        # O_NONBLOCK: were it swapped for a FIFO since, open returns at once instead of waiting for a writer
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as stream:
            found = os.fstat(stream.fileno())
            if not stat.S_ISREG(found.st_mode):
                raise not_regular
            if found.st_size > cap:
                raise too_large
            data = stream.read(cap + 1)  # + 1: a file that grew past the cap since is refused too
    except FileNotFoundError:
        raise ResultsError(f"{path} is missing; {fix}") from None
    except OSError as exc:
        raise ResultsError(f"{path}: {exc.strerror}; {fix}") from None
    if len(data) > cap:
        raise too_large
    return data


def load_results(folder: Path, device: str = "auto") -> Results:
    """Read rules.py (never executed), the means CSV and the embeddings metadata; check they agree.
    ResultsError says what is wrong: the folder missing, a file missing or invalid, files that disagree."""
    if problem := _folder_problem(folder):
        raise problem
    return results_from(lambda name: _read(folder, name), str(folder), device)


def results_from(read: Callable[[str], bytes], where: str, device: str = "auto") -> Results:
    """The results whose files `read(name)` returns (RESULTS_FILE_CAPS's names; it raises ResultsError for a
    file it cannot give), checked as load_results checks a folder's; `where` names them in messages (a
    folder, or the S3 prefix they were read from: facetrain.results_s3)."""
    try:
        rules = load_rules(read(RULES_PY))  # bytes: checked to be ASCII, then byte for byte
        metadata = load_embeddings(read(EMBEDDINGS_PKL))["metadata"]
        rows = parse_csv(read(ENROLLMENT_CSV).decode("utf-8"), rules.get("embedding_dim"))  # type: ignore[arg-type]
        # Results made before the `runtime` setting record none: torch (facenet-pytorch) made them, and
        # identify must embed as they were embedded (the model files compared below say so too).
        recorded = {"runtime": TORCH_RUNTIME, **metadata["hyperparameters"], "device": device}
        settings = Hyperparameters.model_validate(recorded)
    except (RulesError, EmbeddingsFileError, EnrollmentCsvError, UnicodeDecodeError, KeyError) as exc:
        raise ResultsError(f"{where} does not hold usable results: {exc}") from None
    except ResultsError:  # the reader's own words: a ValueError too, but not the settings'
        raise
    except ValueError as exc:  # pydantic's ValidationError
        raise ResultsError(f"{where}: the settings in {EMBEDDINGS_PKL} are invalid: {exc}") from None
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
    model = resolve_models(results.settings, weights_dir)
    # Results made before model_files was recorded carry the weights file's sha256 alone.
    expected = (results.rules.get("weights_sha256"), results.rules.get("model_files", model.digests))
    here = (model.sha256, model.digests)
    if here != expected:
        raise ResultsError(
            f"the {model.embedder} model files here ({here}) differ from those the results were made with "
            f"({expected}): identify must embed with the same weights and model files"
        )
    device = choose_device(results.settings.device, None, results.settings.runtime)
    return open_encoder(results.settings, model, device)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _face_fields(face: DetectedFace) -> dict[str, object]:
    return {"box": [round(v, 2) for v in face.box], "probability": face.probability}


def _not_answered(rejection: Rejection) -> dict[str, object]:
    """The answer's fields for what was not searched (a photo or a face): nobody, and why."""
    return {
        "identity": None,
        "distance": None,
        "accepted": False,
        "margin": None,
        "candidates": [],
        "reason": rejection.reason,
        "error": rejection.message,
    }


def answer_face(embedding: np.ndarray, results: Results, top: int) -> dict[str, object]:
    """The search of one face's embedding among the enrolled means (contract/decision.py's rule): the
    nearest identity when accepted, else None; its distance; the margin to the second nearest; the `top`
    nearest identities, each accepted or not by the same rule."""
    distances = np.linalg.norm(results.means - embedding.astype(np.float64), axis=1)
    result = search([float(d) for d in distances], results.threshold)
    order = np.argsort(distances, kind="stable")[:top]
    return {
        "identity": results.identities[result.nearest] if result.accepted else None,  # type: ignore[index]
        "distance": _rounded(result.distance),
        "accepted": result.accepted,
        "margin": _rounded(result.margin),
        "candidates": [
            {
                "identity": results.identities[i],
                "distance": _rounded(float(distances[i])),
                "accepted": accepts(float(distances[i]), results.threshold),
            }
            for i in order
        ],
    }


def _answer(outcome: Examined | Rejected, results: Results, top: int) -> dict[str, object]:
    photo = outcome.photo.key
    if isinstance(outcome, Rejected):
        answer = _refused(photo, outcome.rejection)
        return {**answer, "faces_found": 0} if outcome.rejection.reason == "no_face" else answer
    faces: list[dict[str, object]] = []
    for item in outcome.faces:
        if isinstance(item, FaceRejected):
            faces.append({**_face_fields(item.face), **_not_answered(item.rejection)})
        else:
            faces.append({**_face_fields(item.face), **answer_face(item.embedding, results, top)})
    answered = [face for face in faces if "reason" not in face]
    answer: dict[str, object] = {
        "photo": photo,
        "faces_found": outcome.faces[0].face.faces_found,
        "faces_answered": len(answered),
        "identities": [face["identity"] for face in answered if face["accepted"]],
        "faces": faces,
    }
    if not answered:  # every face found is unusable: the photo says why, as a photo without a face does
        answer.update(reason=faces[0]["reason"], error=faces[0]["error"])
    return answer


def path_problem(path: Path) -> Rejection | None:
    """What is wrong with a photo argument as a path, said of the user's own path: it does not exist, it
    is a broken symbolic link, or a folder. None when it names something to read (the pipeline's checks
    follow). The job's own words ("upload the photo again") are for a channel's files, not for an
    argument, and a folder would reach the pipeline's reader as a file."""
    if path.is_dir():
        return Rejection(
            "not_an_image", f"{path} is a folder, not a photo: give the photos in it (e.g. {path / '*.jpg'})"
        )
    if path.is_symlink() and not path.exists():
        return Rejection("unreadable", f"{path} is a symbolic link to a file that does not exist")
    if not path.exists():
        return Rejection("unreadable", f"{path} does not exist: check the path and the file's name")
    return None


def _refused(photo: str, rejection: Rejection) -> dict[str, object]:
    """The answer for a photo that was not examined at all."""
    return {
        "photo": photo,
        "faces_found": None,
        "faces_answered": 0,
        "identities": [],
        "faces": [],
        "reason": rejection.reason,
        "error": rejection.message,
    }


def identify(
    photos: Sequence[Path], results: Results, encoder: FaceEncoder, top: int = 3, largest_only: bool = False
) -> Iterator[dict[str, object]]:
    """One answer per photo, in order: each face found (left to right; largest_only: the largest alone)
    searched among the enrolled identities. A path that does not name a file is answered by path_problem
    without being read."""
    problems = [path_problem(path) for path in photos]
    refs = [
        PhotoRef(identity="", key=str(path), path=path)
        for path, problem in zip(photos, problems, strict=True)
        if problem is None
    ]
    warning = NOT_FOR_PRODUCTION if results.not_for_production else None
    pipeline = PhotoPipeline(results.settings, encoder, faces="largest" if largest_only else "all")
    outcomes = pipeline.run(refs)  # in the order of refs: each is taken as its photo's turn comes
    for path, problem in zip(photos, problems, strict=True):
        if problem is not None:
            answer = _refused(str(path), problem)
        else:
            outcome = next(outcomes)
            if isinstance(outcome, Accepted):  # faces="all"/"largest" yields Examined or Rejected
                raise TypeError("PhotoPipeline(faces='all') yielded a single-face outcome")
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
    largest_only: bool = False,
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
    for answer in identify(photos, results, encoder, top, largest_only):
        if answer.get("reason") in UNREADABLE:
            code = EXIT_UNREADABLE
        print(json.dumps(answer, ensure_ascii=False, allow_nan=False), file=out, flush=True)  # JSON: no NaN
    return code
