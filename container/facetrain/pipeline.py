"""Stream photos through decode → detect → crop → batched embedding, with bounded memory.

Decoding runs in a small thread pool ahead of the detector (Pillow releases the GIL while decoding), at
most `prefetch` photos ahead, so memory does not grow with the number of photos.

The training job embeds the one face `face_selection` selects per photo (Accepted); `facetrain identify`
runs the same pipeline over every face of a photo, or its largest (`faces="all"`/`"largest"`: one
Examined per photo, its faces' crops embedded in the same batches).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from . import stopping
from .contract.hyperparameters import Hyperparameters
from .contract.shorten import clip
from .inference.faces import DetectedFace, FaceEncoder
from .photos import (
    DecodedPhoto,
    PhotoRef,
    PhotoRejected,
    Rejection,
    configure_pillow,
    decode_photo,
    photo_sha256,
)


@dataclass(frozen=True)
class Accepted:
    """A photo whose face was embedded."""

    photo: PhotoRef
    sha256: str
    face: DetectedFace
    embedding: np.ndarray


@dataclass(frozen=True)
class Rejected:
    """A photo that is not used, and why."""

    photo: PhotoRef
    sha256: str | None
    rejection: Rejection


@dataclass(frozen=True)
class FaceRejected:
    """A detected face that is not embedded (too small, below the detection threshold, not alignable)."""

    face: DetectedFace
    rejection: Rejection


@dataclass(frozen=True)
class Examined:
    """A photo whose faces were examined (faces="all" or "largest"): one item per face, in the order
    `FaceEncoder.detect_all` gives them (left to right)."""

    photo: PhotoRef
    sha256: str
    faces: tuple[Accepted | FaceRejected, ...]


@dataclass
class _Faces:
    """A photo's faces waiting for their batch: None marks a face whose crop waits in `waiting`."""

    photo: PhotoRef
    sha256: str
    slots: list[FaceRejected | None]

    def fill(self, accepted: Iterator[Accepted]) -> Examined:
        return Examined(
            self.photo, self.sha256, tuple(next(accepted) if s is None else s for s in self.slots)
        )


@dataclass
class StageTimes:
    """Seconds spent per stage (decode is summed over the decoding threads)."""

    decode: float = 0.0
    detect: float = 0.0
    crop: float = 0.0
    embed: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {
            "decode": round(self.decode, 4),
            "detect": round(self.detect, 4),
            "crop": round(self.crop, 4),
            "embed": round(self.embed, 4),
            **{k: round(v, 4) for k, v in self.extra.items()},
        }


@dataclass(frozen=True)
class Unforeseen(Rejection):
    """A rejection caused by an error no check foresaw: it may not recur, so it is never checkpointed."""


def _unexpected(reason: str, stage: str, exc: Exception) -> Rejection:
    """A rejection for an error no check foresaw, naming the stage and the library's message."""
    return Unforeseen(
        reason,
        f"{stage} failed ({type(exc).__name__}: {clip(str(exc), 160)}); re-export the photo as a plain "
        "JPEG of the person's face, or leave it out",
    )


_Pending = tuple[PhotoRef, str, DetectedFace, Any]  # photo, sha256, face, the embedder's crop
_Held = Accepted | Rejected | _Faces | None  # None: the Accepted of the next crop in `waiting`
FaceChoice = Literal["selected", "all", "largest"]


