"""Which device the job runs on, decided from facts: the instance type SageMaker names, what CUDA reports.

A GPU instance whose GPU the job cannot use is refused (DeviceError), never quietly run on the CPU at GPU
prices: the runtime that runs the networks (ONNX Runtime, or torch: the `runtime` setting) is a CUDA build
that needs a recent enough NVIDIA driver and a GPU architecture it was compiled for. One decision
(`decide_device`) serves both runtimes: `GpuFacts` says whose CUDA build it describes. `GPU_FAMILIES` is the
one table of the SageMaker instance families with NVIDIA GPUs (the README section "GPU instances" is checked
against it). Imports no runtime: `gpu_facts` gathers the facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

LOCAL_GPU = "local_gpu"  # SageMaker local mode's GPU instance type ("local" is its CPU one)
NEURON_PREFIXES = ("ml.trn", "ml.inf")  # AWS Trainium / Inferentia: accelerators, but not CUDA
# NVIDIA's minimum driver branch per CUDA major version (minor-version compatibility): CUDA 13.x needs R580.
MIN_DRIVER_BRANCH = {11: 450, 12: 525, 13: 580}
ARCH_PATTERN = re.compile(r"^(sm|compute)_(\d+)(\d)[af]?$")
NOT_INSTALLED = "not installed"  # GpuFacts.version of a runtime whose package is absent


class DeviceError(ValueError):
    """The requested compute device is not available, or a paid-for GPU is unusable."""


@dataclass(frozen=True)
class GpuFamily:
    """The NVIDIA GPU of a SageMaker instance family."""

    gpu: str
    architecture: str
    capability: tuple[int, int]


GPU_FAMILIES: dict[str, GpuFamily] = {
    "ml.p2": GpuFamily("K80", "Kepler", (3, 7)),
    "ml.p3": GpuFamily("V100", "Volta", (7, 0)),
    "ml.p3dn": GpuFamily("V100", "Volta", (7, 0)),
    "ml.g4dn": GpuFamily("T4", "Turing", (7, 5)),
    "ml.g5": GpuFamily("A10G", "Ampere", (8, 6)),
    "ml.p4d": GpuFamily("A100", "Ampere", (8, 0)),
    "ml.p4de": GpuFamily("A100", "Ampere", (8, 0)),
    "ml.g6": GpuFamily("L4", "Ada Lovelace", (8, 9)),
    "ml.g6e": GpuFamily("L40S", "Ada Lovelace", (8, 9)),
    "ml.p5": GpuFamily("H100", "Hopper", (9, 0)),
    "ml.p5e": GpuFamily("H200", "Hopper", (9, 0)),
    "ml.p5en": GpuFamily("H200", "Hopper", (9, 0)),
    "ml.p6-b200": GpuFamily("B200", "Blackwell", (10, 0)),
}


@dataclass(frozen=True)
class GpuFacts:
    """What one runtime's build and this machine's NVIDIA driver report (None: not known).

    `runtime` names whose CUDA build the facts describe: "torch" (torch's CUDA build, torch's view of the
    GPU) or "onnx" (ONNX Runtime's build and its execution providers; the GPU as the driver's libcuda
    reports it). `package` is the distribution that holds that build ("torch", "onnxruntime-gpu", …).
    """

    runtime: str
    package: str
    version: str  # the package's version ("2.14.1+cu130", "1.26.0"); "not installed" when absent
    build_cuda: str | None  # the CUDA version the build targets ("13.0", "12.8"); None: a CPU-only build
    arch_list: tuple[str, ...]  # the GPU code in the build: "sm_75", …, "compute_90" (PTX)
    cuda_available: bool  # a CUDA GPU is visible and CUDA starts on it
    unavailable_reason: str | None = None  # why CUDA cannot start, in the runtime's or the driver's words
    driver_version: str | None = None  # the NVIDIA driver release, "535.183.01"
    driver_cuda: str | None = None  # the newest CUDA that driver runs, "12.2"
    device_name: str | None = None
    capability: tuple[int, int] | None = None
    device_count: int = 0
    providers: tuple[str, ...] = ()  # runtime "onnx": ONNX Runtime's available execution providers


@dataclass(frozen=True)
class DeviceChoice:
    """The device to run on, and a warning for the log when the choice deserves one."""

    device: Literal["cpu", "cuda"]
    warning: str | None = None


def instance_family(instance_type: str) -> str:
    """'ml.g5' of 'ml.g5.xlarge' (the type itself when it has no size)."""
    return instance_type.rsplit(".", 1)[0] if instance_type.count(".") >= 2 else instance_type


def is_gpu_instance(instance_type: str | None) -> bool:
    """True for an instance type with NVIDIA GPUs: a family of GPU_FAMILIES, any other ml.g*/ml.p* family
    (a newer one), or SageMaker local mode's 'local_gpu'."""
    if not instance_type:
        return False
    if instance_type == LOCAL_GPU or instance_family(instance_type) in GPU_FAMILIES:
        return True
    return re.match(r"^ml\.[gp]\d", instance_type) is not None


