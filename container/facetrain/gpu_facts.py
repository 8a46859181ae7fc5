"""Gather `GpuFacts` on this machine for one runtime: its CUDA build and state, the NVIDIA driver, the GPU.

The driver release is read from /proc/driver/nvidia/version (the kernel module writes it; it is visible
inside containers and needs no library), else from `nvidia-smi` when present: NVML's Python binding
(pynvml / nvidia-ml-py) is not in the lock. The driver's own libcuda.so.1, through ctypes, tells the newest
CUDA it runs (cuDriverGetVersion, which needs no cuInit) and, for runtime=onnx, whether CUDA starts and which
GPUs it sees (cuInit, cuDeviceGet*): the CUDA driver API is C, with no Python binding in the lock either.

runtime=onnx: ONNX Runtime's build (its package, the CUDA version it records, its execution providers) and
the driver's view of the GPU; `onnx_facts` is pure (its probes are parameters), `gather_onnx` runs them.
This module imports no torch: runtime=torch's facts (torch's CUDA build, torch's view of the GPU) are
`torch_gpu_facts`'s, opened only for that runtime. Every probe fails soft: a fact that cannot be read is None.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .accelerator import NOT_INSTALLED, GpuFacts, cuda_major

PROC_DRIVER_VERSION = Path("/proc/driver/nvidia/version")
DRIVER_RELEASE = re.compile(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)")
REASON_CHARS = 300
LIBCUDA = "libcuda.so.1"
# cuDeviceGetAttribute's CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR (cuda.h).
CAPABILITY_ATTRIBUTES = (75, 76)
CUDA_PROVIDER = "CUDAExecutionProvider"
# The GPU code in ONNX Runtime's CUDA 12 wheel, which reports no arch list of its own at run time: read from
# onnxruntime-gpu 1.26.0's libonnxruntime_providers_cuda.so (the fatbin entries of its .nv_fatbin section):
# cubins for sm_60 sm_70 sm_75 sm_80 sm_86 sm_90 and PTX for compute_90. So every GPU of compute capability
# 6.0 or higher runs it (Volta's V100 too, which torch's CUDA 13 build dropped; Blackwell through the PTX).
ONNX_CUDA12_ARCHS = ("sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "compute_90")


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


@dataclass(frozen=True)
class DriverProbe:
    """What the NVIDIA driver's libcuda.so.1 reports, without any CUDA runtime or framework.

    driver_cuda: the newest CUDA it runs ('12.2'); init_error: why cuInit failed (None: it succeeded);
    devices: each visible GPU's name and compute capability, in CUDA's order."""

    driver_cuda: str | None
    init_error: str | None
    devices: tuple[tuple[str, tuple[int, int]], ...] = ()


def cuda_version_text(version: int) -> str:
    """'12.2' of cuDriverGetVersion's 12020."""
    return f"{version // 1000}.{version % 1000 // 10}"


def cuda_error(libcuda: ctypes.CDLL, call: str, code: int) -> str:
    """'cuInit: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)', from the driver's own names."""
    name, text = ctypes.c_char_p(), ctypes.c_char_p()
    try:
        libcuda.cuGetErrorName(code, ctypes.byref(name))
        libcuda.cuGetErrorString(code, ctypes.byref(text))
    except AttributeError:
        pass
    label = (name.value or b"").decode(errors="replace") or f"CUresult {code}"
    words = (text.value or b"").decode(errors="replace")
    return f"{call}: {label} ({words})" if words else f"{call}: {label}"


