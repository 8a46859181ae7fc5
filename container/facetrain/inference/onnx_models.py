"""The exported networks opened with ONNX Runtime: the CPU execution provider, or CUDA's on a GPU.

Every file is checked against the sha256 its export manifest records before it is opened
(`manifest.read_manifest`), so the digests the outputs record are those of the files that ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..accelerator import DeviceError
from ..model_files import ModelFile, WeightsError
from .manifest import EXPORT_HINT, read_manifest
from .mtcnn import MtcnnNetworks

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def providers(device: str) -> list[str]:
    """ONNX Runtime's providers for `device` ('cpu' or 'cuda'); DeviceError when CUDA's is not in this
    onnxruntime build (the CPU-only `onnxruntime` wheel instead of `onnxruntime-gpu`)."""
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        available = ort.get_available_providers()
        if CUDA not in available:
            raise DeviceError(
                f"device=cuda needs ONNX Runtime's {CUDA}, and this onnxruntime offers only "
                f"{', '.join(available)}: install onnxruntime-gpu (CUDA 12) instead of onnxruntime"
            )
        return [CUDA, CPU]
    raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")


class OnnxNetwork:
    """One ONNX Runtime session called like the torch module: float32 batch in, outputs in order."""

    def __init__(self, path: Path, provider_names: Sequence[str], threads: int | None) -> None:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # ONNX Runtime's threads spin between operators by default; on a shared host that takes cores from
        # the other threads (decoding) and processes. Measured here on faces-dev, 2 threads: spinning,
        # P-Net 0.50 s vs torch's 0.25 s under light load; not spinning, 0.27 s while a 2-worker test run
        # held the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(provider_names))
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise WeightsError(f"ONNX Runtime cannot open {path.name} ({exc}); {EXPORT_HINT}") from None
        if provider_names[0] == CUDA and CUDA not in self.session.get_providers():
            # ONNX Runtime falls back to the CPU when its CUDA provider fails to load; a GPU job must not.
            raise DeviceError(
                f"device=cuda, but ONNX Runtime could not use the GPU for {path.name} (its CUDA provider "
                "did not load: onnxruntime-gpu needs the CUDA 12 and cuDNN 9 libraries and an NVIDIA driver "
                ">= 525); see the log above for ONNX Runtime's reason, or set device=cpu"
            )
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})


@dataclass(frozen=True)
class OnnxModels:
    """The four networks of an export folder, opened for `device`."""

    files: tuple[ModelFile, ...]
    mtcnn: MtcnnNetworks
    facenet: OnnxNetwork

    @property
    def digests(self) -> dict[str, str]:
        """File name → sha256 of every ONNX file (as `ModelChoice.digests`)."""
        return {f.path.name: f.sha256 for f in self.files}


def load_models(folder: Path, device: str = "cpu", threads: int | None = None) -> OnnxModels:
    """Open an export folder's networks on `device` with `threads` intra-op threads (None: ONNX Runtime's
    default); WeightsError naming the file and the fix when one is missing, changed or unreadable."""
    names = providers(device)
    files = read_manifest(folder)
    sessions = {f.role: OnnxNetwork(f.path, names, threads) for f in files}
    mtcnn = MtcnnNetworks(pnet=sessions["pnet"], rnet=sessions["rnet"], onet=sessions["onet"])
    return OnnxModels(files=files, mtcnn=mtcnn, facenet=sessions["facenet"])