def is_neuron_instance(instance_type: str | None) -> bool:
    """True for AWS Trainium / Inferentia instance types, whose accelerators are not CUDA devices."""
    return bool(instance_type) and str(instance_type).startswith(NEURON_PREFIXES)


def capability_supported(capability: tuple[int, int], arch_list: tuple[str, ...]) -> bool:
    """Whether code in `arch_list` runs on a GPU of `capability`: a cubin (sm_XY) runs on the same major
    version at an equal or higher minor one; PTX (compute_XY) is compiled for any capability >= XY."""
    for arch in arch_list:
        match = ARCH_PATTERN.match(arch)
        if match is None:
            continue
        kind, major, minor = match.group(1), int(match.group(2)), int(match.group(3))
        if kind == "sm" and major == capability[0] and minor <= capability[1]:
            return True
        if kind == "compute" and (major, minor) <= capability:
            return True
    return False


def sm(capability: tuple[int, int]) -> str:
    """'sm_86' of (8, 6)."""
    return f"sm_{capability[0]}{capability[1]}"


def cuda_major(version: str | None) -> int | None:
    """12 of '12.2' (None when not known)."""
    head = version.split(".")[0] if version else ""
    return int(head) if head.isdigit() else None


def required_driver(build_cuda: str | None) -> str:
    """'R580 or newer' for a CUDA 13.x build (what NVIDIA's minor-version compatibility table requires)."""
    major = cuda_major(build_cuda)
    branch = MIN_DRIVER_BRANCH.get(major) if major is not None else None
    return f"R{branch} or newer" if branch else f"one that supports CUDA {build_cuda}"


def driver_too_old(facts: GpuFacts) -> bool:
    """Whether the driver's newest CUDA is of an older major version than the build's (CUDA's minor-version
    compatibility runs a 12.x build on any 12.x driver, never on an 11.x one)."""
    driver, build = cuda_major(facts.driver_cuda), cuda_major(facts.build_cuda)
    return driver is not None and build is not None and driver < build


def build_name(facts: GpuFacts) -> str:
    """'torch 2.14.1+cu130', 'onnxruntime-gpu 1.26.0'."""
    return f"{facts.package} {facts.version}"


def driver_found(facts: GpuFacts) -> str:
    """The driver this machine has, in words."""
    if facts.driver_version is None and facts.driver_cuda is None:
        return "no NVIDIA driver"
    version = facts.driver_version or "of unknown version"
    supports = f" (supports CUDA up to {facts.driver_cuda})" if facts.driver_cuda else ""
    return f"NVIDIA driver {version}{supports}"


def cpu_only_build(facts: GpuFacts) -> str:
    """Why a build without CUDA cannot use the GPU, and for ONNX Runtime which package has CUDA."""
    if facts.runtime != "onnx":
        return f"this {facts.package} ({facts.version}) is a CPU-only build"
    if facts.version == NOT_INSTALLED:
        return "onnxruntime is not installed: install onnxruntime-gpu (the `gpu` extra)"
    return (
        f"this {facts.package} ({facts.version}) has no CUDAExecutionProvider (it offers "
        f"{', '.join(facts.providers) or 'none'}): install onnxruntime-gpu (the `gpu` extra) instead of "
        "onnxruntime"
    )


def cuda_problem(facts: GpuFacts) -> str | None:
    """Why the GPU cannot be used, or None when it can."""
    if facts.build_cuda is None:
        return cpu_only_build(facts)
    if not facts.cuda_available:
        return f"CUDA cannot start ({facts.unavailable_reason or 'no CUDA GPU is visible'})"
    if driver_too_old(facts):
        return f"the {driver_found(facts)} is older than this {facts.package} build's CUDA {facts.build_cuda}"
    known = facts.capability is not None and facts.arch_list  # an unrecorded arch list is not checked
    if known and not capability_supported(facts.capability, facts.arch_list):  # type: ignore[arg-type]
        return (
            f"the GPU {facts.device_name} ({sm(facts.capability)}) is not supported by this "
            f"{facts.package} build (compiled for {' '.join(facts.arch_list)})"
        )
    return None


