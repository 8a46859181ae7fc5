"""runtime=onnx: MTCNN and InceptionResnetV1 run by ONNX Runtime, without torch.

The detector is facenet-pytorch's detection glue in numpy (`mtcnn.detect_faces`) around the exported P/R/O-
Net; the facenet embedder crops as facenet-pytorch's `extract_face` does (`facenet.face_crop`) and runs the
exported InceptionResnetV1. Both give what the torch path gives, within the tolerances the parity tests
state (tests/container/test_onnx_parity.py).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..contract.hyperparameters import EMBEDDING_DIMS, Hyperparameters
from ..photos import DecodedPhoto
from .facenet import FaceNetwork, embed_crops, face_crop
from .faces import DetectedFace, crop_source
from .mtcnn import MtcnnNetworks, detect_faces


class OnnxMtcnnDetector:
    """MTCNN with the settings' face size and thresholds, on ONNX Runtime's P/R/O-Net."""

    def __init__(self, settings: Hyperparameters, networks: MtcnnNetworks) -> None:
        self.settings = settings
        self.networks = networks

    def find(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        found = detect_faces(
            np.asarray(image.convert("RGB")),
            self.networks,
            min_face_size=self.settings.min_face_size,
            thresholds=self.settings.detection_thresholds,
        )
        return found.boxes, found.probabilities


class OnnxFacenetEmbedder:
    """InceptionResnetV1 (exported) on standardized image_size crops."""

    dimension = EMBEDDING_DIMS["facenet"]

    def __init__(self, settings: Hyperparameters, network: FaceNetwork) -> None:
        self.settings = settings
        self.network = network

    def crop(self, photo: DecodedPhoto, face: DetectedFace) -> np.ndarray:
        """The standardized face crop (3 x image_size x image_size float32), taken at adequate resolution."""
        size = self.settings.image_size
        source, scale = crop_source(photo, face, size, self.settings.max_image_pixels)
        return face_crop(source, [value / scale for value in face.box], size, self.settings.margin)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per crop."""
        return embed_crops(self.network, crops)
