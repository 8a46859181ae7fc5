"""Gather `GpuFacts` on this machine: torch's CUDA build and state, the NVIDIA driver, the GPU.

The driver release is read from /proc/driver/nvidia/version (the kernel module writes it; it is visible
inside containers and needs no library), else from `nvidia-smi` when present: NVML's Python binding
(pynvml / nvidia-ml-py) is not in the lock. The newest CUDA the driver runs comes from the driver's own
libcuda.so.1 (cuDriverGetVersion, which needs no cuInit). Why CUDA cannot start is torch's own message:
torch.cuda.init() raises it ("The NVIDIA driver on your system is too old (found version 12020)…").
Every probe fails soft: a fact that cannot be read is None.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import torch

from .accelerator import GpuFacts

PROC_DRIVER_VERSION = Path("/proc/driver/nvidia/version")
DRIVER_RELEASE = re.compile(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)")
REASON_CHARS = 300


def driver_release(proc_file: Path = PROC_DRIVER_VERSION) -> str | None:
    """The NVIDIA driver release ('535.183.01'): /proc first, then nvidia-smi; None without a driver."""
    try:
        match = DRIVER_RELEASE.search(proc_file.read_text(encoding="utf-8", errors="replace"))
        if match:
            return match.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603 - the nvidia-smi on PATH, fixed arguments
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None


def driver_cuda_version() -> str | None:
    """The newest CUDA version the installed driver supports ('12.2'), from libcuda.so.1; None without it."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int(0)
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


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
    """Every fact this machine reports (torch.cuda.init runs only when CUDA is already known unusable)."""
    torch_cuda = torch.version.cuda
    available = torch_cuda is not None and torch.cuda.is_available()
    name, capability, count = None, None, 0
    if available:
        count = torch.cuda.device_count()
        name = torch.cuda.get_device_name(0)
        capability = tuple(torch.cuda.get_device_capability(0))
    return GpuFacts(
        torch_version=torch.__version__,
        torch_cuda=torch_cuda,
        arch_list=tuple(torch.cuda.get_arch_list()) if torch_cuda else (),
        cuda_available=available,
        unavailable_reason=None if available or torch_cuda is None else unavailable_reason(),
        driver_version=driver_release(),
        driver_cuda=driver_cuda_version(),
        device_name=name,
        capability=capability,  # type: ignore[arg-type]
        device_count=count,
    )
