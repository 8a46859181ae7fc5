"""The exported networks opened with ONNX Runtime: the CPU execution provider, or CUDA's on a GPU.

Every file is checked against the sha256 its export manifest records before it is opened
(`manifest.read_manifest`), so the digests the outputs record are those of the files that ran.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..accelerator import DeviceError
from ..gpu_facts import CUDA_PROVIDER
from .manifest import EXPORT_HINT, read_manifest
from .model_files import ModelFile, WeightsError
from .mtcnn import MtcnnNetworks

CPU = "CPUExecutionProvider"
CUDA = CUDA_PROVIDER
# cuDNN's convolution algorithm chosen by its heuristics, not by timing every algorithm (ONNX Runtime's
# default, EXHAUSTIVE): P-Net's input size differs with each photo's shape and R/O-Net's batch with its
# candidates, and an exhaustive search runs again for every new shape. Not measured here (no GPU was lent);
# benchmarks/bench_gpu.py is where to compare the two.
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}
Provider = str | tuple[str, dict[str, str]]


def providers(device: str) -> list[Provider]:
    """ONNX Runtime's providers for `device` ('cpu' or 'cuda'); DeviceError when CUDA's is not in this
    onnxruntime build (the CPU-only `onnxruntime` wheel instead of `onnxruntime-gpu`)."""
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        if hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu from PyPI finds the CUDA 12 / cuDNN 9 libraries of the nvidia-* wheels only
            # once they are loaded: its provider library has no RUNPATH to them (ONNX Runtime >= 1.21).
            ort.preload_dlls()
        available = ort.get_available_providers()
        if CUDA not in available:
            raise DeviceError(
                f"device=cuda needs ONNX Runtime's {CUDA}, and this onnxruntime offers only "
                f"{', '.join(available)}: install onnxruntime-gpu (CUDA 12) instead of onnxruntime"
            )
        return [(CUDA, CUDA_OPTIONS), CPU]
    raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")


class OnnxNetwork:
    """One ONNX Runtime session called like the torch module: float32 batch in, outputs in order."""

    def __init__(self, path: Path, provider_names: Sequence[Provider], threads: int | None) -> None:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # ONNX Runtime's threads spin between operators by default; on a shared host that takes cores from
        # the other threads (decoding) and processes. Measured here on faces-dev, 2 threads: spinning,
        # P-Net 0.50 s vs torch's 0.25 s under light load; not spinning, 0.27 s while a 2-worker test run
        # held the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # No memory arena: P-Net runs on a pyramid of sizes that differ per photo and R/O-Net on as many
        # crops as candidates, so the arena grew with every new shape and kept it. Measured (runtime=onnx,
        # faces-dev repeated x2 and x8, peak RSS): with the arena 627 -> 771 MiB, without it 553 -> 629 MiB,
        # photo loop times equal within the noise of 3 alternating rounds.
        options.enable_cpu_mem_arena = False
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(provider_names))
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise WeightsError(f"ONNX Runtime cannot open {path.name} ({exc}); {EXPORT_HINT}") from None
        if provider_names[0] != CPU and CUDA not in self.session.get_providers():
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


def open_mtcnn(files: Sequence[ModelFile], device: str, threads: int | None) -> MtcnnNetworks:
    """P-Net, R-Net and O-Net of `files` (roles pnet, rnet, onet; checked against their manifest already)
    opened on `device`."""
    names = providers(device)
    by_role = {f.role: f.path for f in files}
    return MtcnnNetworks(*(OnnxNetwork(by_role[role], names, threads) for role in ("pnet", "rnet", "onet")))


def open_facenet(files: Sequence[ModelFile], device: str, threads: int | None) -> OnnxNetwork:
    """InceptionResnetV1 of `files` (role facenet) opened on `device`."""
    return OnnxNetwork(next(f.path for f in files if f.role == "facenet"), providers(device), threads)


class NetworkOpening:
    """A network whose session is built on a thread of its own, while the first photos are decoded and
    detected: called, it waits for the session (and raises what opening it raised) and runs it.

    Why: building InceptionResnetV1's session takes ~0.2 s of a job's ~0.7 s from process start to its
    first photo examined (measured on 2 cores), and ONNX Runtime releases the GIL while it builds one, so
    the detector's work goes on meanwhile; the embedder is needed only when the first batch is full."""

    def __init__(self, opener: Callable[[], OnnxNetwork]) -> None:
        self._opened: Future[OnnxNetwork] = Future()
        # Not a daemon: the interpreter waits for it at exit (≤ the session's build time) even when the job
        # ends before its first batch; a session still being built while the interpreter finalises aborts
        # the process ("terminate called without an active exception", exit -6).
        self._thread = threading.Thread(target=self._open, args=(opener,), name="open-network", daemon=False)
        self._thread.start()

    def _open(self, opener: Callable[[], OnnxNetwork]) -> None:
        try:
            self._opened.set_result(opener())
        except BaseException as exc:  # handed to the caller, who reports it as the job's failure
            self._opened.set_exception(exc)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._opened.result()(batch)


def load_models(folder: Path, device: str = "cpu", threads: int | None = None) -> OnnxModels:
    """Open an export folder's four networks on `device` with `threads` intra-op threads (None: ONNX
    Runtime's default); WeightsError naming the file and the fix when one is missing, changed or
    unreadable."""
    files = read_manifest(folder)
    return OnnxModels(
        files=files, mtcnn=open_mtcnn(files, device, threads), facenet=open_facenet(files, device, threads)
    )