class PhotoPipeline:
    """Runs every photo through the encoder and yields one outcome per photo in input order: Accepted or
    Rejected for the face `face_selection` selects (faces="selected", the training job); Examined or
    Rejected for every face, or the largest (faces="all"/"largest", `facetrain identify`)."""

    def __init__(
        self,
        settings: Hyperparameters,
        encoder: FaceEncoder,
        decode_workers: int = 2,
        prefetch: int = 8,
        on_progress: Callable[[int], None] | None = None,
        faces: FaceChoice = "selected",
    ) -> None:
        self.settings = settings
        self.encoder = encoder
        self.faces = faces
        self.decode_workers = decode_workers
        self.prefetch = prefetch
        self.on_progress = on_progress
        self.times = StageTimes()
        configure_pillow(settings.max_image_pixels)

    def _decode(self, photo: PhotoRef) -> tuple[DecodedPhoto | None, Rejection | None, float]:
        started = time.perf_counter()
        try:
            decoded = decode_photo(
                photo.path,
                max_pixels=self.settings.max_image_pixels,
                detection_max_side=self.settings.detection_max_side,
                min_side=self.settings.min_face_size,
                budget_seconds=self.settings.decode_budget_seconds,
            )
            return decoded, None, time.perf_counter() - started
        except PhotoRejected as exc:
            return None, exc.rejection, time.perf_counter() - started
        except Exception as exc:  # whatever a decoder raises, one photo never fails the job
            return None, _unexpected("unreadable", "decoding", exc), time.perf_counter() - started

    def _decoded_in_order(
        self, photos: list[PhotoRef]
    ) -> Iterator[tuple[PhotoRef, DecodedPhoto | None, Rejection | None]]:
        with ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="decode") as pool:
            pending: deque[tuple[PhotoRef, Future]] = deque()
            queue = iter(photos)
            try:
                for photo in queue:
                    pending.append((photo, pool.submit(self._decode, photo)))
                    if len(pending) >= self.prefetch:
                        yield self._finish(*pending.popleft())
                while pending:
                    yield self._finish(*pending.popleft())
            finally:
                for _, future in pending:
                    future.cancel()

    def _finish(
        self, photo: PhotoRef, future: Future
    ) -> tuple[PhotoRef, DecodedPhoto | None, Rejection | None]:
        decoded, rejection, seconds = future.result()
        self.times.decode += seconds
        return photo, decoded, rejection

    def run(self, photos: list[PhotoRef]) -> Iterator[Accepted | Rejected | Examined]:
        """Yield one outcome per photo, in the order given (batching never reorders the results). On a stop
        (SIGTERM), the outcomes of the photos examined so far are yielded before JobStopped is raised."""
        waiting: list[_Pending] = []
        held: list[_Held] = []  # outcomes waiting for their batch, in order
        for done, (photo, decoded, rejection) in enumerate(self._decoded_in_order(photos), start=1):
            if stopping.requested():  # the faces already found are embedded and handed out (checkpoint)
                yield from self._flush(waiting, held)  # one batch: no longer than any batch of the run
                held = []
            stopping.check()  # between photos: a StopTrainingJob takes effect here
            if decoded is None:
                outcome: _Held = Rejected(photo, photo_sha256(photo.path), rejection)  # type: ignore[arg-type]
            elif self.faces == "selected":
                outcome = self._detect_and_crop(photo, decoded, waiting)
            else:
                outcome = self._detect_and_crop_all(photo, decoded, waiting)
            held.append(outcome)
            if len(waiting) >= self.settings.batch_size or not waiting:
                yield from self._flush(waiting, held)  # nothing pending: emit as we go
                held = []
            if self.on_progress:
                self.on_progress(done)
        yield from self._flush(waiting, held)

    def _detect_and_crop(
        self,
        photo: PhotoRef,
        decoded: DecodedPhoto,
        waiting: list[_Pending],
    ) -> Rejected | None:
        started = time.perf_counter()
        try:
            face = self.encoder.detect(decoded)
            self.times.detect += time.perf_counter() - started
            started = time.perf_counter()
            crop = self.encoder.crop(decoded, face)
            self.times.crop += time.perf_counter() - started
        except PhotoRejected as exc:
            self.times.detect += time.perf_counter() - started
            return Rejected(photo, decoded.sha256, exc.rejection)
        except Exception as exc:  # whatever the detector or aligner raises: this photo is rejected
            self.times.detect += time.perf_counter() - started
            return Rejected(photo, decoded.sha256, _unexpected("no_face", "face detection", exc))
        waiting.append((photo, decoded.sha256, face, crop))  # the decoded images can be freed now
        return None  # placeholder: filled when the batch is embedded

    def _detect_and_crop_all(
        self,
        photo: PhotoRef,
        decoded: DecodedPhoto,
        waiting: list[_Pending],
    ) -> Rejected | _Faces:
        """Every face (or the largest): each one answerable and cropped waits for its batch, the others
        are FaceRejected; a photo without any face is Rejected."""
        started = time.perf_counter()
        try:
            found = self.encoder.detect_all(decoded, largest_only=self.faces == "largest")
        except PhotoRejected as exc:
            self.times.detect += time.perf_counter() - started
            return Rejected(photo, decoded.sha256, exc.rejection)
        except Exception as exc:  # whatever the detector raises: this photo is rejected
            self.times.detect += time.perf_counter() - started
            return Rejected(photo, decoded.sha256, _unexpected("no_face", "face detection", exc))
        self.times.detect += time.perf_counter() - started
        started = time.perf_counter()
        slots: list[FaceRejected | None] = []
        for face in found:
            try:
                rejection = self.encoder.unanswerable(decoded, face)
                if rejection is None:
                    waiting.append((photo, decoded.sha256, face, self.encoder.crop(decoded, face)))
            except PhotoRejected as exc:
                rejection = exc.rejection
            except Exception as exc:  # whatever the aligner raises: this face is not answered
                rejection = _unexpected("no_face", "face alignment", exc)
            slots.append(FaceRejected(face, rejection) if rejection is not None else None)
        self.times.crop += time.perf_counter() - started
        return _Faces(photo, decoded.sha256, slots)

    def _flush(
        self,
        waiting: list[_Pending],
        held: list[_Held],
    ) -> Iterator[Accepted | Rejected | Examined]:
        accepted: Iterator[Accepted] = iter(())
        if waiting:
            started = time.perf_counter()
            vectors = self.encoder.embed([crop for *_, crop in waiting])
            self.times.embed += time.perf_counter() - started
            accepted = iter(
                [
                    Accepted(photo, sha256, face, vector)
                    for (photo, sha256, face, _), vector in zip(waiting, vectors, strict=True)
                ]
            )
            waiting.clear()
        for outcome in held:
            if outcome is None:
                yield next(accepted)
            elif isinstance(outcome, _Faces):
                yield outcome.fill(accepted)
            else:
                yield outcome
