"""Face detection (MTCNN), cropping and embedding (InceptionResnetV1) with facenet-pytorch.

Also used by `facetrain identify` later: there is one implementation of detection and embedding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from facenet_pytorch import MTCNN, InceptionResnetV1
from facenet_pytorch.models.mtcnn import fixed_image_standardization
from facenet_pytorch.models.utils.detect_face import extract_face
from PIL import Image

from .hyperparameters import NAMED_WEIGHTS, RANDOM_WEIGHTS, Hyperparameters
from .photos import DecodedPhoto, PhotoRejected, decode_full_resolution
from .weight_files import WEIGHT_FILES, torch_home

EMBEDDING_DIM = 512


class WeightsError(ValueError):
    """The embedder's weights are absent or unusable."""


class DeviceError(ValueError):
    """The requested compute device is not available."""


@dataclass(frozen=True)
class WeightsChoice:
    """Which weights the embedder uses: a file (with its sha256) or the seeded random init."""

    label: str
    path: Path | None
    sha256: str | None


@dataclass(frozen=True)
class DetectedFace:
    """The selected face of a photo: its box in full-resolution pixels and MTCNN's probability."""

    box: tuple[float, float, float, float]
    probability: float
    faces_found: int


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_weights(weights: str, weights_channel: Path | None) -> WeightsChoice:
    """Find the weights file for the `weights` setting without downloading anything."""
    if weights == RANDOM_WEIGHTS:
        return WeightsChoice(label=RANDOM_WEIGHTS, path=None, sha256=None)
    if weights in NAMED_WEIGHTS:
        filename = WEIGHT_FILES[weights]
        candidates = [torch_home() / "checkpoints" / filename]
        if weights_channel is not None:
            candidates.insert(0, weights_channel / filename)
        for candidate in candidates:
            if candidate.is_file():
                return WeightsChoice(label=weights, path=candidate, sha256=_sha256_file(candidate))
        raise WeightsError(
            f"The {weights} weights file {filename} was not found (looked in: "
            f"{', '.join(str(c) for c in candidates)}). The job does not download weights (it runs with "
            f"network isolation). Provide them: use the image built by container/Dockerfile (it downloads "
            f"them at build time), or add a 'weights' channel holding {filename}, or set TORCH_HOME to a "
            f"folder with checkpoints/{filename}. For tests only, weights=none uses random weights."
        )
    path = Path(weights)
    if not path.is_absolute():
        if weights_channel is None:
            raise WeightsError(
                f"weights={weights!r} is a relative path but the job has no 'weights' channel; "
                "add the channel or give an absolute path"
            )
        path = weights_channel / path
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; check the `weights` setting and the channel")
    return WeightsChoice(label=weights, path=path, sha256=_sha256_file(path))


def load_embedder(choice: WeightsChoice, seed: int, device: torch.device) -> InceptionResnetV1:
    """InceptionResnetV1 in eval mode with the chosen weights (random init seeded by `seed` for 'none')."""
    torch.manual_seed(seed)
    model = InceptionResnetV1(pretrained=None, classify=False)
    if choice.path is not None:
        try:
            state = torch.load(choice.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a bad file
            raise WeightsError(
                f"weights file {choice.path.name} cannot be loaded as PyTorch weights ({exc})"
            ) from None
        if not isinstance(state, dict):
            raise WeightsError(f"weights file {choice.path.name} holds no state dict")
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}  # classifier head unused
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(
                f"weights file {choice.path.name} does not fit InceptionResnetV1: {str(exc)[:300]}"
            ) from None
    return model.eval().to(device)


class FaceEncoder:
    """Detects the face of a photo, crops it and embeds batches of crops."""

    def __init__(self, settings: Hyperparameters, weights: WeightsChoice, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        self.detector = MTCNN(
            image_size=settings.image_size,
            margin=settings.margin,
            min_face_size=settings.min_face_size,
            thresholds=list(settings.detection_thresholds),
            post_process=True,
            keep_all=True,
            device=device,
        )
        self.embedder = load_embedder(weights, settings.seed, device)

    def detect(self, photo: DecodedPhoto) -> DetectedFace:
        """Find the faces on the detection copy and select one, or raise PhotoRejected."""
        with torch.inference_mode():
            boxes, probs = self.detector.detect(photo.detection_image)
        if boxes is None or len(boxes) == 0:
            raise PhotoRejected(
                "no_face",
                "no face found; use a photo where one face is clearly visible and at least "
                f"{self.settings.min_face_size} px across in a {self.settings.detection_max_side} px copy",
            )
        count = len(boxes)
        if count > 1 and self.settings.face_selection == "reject":
            raise PhotoRejected(
                "several_faces",
                f"{count} faces found and face_selection=reject; crop the photo to one person "
                "or set face_selection=largest",
            )
        if self.settings.face_selection == "most_probable":
            index = int(np.argmax(probs))
        else:
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            index = int(np.argmax(areas))
        scale = photo.detection_scale
        box = tuple(float(v) * scale for v in boxes[index])
        return DetectedFace(box=box, probability=float(probs[index]), faces_found=count)  # type: ignore[arg-type]

    def crop(self, photo: DecodedPhoto, face: DetectedFace) -> torch.Tensor:
        """The standardized face crop (3 x image_size x image_size), taken at adequate resolution."""
        source: Image.Image = photo.crop_image
        scale = photo.crop_scale
        face_side = min(face.box[2] - face.box[0], face.box[3] - face.box[1]) / scale
        if face_side < self.settings.image_size and scale > 1.0:
            source = decode_full_resolution(photo, self.settings.max_image_pixels)
            scale = photo.size[0] / source.width
        box = np.array(face.box) / scale
        tensor = extract_face(source, box, self.settings.image_size, self.settings.margin)
        return fixed_image_standardization(tensor)

    def embed(self, crops: list[torch.Tensor]) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per crop."""
        with torch.inference_mode():
            batch = torch.stack(crops).to(self.device)
            vectors = self.embedder(batch)
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.cpu().numpy().astype(np.float32)


def choose_device(requested: str) -> torch.device:
    """Resolve the `device` setting; 'cuda' without a GPU is an error, 'auto' falls back to CPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device=cuda was asked for but no CUDA GPU is visible; use device=auto or cpu")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")