def libcuda_probe(library: str = LIBCUDA) -> DriverProbe:
    """Ask the driver's libcuda (cuDriverGetVersion, cuInit, cuDeviceGetCount/Get/GetName/GetAttribute)."""
    try:
        libcuda = ctypes.CDLL(library)
    except OSError:
        return DriverProbe(None, f"no NVIDIA driver ({library} not found)")
    driver_cuda = None
    try:
        version = ctypes.c_int(0)
        found = libcuda.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value > 0
        driver_cuda = cuda_version_text(version.value) if found else None
        if (code := libcuda.cuInit(0)) != 0:
            return DriverProbe(driver_cuda, cuda_error(libcuda, "cuInit", code))
        count = ctypes.c_int(0)
        if (code := libcuda.cuDeviceGetCount(ctypes.byref(count))) != 0:
            return DriverProbe(driver_cuda, cuda_error(libcuda, "cuDeviceGetCount", code))
        devices = []
        for ordinal in range(count.value):
            device, name = ctypes.c_int(0), ctypes.create_string_buffer(256)
            major, minor = ctypes.c_int(0), ctypes.c_int(0)
            calls = (
                libcuda.cuDeviceGet(ctypes.byref(device), ordinal),
                libcuda.cuDeviceGetName(name, len(name), device),
                libcuda.cuDeviceGetAttribute(ctypes.byref(major), CAPABILITY_ATTRIBUTES[0], device),
                libcuda.cuDeviceGetAttribute(ctypes.byref(minor), CAPABILITY_ATTRIBUTES[1], device),
            )
            if any(calls):
                return DriverProbe(driver_cuda, cuda_error(libcuda, "cuDevice*", next(c for c in calls if c)))
            devices.append((name.value.decode(errors="replace"), (major.value, minor.value)))
    except AttributeError as exc:  # a libcuda without one of these entry points
        return DriverProbe(driver_cuda, f"{library} lacks {exc}")
    return DriverProbe(driver_cuda, None, tuple(devices))


def driver_cuda_version() -> str | None:
    """The newest CUDA version the installed driver supports ('12.2'), from libcuda.so.1; None without it."""
    try:
        libcuda = ctypes.CDLL(LIBCUDA)
        version = ctypes.c_int(0)
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
            return None
    except (OSError, AttributeError):
        return None
    return cuda_version_text(version.value)


# ---- runtime=onnx -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnnxBuild:
    """The installed ONNX Runtime: its package ('onnxruntime-gpu'), version, the CUDA version its build
    records (None: a CPU build) and its available execution providers; version NOT_INSTALLED when absent."""

    package: str
    version: str
    cuda_version: str | None
    providers: tuple[str, ...]


def onnx_build() -> OnnxBuild:
    """Read the installed onnxruntime: `get_available_providers()` and capi/build_and_package_info (which a
    CUDA build's setup.py writes `cuda_version` into)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return OnnxBuild("onnxruntime", NOT_INSTALLED, None, ())
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:  # a build without the file: its facts are the defaults below
        info = None  # type: ignore[assignment]
    return OnnxBuild(
        getattr(info, "package_name", "onnxruntime"),
        ort.__version__,
        getattr(info, "cuda_version", None),
        tuple(ort.get_available_providers()),
    )


def onnx_facts(build: OnnxBuild, driver: DriverProbe, release: str | None) -> GpuFacts:
    """The facts for runtime=onnx from what onnxruntime, the driver's libcuda and its release say.

    The build has CUDA when CUDAExecutionProvider is among its providers; its CUDA version is the one the
    build records (the PyPI CUDA 12 wheels up to 1.26; 1.27 and later are CUDA 13), else 12 (ONNX Runtime's
    documented PyPI default since 1.19)."""
    cuda_build = CUDA_PROVIDER in build.providers
    build_cuda = (build.cuda_version or "12") if cuda_build else None
    name, capability = driver.devices[0] if driver.devices else (None, None)
    available = driver.init_error is None and bool(driver.devices)
    reason = driver.init_error or (None if driver.devices else "the NVIDIA driver sees no GPU")
    return GpuFacts(
        runtime="onnx",
        package=build.package,
        version=build.version,
        build_cuda=build_cuda,
        arch_list=ONNX_CUDA12_ARCHS if cuda_major(build_cuda) == 12 else (),  # others: not known
        cuda_available=available,
        unavailable_reason=None if available else reason,
        driver_version=release,
        driver_cuda=driver.driver_cuda,
        device_name=name,
        capability=capability,
        device_count=len(driver.devices),
        providers=build.providers,
    )


def gather_onnx() -> GpuFacts:
    """runtime=onnx's facts on this machine: onnxruntime's build, the driver's libcuda and its release."""
    return onnx_facts(onnx_build(), libcuda_probe(), driver_release())
