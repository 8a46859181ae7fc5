"""runtime=torch: facenet-pytorch itself runs MTCNN and InceptionResnetV1 (the reference path).

The ONNX models are exported from these very modules and weights (`export`), and the parity tests compare
the two runtimes on real photos. This module imports torch and facenet-pytorch: only `runtimes` opens it,
when the settings say runtime=torch (or the exporter, which needs the same networks).
"""

from __future__ import annotations

import numpy as np
import torch
from facenet_pytorch import MTCNN, InceptionResnetV1
from facenet_pytorch.models.mtcnn import fixed_image_standardization
from facenet_pytorch.models.utils.detect_face import extract_face
from PIL import Image

from ..contract.hyperparameters import EMBEDDING_DIMS, Hyperparameters
from ..photos import DecodedPhoto
from .faces import DetectedFace, crop_source
from .model_files import ModelChoice, WeightsError


def set_threads(threads: int) -> None:
    """torch's intra-op threads: the cores this process really has (cpu_threads.intra_op_threads)."""
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)


def load_facenet(model: ModelChoice, seed: int, device: torch.device) -> InceptionResnetV1:
    """InceptionResnetV1 in eval mode with the chosen weights (random init seeded by `seed` for 'none')."""
    torch.manual_seed(seed)
    network = InceptionResnetV1(pretrained=None, classify=False)
    if model.files:
        path = model.path("weights")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a bad file
            raise WeightsError(
                f"weights file {path.name} cannot be loaded as PyTorch weights ({exc})"
            ) from None
        if not isinstance(state, dict):
            raise WeightsError(f"weights file {path.name} holds no state dict")
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}  # classifier head unused
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(
                f"weights file {path.name} does not fit InceptionResnetV1: {str(exc)[:300]}"
            ) from None
    return network.eval().to(device)


class TorchMtcnnDetector:
    """facenet-pytorch's MTCNN with the settings' face size and thresholds."""

    def __init__(self, settings: Hyperparameters, device: str) -> None:
        self.mtcnn = MTCNN(
            image_size=settings.image_size,
            margin=settings.margin,
            min_face_size=settings.min_face_size,
            thresholds=list(settings.detection_thresholds),
            post_process=True,
            keep_all=True,
            device=torch.device(device),
        )

    def find(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            boxes, probs = self.mtcnn.detect(image)
        if boxes is None:
            return np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.float32)
        return np.asarray(boxes), np.asarray(probs)


class TorchFacenetEmbedder:
    """InceptionResnetV1 on standardized image_size crops (facenet-pytorch's extract_face)."""

    dimension = EMBEDDING_DIMS["facenet"]

    def __init__(self, settings: Hyperparameters, model: ModelChoice, device: str) -> None:
        self.settings = settings
        self.device = torch.device(device)
        self.network = load_facenet(model, settings.seed, self.device)

    def crop(self, photo: DecodedPhoto, face: DetectedFace) -> torch.Tensor:
        """The standardized face crop (3 x image_size x image_size), taken at adequate resolution."""
        size = self.settings.image_size
        source, scale = crop_source(photo, face, size, self.settings.max_image_pixels)
        tensor = extract_face(source, np.array(face.box) / scale, size, self.settings.margin)
        return fixed_image_standardization(tensor)

    def embed(self, crops: list[torch.Tensor]) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per crop."""
        with torch.inference_mode():
            batch = torch.stack(crops).to(self.device)
            vectors = torch.nn.functional.normalize(self.network(batch), p=2, dim=1)
        return vectors.cpu().numpy().astype(np.float32)
