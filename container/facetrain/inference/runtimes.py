"""The `runtime` setting: which runtime's model files the job resolves, and the FaceEncoder it opens.

runtime=onnx (the default) runs the exported networks with ONNX Runtime (`onnx_runtime`); runtime=torch runs
facenet-pytorch itself (`torch_runtime`, the reference path, where torch is installed). dlib-resnet embeds
with dlib either way; its faces are found by the runtime's MTCNN. The runtime's modules, and dlib, are
imported here only when chosen: on runtime=onnx the job's process imports no torch (tested by running it).
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

from ..contract.hyperparameters import DLIB_RESNET, TORCH_RUNTIME, Hyperparameters
from ..cpu_threads import intra_op_threads
from .faces import Detector, Embedder, FaceEncoder
from .model_files import (
    DLIB_INSTALL_HINT,
    DLIB_PACKAGES,
    EmbedderUnavailable,
    ModelChoice,
    WeightsError,
    resolve_model,
    torch_unavailable,
)
from .onnx_files import onnx_files

TORCH_PACKAGES = ("torch", "facenet_pytorch")


def resolve_models(settings: Hyperparameters, weights_channel: Path | None) -> ModelChoice:
    """The embedder's model files (`resolve_model`) and, on runtime=onnx, the exported networks the
    runtime runs (`onnx_files`: their digests join the model files' in the outputs and the embedding
    fingerprint); raise WeightsError (RuntimeUnavailable for runtime=torch without torch) naming the fix."""
    model = resolve_model(settings, weights_channel)
    if settings.runtime == TORCH_RUNTIME:
        if any(importlib.util.find_spec(name) is None for name in TORCH_PACKAGES):
            raise torch_unavailable()
        return model
    return replace(model, runtime_files=onnx_files(model, settings.seed, weights_channel))


def _dlib_embedder(settings: Hyperparameters, model: ModelChoice) -> Embedder:
    try:
        from .dlib_embedder import DlibResnetEmbedder
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"embedder=dlib-resnet needs the Python packages {DLIB_PACKAGES}; dlib cannot be imported "
            f"({exc}): {DLIB_INSTALL_HINT}"
        ) from None
    return DlibResnetEmbedder(settings, model)


def _torch_parts(
    settings: Hyperparameters, model: ModelChoice, device: str, threads: int
) -> tuple[Detector, Embedder]:
    try:
        from . import torch_runtime
    except ImportError as exc:
        raise torch_unavailable(exc) from None
    torch_runtime.set_threads(threads)
    detector = torch_runtime.TorchMtcnnDetector(settings, device)
    if settings.embedder == DLIB_RESNET:
        return detector, _dlib_embedder(settings, model)
    return detector, torch_runtime.TorchFacenetEmbedder(settings, model, device)


def _onnx_parts(
    settings: Hyperparameters, model: ModelChoice, device: str, threads: int
) -> tuple[Detector, Embedder]:
    from . import onnx_models, onnx_runtime

    detector = onnx_runtime.OnnxMtcnnDetector(
        settings, onnx_models.open_mtcnn(model.runtime_files, device, threads)
    )
    if settings.embedder == DLIB_RESNET:
        return detector, _dlib_embedder(settings, model)
    network = onnx_models.NetworkOpening(
        lambda: onnx_models.open_facenet(model.runtime_files, device, threads)
    )
    return detector, onnx_runtime.OnnxFacenetEmbedder(settings, network)


def open_encoder(settings: Hyperparameters, model: ModelChoice, device: str) -> FaceEncoder:
    """The FaceEncoder of the settings' runtime and embedder on `device` ('cpu' or 'cuda'), on the files
    `resolve_models` found; WeightsError naming the fix when they cannot be opened."""
    if settings.embedder != model.embedder:
        raise WeightsError(f"model files for {model.embedder} given to embedder={settings.embedder}")
    threads = intra_op_threads()
    parts = _torch_parts if settings.runtime == TORCH_RUNTIME else _onnx_parts
    detector, embedder = parts(settings, model, device, threads)
    return FaceEncoder(settings, detector, embedder)
