"""The device the networks run on, for either runtime: "cpu" or "cuda", decided from this machine's facts.

runtime=onnx gathers its facts without torch (ONNX Runtime's providers, the driver's libcuda); runtime=torch
gathers torch's (torch is imported then only). Both go through the one decision,
`accelerator.decide_device`, which refuses a GPU that is asked for or paid for but cannot be used.
"""

from __future__ import annotations

import logging

from .. import gpu_facts
from ..accelerator import GpuFacts, decide_device, describe
from ..contract.hyperparameters import ONNX_RUNTIME, TORCH_RUNTIME
from .model_files import torch_unavailable

log = logging.getLogger("facetrain")
RUNTIMES = (ONNX_RUNTIME, TORCH_RUNTIME)


def gather_facts(runtime: str) -> GpuFacts:
    """This machine's facts for `runtime` ('onnx' or 'torch'); torch is imported for runtime=torch only."""
    if runtime == ONNX_RUNTIME:
        return gpu_facts.gather_onnx()
    if runtime == TORCH_RUNTIME:
        try:
            from .. import torch_gpu_facts  # the one import of torch here (the import contracts ignore it)
        except ImportError as exc:
            raise torch_unavailable(exc) from None
        return torch_gpu_facts.gather()
    raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")


def choose_device(requested: str, instance_type: str | None, runtime: str) -> str:
    """Resolve the `device` setting ('auto', 'cpu', 'cuda') for `runtime` ('onnx' or 'torch') on this instance
    type (None: not known, as in `facetrain identify`): "cpu" or "cuda". Logs the GPU, driver and CUDA
    versions (and a warning when the choice deserves one); DeviceError for device=cuda, or a GPU instance
    type, whose GPU this runtime cannot use."""
    facts = gather_facts(runtime)
    log.info("accelerator on %s: %s", instance_type or "an unnamed instance type", describe(facts))
    choice = decide_device(requested, instance_type, facts)
    if choice.warning:
        log.warning("%s", choice.warning)
    return choice.device
