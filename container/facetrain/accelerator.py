"""Which device the job runs on, decided from facts: the instance type SageMaker names, what CUDA reports.

A GPU instance whose GPU the job cannot use is refused (DeviceError), never quietly run on the CPU at GPU
prices: the image's torch is a CUDA build that needs a recent NVIDIA driver and a GPU architecture it was
compiled for. `GPU_FAMILIES` is the one table of the SageMaker instance families with NVIDIA GPUs (the README
section "GPU instances" is checked against it). Torch-free: `gpu_facts` gathers the facts from torch.
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
    """What this machine's torch and NVIDIA driver report (None: not known)."""

    torch_version: str
    torch_cuda: str | None  # the CUDA version torch was built for ("13.0"); None for a CPU-only build
    arch_list: tuple[str, ...]  # torch.cuda.get_arch_list(): "sm_75", …, "compute_90" (PTX)
    cuda_available: bool  # torch.cuda.is_available()
    unavailable_reason: str | None = None  # torch's own words when CUDA cannot start
    driver_version: str | None = None  # the NVIDIA driver release, "535.183.01"
    driver_cuda: str | None = None  # the newest CUDA that driver runs, "12.2"
    device_name: str | None = None
    capability: tuple[int, int] | None = None
    device_count: int = 0


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


def required_driver(torch_cuda: str | None) -> str:
    """'R580 or newer' for a CUDA 13.x build (what NVIDIA's minor-version compatibility table requires)."""
    major = int(torch_cuda.split(".")[0]) if torch_cuda else None
    branch = MIN_DRIVER_BRANCH.get(major) if major is not None else None
    return f"R{branch} or newer" if branch else f"one that supports CUDA {torch_cuda}"


def driver_found(facts: GpuFacts) -> str:
    """The driver this machine has, in words."""
    if facts.driver_version is None and facts.driver_cuda is None:
        return "no NVIDIA driver"
    version = facts.driver_version or "of unknown version"
    supports = f" (supports CUDA up to {facts.driver_cuda})" if facts.driver_cuda else ""
    return f"NVIDIA driver {version}{supports}"


def cuda_problem(facts: GpuFacts) -> str | None:
    """Why the GPU cannot be used, or None when it can."""
    if facts.torch_cuda is None:
        return f"this torch ({facts.torch_version}) is a CPU-only build"
    if not facts.cuda_available:
        return f"CUDA cannot start ({facts.unavailable_reason or 'no CUDA GPU is visible'})"
    if facts.capability is not None and not capability_supported(facts.capability, facts.arch_list):
        return (
            f"the GPU {facts.device_name} ({sm(facts.capability)}) is not supported by this torch build "
            f"(compiled for {' '.join(facts.arch_list)})"
        )
    return None


def describe(facts: GpuFacts) -> str:
    """One log line: the GPU, the driver and the CUDA versions (or that none is usable and why)."""
    target = "the CPU only"
    if facts.torch_cuda:
        needs = f"needs driver {required_driver(facts.torch_cuda)}"
        target = f"CUDA {facts.torch_cuda} ({' '.join(facts.arch_list)}; {needs})"
    build = f"torch {facts.torch_version} built for {target}"
    if facts.cuda_available and facts.capability is not None:
        gpu = f"GPU {facts.device_name} ({sm(facts.capability)}) x{facts.device_count}"
    else:
        gpu = f"no usable GPU: {cuda_problem(facts) or 'none visible'}"
    return f"{gpu}; {driver_found(facts)}; {build}"


def family_note(instance_type: str, facts: GpuFacts) -> str:
    """A sentence on an instance family whose GPU this torch build cannot run even with a newer driver."""
    family = GPU_FAMILIES.get(instance_family(instance_type))
    if family is None or not facts.arch_list or capability_supported(family.capability, facts.arch_list):
        return ""
    return (
        f" {instance_family(instance_type)} has {family.gpu} GPUs ({family.architecture}, "
        f"{sm(family.capability)}), which this torch build does not support with any driver."
    )


def refusal(requested: str, instance_type: str | None, facts: GpuFacts, problem: str) -> str:
    """The failure reason, essential sentence first: what is unusable, what was found, what is needed."""
    if is_gpu_instance(instance_type) and instance_type:
        head = f"{instance_type} is a GPU instance but the job cannot use its GPU: {problem}."
        note = family_note(instance_type, facts)
    else:
        head = f"device={requested} was asked for but no CUDA GPU is usable: {problem}."
        note = ""
    needs = (
        f" This host has {driver_found(facts)}; this image's torch {facts.torch_version} is built for CUDA "
        f"{facts.torch_cuda} and needs NVIDIA driver {required_driver(facts.torch_cuda)}."
        if facts.torch_cuda
        else ""
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
