"""A GPU that is used or refused loudly: `accelerator.decide_device` over either runtime's facts (torch's
CUDA build, or ONNX Runtime's with the driver's libcuda), the probes of `gpu_facts`, `devices.choose_device`,
the instance type in resourceconfig.json, and the real `train` on a GPU instance type of this CPU machine."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from facetrain.accelerator import (
    GPU_FAMILIES,
    MIN_DRIVER_BRANCH,
    DeviceError,
    GpuFacts,
    capability_supported,
    decide_device,
    describe,
    is_gpu_instance,
    sm,
)
from facetrain.gpu_facts import ONNX_CUDA12_ARCHS
from facetrain.sagemaker_env import load_environment, write_tree
from PIL import Image
from support.device_choice import assert_choice

TRAIN = Path(sys.executable).with_name("train")  # the console script of the venv running the tests
CUDA13_ARCHS = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")  # torch 2.14.1+cu130's list
TOO_OLD = "The NVIDIA driver on your system is too old (found version 12020)"

BUILD = GpuFacts(
    runtime="torch",
    package="torch",
    version="2.14.1+cu130",
    build_cuda="13.0",
    arch_list=CUDA13_ARCHS,
    cuda_available=False,
)
NO_DRIVER = dataclasses.replace(BUILD, unavailable_reason="Found no NVIDIA driver on your system")
OLD_DRIVER = dataclasses.replace(
    BUILD, unavailable_reason=TOO_OLD, driver_version="535.183.01", driver_cuda="12.2"
)


def usable(name: str, capability: tuple[int, int]) -> GpuFacts:
    """A GPU CUDA started on, with an R580 driver."""
    return dataclasses.replace(
        BUILD,
        cuda_available=True,
        driver_version="580.65.06",
        driver_cuda="13.0",
        device_name=name,
        capability=capability,
        device_count=1,
    )


A10G, L4, V100 = usable("NVIDIA A10G", (8, 6)), usable("NVIDIA L4", (8, 9)), usable("Tesla V100", (7, 0))
CPU_BUILD = dataclasses.replace(BUILD, version="2.14.1+cpu", build_cuda=None, arch_list=())


# ---- the decision -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "instance_type", "facts", "device", "warned"),
    [
        ("auto", "ml.g5.xlarge", A10G, "cuda", None),
        ("auto", "ml.g6.xlarge", L4, "cuda", None),  # sm_89 runs the sm_86 cubins
        ("cuda", "local", A10G, "cuda", None),
        ("auto", "local", NO_DRIVER, "cpu", None),  # a developer's machine: auto means "CUDA when usable"
        ("auto", None, NO_DRIVER, "cpu", None),  # a hand-made tree without current_instance_type
        ("auto", "ml.m5.xlarge", OLD_DRIVER, "cpu", None),
        ("auto", "ml.trn1.2xlarge", NO_DRIVER, "cpu", "AWS Neuron"),
        ("auto", "local", V100, "cpu", "sm_70"),  # a GPU this build cannot run, where none is paid for
        ("cpu", "local", A10G, "cpu", None),
        ("cpu", "ml.g5.xlarge", A10G, "cpu", "GPU instance"),  # an explicit choice: allowed, said loudly
        ("cpu", "ml.g4dn.xlarge", OLD_DRIVER, "cpu", "GPU instance"),
    ],
)
def test_the_device_chosen(requested, instance_type, facts, device, warned) -> None:
    choice = decide_device(requested, instance_type, facts)
    assert_choice(choice, device, warned)


@pytest.mark.parametrize(
    ("requested", "instance_type", "facts", "words"),
    [
        (
            "auto",
            "ml.g5.xlarge",
            OLD_DRIVER,
            [
                "ml.g5.xlarge is a GPU instance",
                TOO_OLD,
                "535.183.01",
                "CUDA up to 12.2",
                "R580",
                "device=cpu",
            ],
        ),
        (
            "auto",
            "ml.g4dn.xlarge",
            NO_DRIVER,
            ["ml.g4dn.xlarge is a GPU instance", "no NVIDIA driver", "R580"],
        ),
        ("auto", "ml.p3.2xlarge", V100, ["sm_70", "not supported", "V100", "with any driver"]),
        ("auto", "ml.p3.2xlarge", OLD_DRIVER, ["535.183.01", "V100 GPUs (Volta, sm_70)"]),
        ("auto", "ml.g7.12xlarge", NO_DRIVER, ["ml.g7.12xlarge is a GPU instance"]),  # newer than the table
        ("auto", "local_gpu", OLD_DRIVER, ["local_gpu is a GPU instance", "R580"]),
        ("cuda", "ml.g5.xlarge", NO_DRIVER, ["ml.g5.xlarge is a GPU instance"]),
        ("cuda", "local", NO_DRIVER, ["device=cuda", "no CUDA GPU", "device=auto or device=cpu"]),
        ("auto", "ml.g5.xlarge", CPU_BUILD, ["CPU-only build"]),
    ],
)
def test_an_unusable_gpu_is_refused_naming_what_was_found_and_what_is_needed(
    requested, instance_type, facts, words
) -> None:
    with pytest.raises(DeviceError) as refused:
        decide_device(requested, instance_type, facts)
    message = str(refused.value)
    for word in words:
        assert word in message, message
    assert len(message) < 1024, "SageMaker shows 1024 characters of the failure"


@pytest.mark.parametrize(
    ("instance_type", "gpu"),
    [
        ("ml.g4dn.xlarge", True),
        ("ml.g5.48xlarge", True),
        ("ml.p5e.48xlarge", True),
        ("ml.p6-b200.48xlarge", True),
        ("ml.g7.xlarge", True),
        ("local_gpu", True),
        ("ml.m5.xlarge", False),
        ("ml.c5.2xlarge", False),
        ("ml.trn1.2xlarge", False),
        ("ml.inf2.xlarge", False),
        ("local", False),
        ("", False),
        (None, False),
    ],
)
def test_which_instance_types_have_nvidia_gpus(instance_type, gpu) -> None:
    assert is_gpu_instance(instance_type) is gpu


@pytest.mark.parametrize(
    ("capability", "archs", "supported"),
    [
        ((8, 6), CUDA13_ARCHS, True),
        ((8, 9), CUDA13_ARCHS, True),  # same major, higher minor: the sm_86 cubins run
        ((12, 1), CUDA13_ARCHS, True),
        ((7, 5), CUDA13_ARCHS, True),
        ((7, 0), CUDA13_ARCHS, False),  # Volta: dropped by CUDA 13
        ((3, 7), CUDA13_ARCHS, False),  # Kepler (K80)
        ((8, 0), ("sm_86",), False),  # a cubin never runs on a lower minor
        ((7, 0), ("sm_75", "compute_70"), True),  # PTX is compiled for any capability at or above it
        ((9, 0), ("sm_90a",), True),
    ],
)
def test_the_architectures_a_build_runs_on(capability, archs, supported) -> None:
    assert capability_supported(capability, archs) is supported


def test_every_family_of_the_table_is_a_gpu_instance_and_each_build_runs_on_the_documented_ones() -> None:
    assert all(is_gpu_instance(f"{family}.xlarge") for family in GPU_FAMILIES)
    torch_runs = {
        family for family, gpu in GPU_FAMILIES.items() if capability_supported(gpu.capability, CUDA13_ARCHS)
    }
    assert torch_runs == set(GPU_FAMILIES) - {"ml.p2", "ml.p3", "ml.p3dn"}  # runtime=torch (CUDA 13)
    image_runs = {
        family
        for family, gpu in GPU_FAMILIES.items()
        if capability_supported(gpu.capability, ONNX_CUDA12_ARCHS)
    }
    assert image_runs == set(GPU_FAMILIES) - {"ml.p2"}  # the image: ONNX Runtime's CUDA 12 build


def test_the_log_line_names_gpu_driver_and_cuda_versions() -> None:
    line = describe(A10G)
    for word in ("NVIDIA A10G", "sm_86", "580.65.06", "CUDA up to 13.0", "2.14.1+cu130", "CUDA 13.0"):
        assert word in line, line
    assert describe(OLD_DRIVER).startswith(f"no usable GPU: CUDA cannot start ({TOO_OLD})")


# ---- the probes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "proc_text",
    [
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n",
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.183.01  Release Build  (dvs@U16)\n",
    ],
)
def test_the_driver_release_is_read_from_proc(tmp_path, proc_text) -> None:
    from facetrain.gpu_facts import driver_release

    proc = tmp_path / "version"
    proc.write_text(proc_text + "GCC version:  gcc version 10.5.0\n")
    assert driver_release(proc) == "535.183.01"


def test_without_proc_the_driver_release_comes_from_nvidia_smi(tmp_path, monkeypatch) -> None:
    from facetrain.gpu_facts import driver_release

    smi = tmp_path / "bin" / "nvidia-smi"  # a stand-in printing what nvidia-smi prints for this query
    smi.parent.mkdir()
    smi.write_text('#!/bin/sh\n[ "$1" = "--query-gpu=driver_version" ] && echo "470.256.02"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ['PATH']}")
    assert driver_release(tmp_path / "absent") == "470.256.02"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert driver_release(tmp_path / "absent") is None


def test_torchs_reason_keeps_its_first_sentence() -> None:
    from facetrain.torch_gpu_facts import first_sentence

    message = (
        f"{TOO_OLD}. Please update your GPU driver by downloading and installing a new version from the "
        "URL: http://www.nvidia.com/Download/index.aspx Alternatively, go to: https://pytorch.org to install"
    )
    assert first_sentence(message) == TOO_OLD


def test_this_machines_facts() -> None:
    import torch
    from facetrain.inference.devices import gather_facts

    facts = gather_facts("torch")
    assert (facts.runtime, facts.package) == ("torch", "torch")
    assert (facts.version, facts.build_cuda) == (torch.__version__, torch.version.cuda)
    if torch.cuda.is_available():
        assert facts.cuda_available and facts.device_name and facts.capability
    else:  # this CPU machine: torch's own reason is captured, not guessed
        assert not facts.cuda_available and facts.device_name is None
        assert facts.unavailable_reason and "NVIDIA" in facts.unavailable_reason, facts


# ---- the instance type in resourceconfig.json --------------------------------------------------------


def test_the_tree_names_its_instance_type_and_the_job_reads_it(tmp_path) -> None:
    tree = write_tree(tmp_path / "a", {}, {}, instance_type="ml.g5.xlarge")
    resources = json.loads(tree.resourceconfig_file.read_text())
    assert resources["current_instance_type"] == "ml.g5.xlarge"
    assert load_environment(tree.base).instance_type == "ml.g5.xlarge"
    assert load_environment(write_tree(tmp_path / "b", {}, {}).base).instance_type == "local"
    tree.resourceconfig_file.write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    assert load_environment(tree.base).instance_type is None


# ---- the job ------------------------------------------------------------------------------------------


def gpu_instance_tree(sagemaker_tree, instance_type: str):
    """The tree rewritten as SageMaker writes it on `instance_type`, with one photo (no face needed: the
    device is chosen before any photo is read)."""
    resources = json.loads(sagemaker_tree.tree.resourceconfig_file.read_text())
    resources["current_instance_type"] = instance_type
    sagemaker_tree.tree.resourceconfig_file.write_text(json.dumps(resources))
    (sagemaker_tree.images / "someone").mkdir(parents=True)
    Image.new("RGB", (64, 64), "gray").save(sagemaker_tree.images / "someone" / "1.jpg")
    return sagemaker_tree


@pytest.mark.slow
@pytest.mark.parametrize(
    ("runtime", "words"),
    [
        ("torch", ["no NVIDIA driver", "CUDA 13.0", "R580 or newer", "device=cpu"]),
        ("onnx", ["no CUDAExecutionProvider", "install onnxruntime-gpu", "no NVIDIA driver", "device=cpu"]),
    ],
)
def test_train_on_a_gpu_instance_without_usable_cuda_fails_naming_the_driver(
    sagemaker_tree, tmp_path, runtime, words
) -> None:
    import onnxruntime
    import torch

    if torch.cuda.is_available() or "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a runtime here may use CUDA: the job could run on it")
    tree = gpu_instance_tree(sagemaker_tree, "ml.g5.xlarge")
    tree.update_hyperparameters(runtime=runtime)
    result = subprocess.run(
        [str(TRAIN), "train"],
        env={**os.environ, "SAGEMAKER_BASE_DIR": str(tree.base), "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    failure = tree.failure()
    assert failure is not None and failure.startswith("ml.g5.xlarge is a GPU instance but the job cannot use")
    for word in words:
        assert word in failure, failure
    assert "accelerator on ml.g5.xlarge: no usable GPU" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert tree.model_files() == []


def test_device_cpu_on_a_gpu_instance_runs_and_warns(sagemaker_tree, run_job, caplog) -> None:
    tree = gpu_instance_tree(sagemaker_tree, "ml.g5.xlarge")
    tree.update_hyperparameters(device="cpu")
    with caplog.at_level(logging.WARNING, logger="facetrain"):
        run = run_job(tree)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("device=cpu on ml.g5.xlarge, a GPU instance" in w for w in warnings), warnings
    # Past the device: the job went on to the photo, which has no face (and so nothing to enroll).
    assert run.rc == 1 and tree.failure().startswith("No identity could be enrolled"), tree.failure()


# ---- the README ---------------------------------------------------------------------------------------


def readme_families() -> dict[str, list[str]]:
    """The rows of the README's table of GPU families, by family (a row may name two)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    lines = readme[readme.index("| family | GPU (architecture) |") :].splitlines()[2:]
    rows: dict[str, list[str]] = {}
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        for family in re.findall(r"`(ml\.[a-z0-9-]+)`", cells[0]):
            rows[family] = cells
    return rows


