"""Where each embedder's trained model files come from, found without importing torch or dlib.

The job never downloads a model (SageMaker runs it with network isolation): files are looked up in the
`weights` channel first, then where they are installed on the machine. facenet's named weights live where
facenet-pytorch caches its downloads; dlib-resnet's files come with the `face_recognition_models` package.
The offline CLI reads this module to choose an embedder without loading any model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ..contract.hyperparameters import (
    DLIB_RESNET,
    DLIB_WEIGHTS,
    FACENET,
    NAMED_WEIGHTS,
    RANDOM_WEIGHTS,
    Hyperparameters,
)
from ..contract.shorten import clip

# facenet-pytorch names its cached downloads after their release URL.
WEIGHT_FILES = {
    "vggface2": "20180402-114759-vggface2.pt",
    "casia-webface": "20180408-102900-casia-webface.pt",
}
# dlib-resnet: the descriptor network and the 5-point landmark model that aligns faces for it, as
# face_recognition_models ships them (models/<name>); roles name them in ModelChoice.files.
DLIB_RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
DLIB_FILES = {"weights": DLIB_RECOGNITION_FILE, "landmarks": DLIB_LANDMARKS_FILE}
DLIB_PACKAGES = "dlib-bin (dlib) and face_recognition_models (its model files)"
DLIB_INSTALL_HINT = "`make setup` installs them (or: pip install -e '.[dlib]')"
# Set by container/Dockerfile from its VGGFACE2_WEIGHTS build argument (also the image's label
# facetrain.vggface2-weights): `absent` in an image built without the vggface2 weights (make image-local
# where GitHub does not answer). Unset outside the image.
VGGFACE2_WEIGHTS_ENV = "FACETRAIN_VGGFACE2_WEIGHTS"


class WeightsError(ValueError):
    """The embedder's model files are absent or unusable."""


class EmbedderUnavailable(WeightsError):
    """The chosen embedder's packages are not installed here."""


class RuntimeUnavailable(EmbedderUnavailable):
    """The chosen runtime's packages are not installed here."""


def torch_unavailable(exc: Exception | None = None) -> RuntimeUnavailable:
    """runtime=torch's refusal where torch or facenet-pytorch is missing (or, `exc`, cannot be imported)."""
    why = "are not installed here" if exc is None else f"cannot be imported here ({clip(str(exc), 200)})"
    return RuntimeUnavailable(
        f"runtime=torch needs the Python packages torch and facenet-pytorch, which {why} (the training "
        "image holds ONNX Runtime only): leave runtime out (onnx, the default), or install them "
        "(`make setup`, or: pip install -e '.[torch]')"
    )


@dataclass(frozen=True)
class ModelFile:
    """One model file: its role (`weights`, `landmarks`), where it is, and its sha256."""

    role: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class ModelChoice:
    """The embedder and the model files it runs on (none for facenet's seeded random init), and the files
    the runtime runs (`runtime_files`: runtime=onnx's exported networks, `onnx_files`; none for torch)."""

    embedder: str
    label: str  # the `weights` setting
    files: tuple[ModelFile, ...]
    runtime_files: tuple[ModelFile, ...] = ()

    @property
    def sha256(self) -> str | None:
        """sha256 of the weights file (the network), None for random weights."""
        return next((f.sha256 for f in self.files if f.role == "weights"), None)

    @property
    def digests(self) -> dict[str, str]:
        """File name → sha256 of every model file and runtime file: what the outputs record, the embedding
        fingerprint includes and identify compares."""
        return {f.path.name: f.sha256 for f in (*self.files, *self.runtime_files)}

    def path(self, role: str) -> Path:
        return next(f.path for f in (*self.files, *self.runtime_files) if f.role == role)


