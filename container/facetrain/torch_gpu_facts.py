"""Gather `GpuFacts` for runtime=torch: torch's CUDA build and torch's view of the GPU, and the driver.

Why CUDA cannot start is torch's own message: torch.cuda.init() raises it ("The NVIDIA driver on your
system is too old (found version 12020)…"). The driver's release and CUDA version come from `gpu_facts`,
which runtime=onnx uses alone: this module, the one that imports torch, is opened only for runtime=torch
(`inference.devices.gather_facts`).
"""

from __future__ import annotations

import torch

from .accelerator import GpuFacts
from .gpu_facts import REASON_CHARS, driver_cuda_version, driver_release


def first_sentence(message: str) -> str:
    """The first sentence of torch's message (the rest is download links), at most REASON_CHARS."""
    text = " ".join(message.split())
    return text.split(". ", 1)[0].rstrip(".")[:REASON_CHARS]


def unavailable_reason() -> str | None:
    """Torch's reason for CUDA not starting: torch.cuda.init raises it."""
    try:
        torch.cuda.init()
    except Exception as exc:  # torch raises RuntimeError, AssertionError ("not compiled with CUDA"), …
        return first_sentence(str(exc)) or type(exc).__name__
    return None


def gather() -> GpuFacts:
    """torch's facts on this machine (torch.cuda.init runs only when CUDA is already known unusable)."""
    torch_cuda = torch.version.cuda
    available = torch_cuda is not None and torch.cuda.is_available()
    name, capability, count = None, None, 0
    if available:
        count = torch.cuda.device_count()
        name = torch.cuda.get_device_name(0)
        capability = tuple(torch.cuda.get_device_capability(0))
    return GpuFacts(
        runtime="torch",
        package="torch",
        version=torch.__version__,
        build_cuda=torch_cuda,
        arch_list=tuple(torch.cuda.get_arch_list()) if torch_cuda else (),
        cuda_available=available,
        unavailable_reason=None if available or torch_cuda is None else unavailable_reason(),
        driver_version=driver_release(),
        driver_cuda=driver_cuda_version(),
        device_name=name,
        capability=capability,  # type: ignore[arg-type]
        device_count=count,
    )