def test_the_readme_table_of_gpu_families_is_the_code_table() -> None:
    rows = readme_families()
    assert set(rows) == set(GPU_FAMILIES), set(rows) ^ set(GPU_FAMILIES)
    for family, gpu in GPU_FAMILIES.items():
        name, capability, in_build, _, verdict = rows[family][1:]
        assert name == f"{gpu.gpu} ({gpu.architecture})", family
        assert capability == f"`{sm(gpu.capability)}`", family
        works = capability_supported(gpu.capability, ONNX_CUDA12_ARCHS)  # the image's build
        assert in_build.startswith("yes" if works else "no"), family
        assert verdict.startswith("GPU with an R525+ driver" if works else "never"), family


def test_the_readme_names_each_builds_kernels_and_driver() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = " ".join(readme[readme.index("### GPU instances") :].split("### The training job")[0].split())
    cubins = " ".join(arch for arch in ONNX_CUDA12_ARCHS if arch.startswith("sm_"))
    assert f"`{cubins}` and PTX for `compute_90`" in section
    assert f"`{' '.join(CUDA13_ARCHS)}`" in section
    assert f"R{MIN_DRIVER_BRANCH[12]} or newer" in section and f"R{MIN_DRIVER_BRANCH[13]} or newer" in section


def test_the_documented_build_is_the_installed_torch() -> None:
    """The README and these tests describe torch's CUDA build: a torch of another build fails here."""
    import torch

    assert torch.version.cuda == "13.0"
    assert tuple(torch.cuda.get_arch_list()) == CUDA13_ARCHS


def test_the_decision_module_imports_no_torch() -> None:
    code = "import sys, facetrain.accelerator; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