def describe(facts: GpuFacts) -> str:
    """One log line: the GPU, the driver and the CUDA versions (or that none is usable and why)."""
    target = "the CPU only"
    if facts.build_cuda:
        needs = f"needs driver {required_driver(facts.build_cuda)}"
        archs = " ".join(facts.arch_list) or "architectures not recorded"
        target = f"CUDA {facts.build_cuda} ({archs}; {needs})"
    build = f"{build_name(facts)} built for {target}"
    if facts.runtime == "onnx":
        build += f"; providers {', '.join(facts.providers) or 'none'}"
    problem = cuda_problem(facts)
    if problem is None and facts.capability is not None:
        gpu = f"GPU {facts.device_name} ({sm(facts.capability)}) x{facts.device_count}"
    else:
        gpu = f"no usable GPU: {problem or 'none visible'}"
    return f"{gpu}; {driver_found(facts)}; {build}"


def family_note(instance_type: str, facts: GpuFacts) -> str:
    """A sentence on an instance family whose GPU this torch build cannot run even with a newer driver."""
    family = GPU_FAMILIES.get(instance_family(instance_type))
    if family is None or not facts.arch_list or capability_supported(family.capability, facts.arch_list):
        return ""
    return (
        f" {instance_family(instance_type)} has {family.gpu} GPUs ({family.architecture}, "
        f"{sm(family.capability)}), which this {facts.package} build does not support with any driver."
    )


def refusal(requested: str, instance_type: str | None, facts: GpuFacts, problem: str) -> str:
    """The failure reason, essential sentence first: what is unusable, what was found, what is needed."""
    if is_gpu_instance(instance_type) and instance_type:
        head = f"{instance_type} is a GPU instance but the job cannot use its GPU: {problem}."
        note = family_note(instance_type, facts)
    else:
        head = f"device={requested} was asked for but no CUDA GPU is usable: {problem}."
        note = ""
    needs = f" This host has {driver_found(facts)}" + (
        f"; this image's {build_name(facts)} is built for CUDA {facts.build_cuda} and needs NVIDIA driver "
        f"{required_driver(facts.build_cuda)}."
        if facts.build_cuda
        else "."
    )
    fixes = (
        " Fix: use an instance family listed as working in the README (section 'GPU instances'), "
        "or set device=cpu to run on the CPU on purpose (slow, and GPU time is still billed)."
        if is_gpu_instance(instance_type)
        else " Fix: set device=auto or device=cpu."
    )
    return head + needs + note + fixes


def decide_device(requested: str, instance_type: str | None, facts: GpuFacts) -> DeviceChoice:
    """The device for the `device` setting ('auto', 'cpu', 'cuda') on this instance type with these facts.

    cuda when asked or auto and usable; cpu when asked (a warning on a GPU instance); auto without a usable
    GPU runs on the CPU only where no GPU is paid for. DeviceError when device=cuda, or a GPU instance
    type, meets a GPU that cannot be used (no driver, a driver too old, an unsupported architecture).
    """
    paid_gpu = is_gpu_instance(instance_type)
    if requested == "cpu":
        if paid_gpu:
            return DeviceChoice(
                "cpu",
                f"device=cpu on {instance_type}, a GPU instance: running on the CPU as asked, while the GPU "
                "time is billed; use a CPU instance type, or device=auto to use the GPU",
            )
        return DeviceChoice("cpu")
    problem = cuda_problem(facts)
    if problem is None:
        return DeviceChoice("cuda")
    if requested == "cuda" or paid_gpu:
        raise DeviceError(refusal(requested, instance_type, facts, problem))
    if is_neuron_instance(instance_type):
        return DeviceChoice(
            "cpu",
            f"{instance_type} has AWS Neuron accelerators, which this image cannot use (it runs CUDA "
            "or the CPU): running on the CPU; a CPU instance type costs less",
        )
    if facts.cuda_available:  # a GPU is there but this build cannot run on it
        return DeviceChoice("cpu", f"{problem}: running on the CPU (device=auto)")
    return DeviceChoice("cpu")
