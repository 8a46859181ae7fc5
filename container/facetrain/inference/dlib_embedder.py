"""dlib-resnet: faces aligned with dlib's 5-point landmarks, embedded by dlib's ResNet (128-D).

The face is the one MTCNN found and `face_selection` chose (faces.FaceEncoder.detect); dlib's shape
predictor places the 5 landmarks inside that box, `get_face_chip` warps the face to the 150 px chip the
network was trained on, and `compute_face_descriptor` embeds chips in batches. Descriptors are
L2-normalised like every embedding of this project (distances are between unit vectors).
"""

from __future__ import annotations

import math

import dlib
import numpy as np

from ..contract.hyperparameters import EMBEDDING_DIMS, Hyperparameters
from ..photos import DecodedPhoto, PhotoRejected
from .faces import DetectedFace, crop_source
from .model_files import ModelChoice, WeightsError

CHIP_SIZE = 150  # the chip size and padding dlib's model was trained with (dlib.get_face_chip defaults)
CHIP_PADDING = 0.25
# Smallest face (shorter side of its box, in photo pixels) aligned: the landmark model was trained on
# faces as dlib's own detector finds them, 40 px and up; below that the 5 points are guesses.
MIN_FACE_SIDE = 40


class DlibResnetEmbedder:
    """Landmark-aligned chips in, unit 128-D descriptors out."""

    dimension = EMBEDDING_DIMS["dlib-resnet"]

    def __init__(self, settings: Hyperparameters, model: ModelChoice) -> None:
        self.settings = settings
        try:
            self.landmarks = dlib.shape_predictor(str(model.path("landmarks")))
            self.network = dlib.face_recognition_model_v1(str(model.path("weights")))
        except RuntimeError as exc:  # dlib's deserialisation error for a corrupt or foreign file
            names = ", ".join(f.path.name for f in model.files)
            raise WeightsError(f"dlib cannot load its model files ({names}): {exc}") from None

    def crop(self, photo: DecodedPhoto, face: DetectedFace) -> np.ndarray:
        """The aligned 150 x 150 RGB chip (uint8) of the face, or raise PhotoRejected (too small)."""
        x1, y1, x2, y2 = face.box
        side = min(x2 - x1, y2 - y1)
        if side < MIN_FACE_SIDE:
            raise PhotoRejected(
                "too_small",
                f"the face is {side:.0f} px across, too small for dlib-resnet's landmark alignment "
                f"(at least {MIN_FACE_SIDE} px); use a photo where the face is larger, or embedder=facenet",
            )
        source, scale = crop_source(photo, face, CHIP_SIZE, self.settings.max_image_pixels)
        box = [value / scale for value in face.box]
        # Only a region around the face is handed to dlib: the chip (padding and rotation included) lies
        # within one face size of the box. Pillow fills what lies outside the photo with black, as dlib does.
        reach = max(box[2] - box[0], box[3] - box[1])
        left, top = math.floor(box[0] - reach), math.floor(box[1] - reach)
        right, bottom = math.ceil(box[2] + reach), math.ceil(box[3] + reach)
        region = np.asarray(source.crop((left, top, right, bottom)))
        rect = dlib.rectangle(
            round(box[0] - left), round(box[1] - top), round(box[2] - left), round(box[3] - top)
        )
        shape = self.landmarks(region, rect)
        return np.asarray(dlib.get_face_chip(region, shape, size=CHIP_SIZE, padding=CHIP_PADDING))

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """L2-normalised float32 descriptors, one row per chip (`jitter` jittered copies averaged in)."""
        raw = self.network.compute_face_descriptor(crops, self.settings.jitter)
        vectors = np.array([np.asarray(v, dtype=np.float64) for v in raw]).reshape(len(crops), self.dimension)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