def torch_home() -> Path:
    """facenet-pytorch's cache root ($TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return Path(os.environ.get("TORCH_HOME", default)).expanduser()


def cached_weights(name: str) -> Path:
    """The file facenet-pytorch would cache the named weights in."""
    return torch_home() / "checkpoints" / WEIGHT_FILES[name]


def dlib_models_dir() -> Path | None:
    """face_recognition_models' models/ folder, found without importing the package (its __init__ needs
    pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def dlib_available() -> bool:
    """True when dlib and the dlib-resnet model files are installed (nothing is imported)."""
    models = dlib_models_dir()
    return (
        importlib.util.find_spec("dlib") is not None
        and models is not None
        and all((models / name).is_file() for name in DLIB_FILES.values())
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _found(role: str, path: Path) -> ModelFile:
    return ModelFile(role=role, path=path, sha256=sha256_file(path))


def _resolve_dlib(weights_channel: Path | None) -> ModelChoice:
    models = dlib_models_dir()
    files: list[ModelFile] = []
    for role, name in DLIB_FILES.items():
        candidates = [c for c in (weights_channel, models) if c is not None]
        path = next((c / name for c in candidates if (c / name).is_file()), None)
        if path is None:
            if models is None:
                raise EmbedderUnavailable(
                    f"embedder=dlib-resnet needs the Python packages {DLIB_PACKAGES}, and "
                    f"face_recognition_models is not installed: {DLIB_INSTALL_HINT}; or add a 'weights' "
                    f"channel holding {DLIB_RECOGNITION_FILE} and {DLIB_LANDMARKS_FILE}"
                )
            raise WeightsError(
                f"the dlib-resnet model file {name} was not found (looked in: "
                f"{', '.join(str(c) for c in candidates)}); reinstall face_recognition_models or add it "
                "to the 'weights' channel"
            )
        files.append(_found(role, path))
    return ModelChoice(embedder=DLIB_RESNET, label=DLIB_WEIGHTS, files=tuple(files))


def _resolve_facenet(weights: str, weights_channel: Path | None) -> ModelChoice:
    if weights == RANDOM_WEIGHTS:
        return ModelChoice(embedder=FACENET, label=RANDOM_WEIGHTS, files=())
    if weights in NAMED_WEIGHTS:
        filename = WEIGHT_FILES[weights]
        candidates = [torch_home() / "checkpoints" / filename]
        if weights_channel is not None:
            candidates.insert(0, weights_channel / filename)
        for candidate in candidates:
            if candidate.is_file():
                return ModelChoice(FACENET, weights, (_found("weights", candidate),))
        if weights == "vggface2" and os.environ.get(VGGFACE2_WEIGHTS_ENV) == "absent":
            raise WeightsError(_vggface2_not_in_image(filename))
        raise WeightsError(
            f"The {weights} weights file {filename} was not found (looked in: "
            f"{', '.join(str(c) for c in candidates)}). The job does not download weights (it runs with "
            f"network isolation). Provide them: use the image built by container/Dockerfile (it downloads "
            f"them at build time), or add a 'weights' channel holding {filename}, or set TORCH_HOME to a "
            f"folder with checkpoints/{filename}. Or use embedder=dlib-resnet, whose model files come "
            "with the face_recognition_models package. For tests only, weights=none uses random weights."
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
    return ModelChoice(FACENET, weights, (_found("weights", path),))


def _vggface2_not_in_image(filename: str) -> str:
    return (
        f"embedder=facenet with weights=vggface2 cannot run in this image: it was built without the vggface2 "
        f"weights ({VGGFACE2_WEIGHTS_ENV}=absent, label facetrain.vggface2-weights=absent). Fix one of: "
        f"rebuild the image with the weights (`make image`, or `VGGFACE2_WEIGHTS=baked make image-local` "
        f"where GitHub answers); or add a 'weights' channel holding {filename}; or set "
        "embedder=dlib-resnet, whose model files are in the image."
    )


def resolve_model(settings: Hyperparameters, weights_channel: Path | None) -> ModelChoice:
    """Find the model files of the chosen embedder and weights without downloading anything."""
    if settings.embedder == DLIB_RESNET:
        return _resolve_dlib(weights_channel)
    return _resolve_facenet(settings.weights, weights_channel)
