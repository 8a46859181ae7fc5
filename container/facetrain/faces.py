"""Face detection (MTCNN), cropping and embedding with the chosen embedder.

Detection and face selection are the same for every embedder (facenet-pytorch's MTCNN); the embedder
then takes its own crop of the selected face and embeds batches of crops: facenet (InceptionResnetV1, in
this module) or dlib-resnet (`dlib_embedder`, imported only when chosen). Also used by `facetrain
identify`, which examines every face of a photo (`FaceEncoder.detect_all`: the same detector and settings):
there is one implementation of detection and embedding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from facenet_pytorch import MTCNN, InceptionResnetV1
from facenet_pytorch.models.mtcnn import fixed_image_standardization
from facenet_pytorch.models.utils.detect_face import extract_face
from PIL import Image

from . import gpu_facts
from .accelerator import DeviceError as DeviceError  # re-exported: train and identify catch it
from .accelerator import decide_device, describe
from .contract.hyperparameters import DLIB_RESNET, EMBEDDING_DIMS, Hyperparameters
from .cpu_threads import torch_threads
from .model_files import (
    DLIB_INSTALL_HINT,
    DLIB_PACKAGES,
    EmbedderUnavailable,
    ModelChoice,
    WeightsError,
)
from .photos import DecodedPhoto, PhotoRejected, Rejection, decode_reduced

log = logging.getLogger("facetrain")


@dataclass(frozen=True)
class DetectedFace:
    """A face of a photo (the selected one, or each of `detect_all`'s): its box [x1, y1, x2, y2] in
    full-resolution pixels, MTCNN's probability, and how many faces MTCNN found in the photo."""

    box: tuple[float, float, float, float]
    probability: float
    faces_found: int


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


class FacenetEmbedder:
    """InceptionResnetV1 on standardized image_size crops (facenet-pytorch's extract_face)."""

    dimension = EMBEDDING_DIMS["facenet"]

    def __init__(self, settings: Hyperparameters, model: ModelChoice, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        self.network = load_facenet(model, settings.seed, device)

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


def make_embedder(settings: Hyperparameters, model: ModelChoice, device: torch.device) -> Embedder:
    """The embedder the settings choose, on the model files resolved for it."""
    if settings.embedder != model.embedder:
        raise WeightsError(f"model files for {model.embedder} given to embedder={settings.embedder}")
    if settings.embedder == DLIB_RESNET:
        try:
            from .dlib_embedder import DlibResnetEmbedder
        except ImportError as exc:
            raise EmbedderUnavailable(
                f"embedder=dlib-resnet needs the Python packages {DLIB_PACKAGES}; dlib cannot be imported "
                f"({exc}): {DLIB_INSTALL_HINT}"
            ) from None
        return DlibResnetEmbedder(settings, model)
    return FacenetEmbedder(settings, model, device)


class FaceEncoder:
    """Detects the face of a photo (MTCNN), crops it and embeds batches of crops (the chosen embedder)."""

    def __init__(self, settings: Hyperparameters, model: ModelChoice, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        threads = torch_threads()
        if threads is not None and threads != torch.get_num_threads():
            torch.set_num_threads(threads)  # the cores this process really has (cpu_threads)
        self.detector = MTCNN(
            image_size=settings.image_size,
            margin=settings.margin,
            min_face_size=settings.min_face_size,
            thresholds=list(settings.detection_thresholds),
            post_process=True,
            keep_all=True,
            device=device,
        )
        self.embedder = make_embedder(settings, model, device)

    def _find(self, photo: DecodedPhoto) -> tuple[np.ndarray, np.ndarray]:
        """MTCNN's boxes (detection-copy pixels) and probabilities, or raise PhotoRejected (no face)."""
        with torch.inference_mode():
            boxes, probs = self.detector.detect(photo.detection_image)
        if boxes is None or len(boxes) == 0:
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


def choose_device(requested: str, instance_type: str | None = None) -> torch.device:
    """Resolve the `device` setting on this instance type (None: not known, as in `facetrain identify`),
    logging the GPU, driver and CUDA versions; DeviceError for device=cuda, or a GPU instance type, whose
    GPU cannot be used (see `accelerator.decide_device`)."""
    facts = gpu_facts.gather()
    log.info("accelerator on %s: %s", instance_type or "an unnamed instance type", describe(facts))
    choice = decide_device(requested, instance_type, facts)
    if choice.warning:
        log.warning("%s", choice.warning)
    return torch.device(choice.device)
