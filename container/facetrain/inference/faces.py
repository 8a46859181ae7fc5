"""Face detection, selection, cropping and embedding over any runtime: the one implementation of them.

A `Detector` (MTCNN run by ONNX Runtime or by facenet-pytorch: the `runtime` setting, `runtimes`) finds the
faces on a photo's detection copy; `FaceEncoder` selects one (`face_selection`) or examines every face
(`facetrain identify`: `detect_all`, the same detector and settings); the chosen `Embedder` (facenet's
InceptionResnetV1 on either runtime, or dlib-resnet) takes its own crop of the face and embeds batches of
crops. This module imports no runtime: `runtimes.open_encoder` opens the one the settings choose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ..contract.hyperparameters import Hyperparameters
from ..photos import DecodedPhoto, PhotoRejected, Rejection, decode_reduced


@dataclass(frozen=True)
class DetectedFace:
    """A face of a photo (the selected one, or each of `detect_all`'s): its box [x1, y1, x2, y2] in
    full-resolution pixels, MTCNN's probability, and how many faces MTCNN found in the photo."""

    box: tuple[float, float, float, float]
    probability: float
    faces_found: int


class Detector(Protocol):
    """MTCNN on an RGB image: its boxes [x1, y1, x2, y2] (image pixels, largest first) and probabilities,
    empty arrays when it finds no face."""

    def find(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]: ...


class Embedder(Protocol):
    """Takes an embedder-specific crop of a detected face, and embeds batches of crops."""

    dimension: int

    def crop(self, photo: DecodedPhoto, face: DetectedFace) -> Any: ...

    def embed(self, crops: list[Any]) -> np.ndarray: ...


def crop_source(
    photo: DecodedPhoto, face: DetectedFace, needed_side: int, max_pixels: int
) -> tuple[Image.Image, float]:
    """The image to crop the face from and its scale (full-resolution pixels per its pixel): the decoded
    (maybe draft-reduced) image, or, when the face would be smaller than `needed_side` pixels in it, the
    photo re-decoded at the least reduction that keeps the face at least `needed_side` pixels across
    (full resolution for a face smaller than twice that, or for a photo that is not a JPEG)."""
    source: Image.Image = photo.crop_image
    scale = photo.crop_scale
    full_side = min(face.box[2] - face.box[0], face.box[3] - face.box[1])
    if full_side / scale < needed_side and scale > 1.0:
        source = decode_reduced(photo, max_pixels, full_side / needed_side)
        scale = photo.size[0] / source.width
    return source, scale


class FaceEncoder:
    """Detects the face of a photo (the runtime's MTCNN), crops it and embeds batches of crops (the chosen
    embedder)."""

    def __init__(self, settings: Hyperparameters, detector: Detector, embedder: Embedder) -> None:
        self.settings = settings
        self.detector = detector
        self.embedder = embedder

    def _find(self, photo: DecodedPhoto) -> tuple[np.ndarray, np.ndarray]:
        """MTCNN's boxes (detection-copy pixels) and probabilities, or raise PhotoRejected (no face)."""
        boxes, probs = self.detector.find(photo.detection_image)
        if len(boxes) == 0:
            raise PhotoRejected(
                "no_face",
                "no face found; use a photo where one face is clearly visible and at least "
                f"{self.settings.min_face_size} px across in a {self.settings.detection_max_side} px copy",
            )
        return boxes, np.asarray(probs, dtype=np.float64)

    @staticmethod
    def _face(photo: DecodedPhoto, boxes: np.ndarray, probs: np.ndarray, index: int) -> DetectedFace:
        """Face `index` of MTCNN's answer, its box brought to full-resolution pixels."""
        scale = photo.detection_scale
        box = tuple(float(v) * scale for v in boxes[index])
        return DetectedFace(box=box, probability=float(probs[index]), faces_found=len(boxes))  # type: ignore[arg-type]

    def detect(self, photo: DecodedPhoto) -> DetectedFace:
        """Find the faces on the detection copy and select one, or raise PhotoRejected."""
        boxes, probs = self._find(photo)
        count = len(boxes)
        if count > 1 and self.settings.face_selection == "reject":
            raise PhotoRejected(
                "several_faces",
                f"{count} faces found and face_selection=reject; crop the photo to one person "
                "or set face_selection=largest",
            )
        index = int(np.argmax(probs)) if self.settings.face_selection == "most_probable" else _largest(boxes)
        return self._face(photo, boxes, probs, index)

    def detect_all(self, photo: DecodedPhoto, largest_only: bool = False) -> list[DetectedFace]:
        """Every face MTCNN finds on the detection copy (the detector and settings of `detect`), ordered
        left to right (by the box's left edge, then its top), or raise PhotoRejected (no face);
        `largest_only`: the largest alone, the face `face_selection=largest` selects. `face_selection`
        itself is not applied: this examines a photo, it does not enrol it."""
        boxes, probs = self._find(photo)
        if largest_only:
            return [self._face(photo, boxes, probs, _largest(boxes))]
        order = sorted(range(len(boxes)), key=lambda i: (float(boxes[i][0]), float(boxes[i][1]), i))
        return [self._face(photo, boxes, probs, i) for i in order]

    def unanswerable(self, photo: DecodedPhoto, face: DetectedFace) -> Rejection | None:
        """Why a detected face is not answered, or None: less than min_face_size across in the detection
        copy (MTCNN's regressed box can come out smaller than the faces it searches for), or a probability
        below the last detection threshold."""
        side = min(face.box[2] - face.box[0], face.box[3] - face.box[1]) / photo.detection_scale
        if side < self.settings.min_face_size:
            return Rejection(
                "below_min_face_size",
                f"the face is {side:.0f} px across in the {self.settings.detection_max_side} px detection "
                f"copy, less than min_face_size={self.settings.min_face_size}",
            )
        threshold = self.settings.detection_thresholds[-1]
        if face.probability < threshold:
            return Rejection(
                "below_detection_threshold",
                f"detection probability {face.probability:.4f} is below the detection threshold {threshold}",
            )
        return None

    def crop(self, photo: DecodedPhoto, face: DetectedFace) -> Any:
        """The embedder's crop of the selected face, or raise PhotoRejected."""
        return self.embedder.crop(photo, face)

    def embed(self, crops: list[Any]) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per crop."""
        return self.embedder.embed(crops)


def _largest(boxes: np.ndarray) -> int:
    """Index of the largest box by area (the first of equal ones): the face face_selection=largest selects."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.argmax(areas))
