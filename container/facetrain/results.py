"""The published results as a library: load them once, then ask who is in a photo.

    from facetrain.results import Results

    results = Results.load("out")  # rules.py, final_mean_embeddings.csv, saved_embeddings.pkl
    answer = results.identify(Image.open("door.jpg"))  # or the file's bytes, or an RGB array
    for face in answer.faces:
        print(face.box, face.identity, face.distance)

The answer has exactly the fields of `facetrain identify`'s JSON line for a photo (photo aside: there is no
file name), computed by the same code (facetrain.identify: the job's pipeline, the contract's decision
rule); `Answer.as_json()` is that line's dict. The results are checked once, when loaded (ResultsError,
WeightsError or DeviceError say what is wrong); an image that cannot be examined is an answer with
`reason` and `error`, as on the command line, never an exception.

Results on S3: `Results.from_s3(boto3.client("s3"), "s3://BUCKET/results/")` reads them with the caller's
own client (this package never imports boto3: the training job's import contract): the run latest.json
names, from its own folder runs/<run id>/, so that a publish under way never mixes two runs
(facetrain.results_s3).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from . import identify as _identify
from .accelerator import DeviceError
from .inference.faces import FaceEncoder
from .inference.model_files import WeightsError
from .results_s3 import S3Reader, load_published

__all__ = [
    "Answer",
    "Candidate",
    "DeviceError",
    "Face",
    "Results",
    "ResultsError",
    "S3Reader",
    "WeightsError",
]

ResultsError = _identify.ResultsError
PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"})  # what Pillow's PNG writer takes
ImageInput = Image.Image | np.ndarray | bytes


@dataclass(frozen=True)
class Candidate:
    """One of the nearest enrolled identities, and whether the decision rule accepts it."""

    identity: str
    distance: float
    accepted: bool


@dataclass(frozen=True)
class Face:
    """One face found: box ([x1, y1, x2, y2] in the image's pixels, upright), the detector's probability,
    the nearest identity when accepted (else None), its distance, the margin to the second nearest and the
    nearest candidates. A face that was not searched (too small, …) has `reason` and `error` instead."""

    box: tuple[float, float, float, float]
    probability: float
    identity: str | None
    distance: float | None
    accepted: bool
    margin: float | None
    candidates: tuple[Candidate, ...]
    reason: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Answer:
    """Who is in one image: faces_found (None when the image could not be read), faces_answered, the
    accepted identities in face order, every face left to right; `reason` and `error` when no face could
    be answered; `warning` for results made with random weights (NOT FOR PRODUCTION)."""

    faces_found: int | None
    faces_answered: int
    identities: tuple[str, ...]
    faces: tuple[Face, ...]
    reason: str | None = None
    error: str | None = None
    warning: str | None = None

    def as_json(self) -> dict[str, object]:
        """The fields of `facetrain identify`'s JSON line (without `photo`), in its layout."""
        return _answer_json(self)

    @classmethod
    def from_json(cls, line: dict[str, Any]) -> Answer:
        """An Answer from identify's dict (facetrain.identify.identify, or a JSON line it printed)."""
        faces = tuple(
            Face(
                box=tuple(face["box"]),  # type: ignore[arg-type]
                probability=face["probability"],
                identity=face["identity"],
                distance=face["distance"],
                accepted=face["accepted"],
                margin=face["margin"],
                candidates=tuple(Candidate(**candidate) for candidate in face["candidates"]),
                reason=face.get("reason"),
                error=face.get("error"),
            )
            for face in line["faces"]
        )
        return cls(
            faces_found=line["faces_found"],
            faces_answered=line["faces_answered"],
            identities=tuple(line["identities"]),
            faces=faces,
            reason=line.get("reason"),
            error=line.get("error"),
            warning=line.get("warning"),
        )


def _answer_json(answer: Answer) -> dict[str, object]:
    faces: list[dict[str, object]] = []
    for face in answer.faces:
        item: dict[str, object] = {
            "box": list(face.box),
            "probability": face.probability,
            "identity": face.identity,
            "distance": face.distance,
            "accepted": face.accepted,
            "margin": face.margin,
            "candidates": [vars(candidate).copy() for candidate in face.candidates],
        }
        if face.reason is not None:
            item.update(reason=face.reason, error=face.error)
        faces.append(item)
    line: dict[str, object] = {
        "faces_found": answer.faces_found,
        "faces_answered": answer.faces_answered,
        "identities": list(answer.identities),
        "faces": faces,
    }
    if answer.reason is not None:
        line.update(reason=answer.reason, error=answer.error)
    if answer.warning is not None:
        line["warning"] = answer.warning
    return line


def image_bytes(image: ImageInput) -> bytes:
    """The bytes identify reads for an image: a file's bytes as given (its EXIF orientation is applied
    when decoded, as for a file); a PIL image upright (ImageOps.exif_transpose: the orientation its file
    declared) and an array (H x W x 3 RGB or H x W grey, uint8) as they are, both saved losslessly as PNG
    so that the pixels examined are exactly theirs."""
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise TypeError(
                f"an image array must be uint8, H x W x 3 (RGB) or H x W (grey); got {image.dtype} "
                f"{image.shape}"
            )
        image = Image.fromarray(image)
    elif isinstance(image, Image.Image):
        image = ImageOps.exif_transpose(image) or image
        if image.mode not in PNG_MODES:  # CMYK, YCbCr, LAB, HSV: PNG cannot hold them; the job reads RGB
            image = image.convert("RGB")
    else:
        raise TypeError(f"identify takes a PIL image, a numpy array or bytes, not {type(image).__name__}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # lossless; level 1: fast, the file is transient
    return buffer.getvalue()


class Results:
    """Published results, loaded and checked once, with the face encoder they were made with."""

    def __init__(
        self,
        loaded: _identify.Results,
        encoder: FaceEncoder,
        top: int,
        largest_only: bool,
        run_id: str | None = None,
    ) -> None:
        self._loaded, self._encoder = loaded, encoder
        self.top, self.largest_only = top, largest_only
        self.run_id = run_id  # the published run read from S3 (latest.json's run_id); None from a folder

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str],
        *,
        device: str = "auto",
        weights_dir: str | os.PathLike[str] | None = None,
        top: int = 3,
        largest_only: bool = False,
    ) -> Results:
        """Read the results folder (rules.py, final_mean_embeddings.csv, saved_embeddings.pkl; never
        executed) and prepare the detector and embedder with the settings and model files they were made
        with. device: auto, cpu or cuda; weights_dir: as `facetrain identify --weights-dir`; top: the
        candidates listed per face; largest_only: answer only each image's largest face. ResultsError,
        WeightsError or DeviceError (all ValueError) say what is wrong and what to do."""
        if top < 1:
            raise ValueError("top must be at least 1")
        loaded = _identify.load_results(Path(folder), device)
        encoder = _identify.make_encoder(loaded, None if weights_dir is None else Path(weights_dir))
        return cls(loaded, encoder, top, largest_only)

    @classmethod
    def from_s3(
        cls,
        s3: S3Reader,
        uri: str,
        *,
        device: str = "auto",
        weights_dir: str | os.PathLike[str] | None = None,
        top: int = 3,
        largest_only: bool = False,
    ) -> Results:
        """The results published at `uri` (s3://BUCKET/PREFIX/, the stack's data bucket and results prefix),
        read with the caller's S3 client (boto3's `client("s3")`: get_object alone is used): latest.json,
        then the files it names in the run's own folder, runs/<run id>/, never the current files at the top,
        which a publish under way replaces one by one. `run_id` says which run was loaded. Otherwise as
        load; ResultsError names the S3 key and the fix (nothing published, access denied, a file
        missing)."""
        if top < 1:
            raise ValueError("top must be at least 1")
        loaded, run_id = load_published(s3, uri, device)
        encoder = _identify.make_encoder(loaded, None if weights_dir is None else Path(weights_dir))
        return cls(loaded, encoder, top, largest_only, run_id)

    @property
    def identities(self) -> list[str]:
        """The enrolled identities, in rules.py's order."""
        return list(self._loaded.identities)

    @property
    def threshold(self) -> float:
        """rules.py's accept_threshold: a face is accepted as its nearest identity within this distance."""
        return self._loaded.threshold

    @property
    def not_for_production(self) -> bool:
        """True for results made with random weights (weights=none): they recognise no one."""
        return self._loaded.not_for_production

    def identify(self, image: ImageInput) -> Answer:
        """Who is in one image (a PIL image, an RGB/grey uint8 array, or an image file's bytes)."""
        return self.identify_many([image])[0]

    def identify_many(self, images: Sequence[ImageInput]) -> list[Answer]:
        """identify for several images at once (batched through the embedder), in order."""
        # The job's pipeline reads photo files (with its byte, pixel, scan and decode-time caps); the images
        # are written for it into a private temporary folder (mode 0700), removed before this returns.
        with tempfile.TemporaryDirectory(prefix="facetrain-identify-") as folder:
            paths = []
            for number, image in enumerate(images):
                path = Path(folder, f"image-{number}")
                path.write_bytes(image_bytes(image))
                paths.append(path)
            lines = _identify.identify(paths, self._loaded, self._encoder, self.top, self.largest_only)
            return [Answer.from_json(line) for line in lines]
