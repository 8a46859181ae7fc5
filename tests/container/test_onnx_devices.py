"""runtime=onnx's device, without torch: ONNX Runtime's build and providers and the driver's libcuda make
`GpuFacts`, the one decision (`accelerator.decide_device`) uses or refuses the GPU, and the reason is named
plainly (no CUDA provider: install onnxruntime-gpu; a driver older than the build's CUDA; no GPU).

The facts from a GPU host are injected (`onnx_facts` takes the build and the driver's answers as
parameters); the libcuda reader runs against a stand-in library compiled here from C, answering as a
driver with one A10G does, and against this machine (no driver)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

import onnxruntime
import pytest
from facetrain.accelerator import DeviceError, decide_device, describe
from facetrain.gpu_facts import DriverProbe, OnnxBuild, libcuda_probe, onnx_build, onnx_facts
from facetrain.inference.devices import choose_device, gather_facts
from support.device_choice import assert_choice

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
ORT_GPU = OnnxBuild("onnxruntime-gpu", "1.26.0", "12.8", (CUDA, CPU))
ORT_GPU_CUDA13 = OnnxBuild("onnxruntime-gpu", "1.27.0", "13.0", (CUDA, CPU))
ORT_CPU = OnnxBuild("onnxruntime", "1.31.1", None, ("AzureExecutionProvider", CPU))
NO_DEVICE_ERROR = "cuInit: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)"


def driver(cuda: str, *gpus: tuple[str, tuple[int, int]]) -> DriverProbe:
    """A driver whose libcuda runs CUDA up to `cuda` and sees `gpus`."""
    return DriverProbe(cuda, None, tuple(gpus))


A10G = driver("12.4", ("NVIDIA A10G", (8, 6)))
NO_DRIVER = DriverProbe(None, "no NVIDIA driver (libcuda.so.1 not found)")


@pytest.mark.parametrize(
    ("requested", "instance_type", "build", "probe", "release", "device", "warned"),
    [
        ("auto", "ml.g5.xlarge", ORT_GPU, A10G, "550.127.05", "cuda", None),
        ("cuda", "local", ORT_GPU, A10G, "550.127.05", "cuda", None),
        # Volta: dropped by torch's CUDA 13 build, in ONNX Runtime's CUDA 12 one (sm_70)
        (
            "auto",
            "ml.p3.2xlarge",
            ORT_GPU,
            driver("12.2", ("Tesla V100", (7, 0))),
            "535.183.01",
            "cuda",
            None,
        ),
        ("auto", "local", ORT_CPU, NO_DRIVER, None, "cpu", None),  # a developer's machine
        ("auto", None, ORT_GPU, NO_DRIVER, None, "cpu", None),
        ("auto", "local", ORT_CPU, A10G, "550.127.05", "cpu", "install onnxruntime-gpu"),
        ("cpu", "ml.g5.xlarge", ORT_GPU, A10G, "550.127.05", "cpu", "GPU instance"),
    ],
)
def test_the_device_chosen_for_onnx_runtime(requested, instance_type, build, probe, release, device, warned):
    choice = decide_device(requested, instance_type, onnx_facts(build, probe, release))
    assert_choice(choice, device, warned)


@pytest.mark.parametrize(
    ("requested", "instance_type", "build", "probe", "release", "words"),
    [
        (  # the CPU wheel in a GPU image
            "auto",
            "ml.g5.xlarge",
            ORT_CPU,
            A10G,
            "550.127.05",
            ["ml.g5.xlarge is a GPU instance", "no CUDAExecutionProvider", "install onnxruntime-gpu"],
        ),
        (  # a driver of the CUDA 11 generation under the CUDA 12 build
            "auto",
            "ml.g4dn.xlarge",
            ORT_GPU,
            driver("11.4", ("Tesla T4", (7, 5))),
            "470.256.02",
            ["older than this onnxruntime-gpu build's CUDA 12.8", "470.256.02", "CUDA up to 11.4", "R525"],
        ),
        (  # onnxruntime-gpu 1.27+ is a CUDA 13 build: an R550 driver cannot run it
            "auto",
            "ml.g5.xlarge",
            ORT_GPU_CUDA13,
            A10G,
            "550.127.05",
            ["CUDA 13.0", "R580 or newer", "550.127.05"],
        ),
        (
            "auto",
            "ml.g5.xlarge",
            ORT_GPU,
            DriverProbe("12.4", NO_DEVICE_ERROR),
            "550.127.05",
            ["CUDA cannot start", "CUDA_ERROR_NO_DEVICE", "R525 or newer"],
        ),
        ("auto", "ml.g5.xlarge", ORT_GPU, NO_DRIVER, None, ["no NVIDIA driver", "libcuda.so.1 not found"]),
        ("auto", "ml.g5.xlarge", ORT_GPU, driver("12.4"), "550.127.05", ["the NVIDIA driver sees no GPU"]),
        ("auto", "ml.p2.xlarge", ORT_GPU, driver("12.4", ("Tesla K80", (3, 7))), "470.256.02", ["sm_37"]),
        (
            "cuda",
            "local",
            ORT_GPU,
            NO_DRIVER,
            None,
            ["device=cuda", "no CUDA GPU", "device=auto or device=cpu"],
        ),
        (
            "cuda",
            "local",
            OnnxBuild("onnxruntime", "not installed", None, ()),
            NO_DRIVER,
            None,
            ["onnxruntime is not installed: install onnxruntime-gpu"],
        ),
    ],
)
def test_a_gpu_onnx_runtime_cannot_use_is_refused_with_the_reason(
    requested, instance_type, build, probe, release, words
):
    with pytest.raises(DeviceError) as refused:
        decide_device(requested, instance_type, onnx_facts(build, probe, release))
    message = str(refused.value)
    for word in words:
        assert word in message, message
    assert len(message) < 1024, "SageMaker shows 1024 characters of the failure"


def test_the_onnx_log_line_names_gpu_driver_build_and_providers():
    line = describe(onnx_facts(ORT_GPU, A10G, "550.127.05"))
    for word in ("GPU NVIDIA A10G (sm_86) x1", "550.127.05", "CUDA up to 12.4", "onnxruntime-gpu 1.26.0"):
        assert word in line, line
    assert "CUDA 12.8 (sm_60 sm_70" in line and "R525 or newer" in line and f"providers {CUDA}, {CPU}" in line
    old = describe(onnx_facts(ORT_GPU, driver("11.4", ("Tesla T4", (7, 5))), "470.256.02"))
    assert old.startswith(
        "no usable GPU: the NVIDIA driver 470.256.02 (supports CUDA up to 11.4) is older"
    ), old


def test_a_cuda_build_that_records_no_cuda_version_is_taken_for_cuda_12():
    facts = onnx_facts(OnnxBuild("onnxruntime-gpu", "1.20.0", None, (CUDA, CPU)), A10G, "550.127.05")
    assert facts.build_cuda == "12" and "sm_70" in facts.arch_list


# ---- the probes on this machine, and libcuda through ctypes ---------------------------------------------

STAND_IN_LIBCUDA = r"""
/* Answers as a driver of CUDA 12.4 with one NVIDIA A10G (8.6), or, with FAIL_INIT, one whose cuInit fails
   with CUDA_ERROR_NO_DEVICE (100), as libcuda.so.1's entry points do (same names and signatures). */
#include <string.h>
int cuDriverGetVersion(int *v) { *v = 12040; return 0; }
#ifdef FAIL_INIT
int cuInit(unsigned int flags) { return 100; }
#else
int cuInit(unsigned int flags) { return 0; }
#endif
int cuDeviceGetCount(int *n) { *n = 1; return 0; }
int cuDeviceGet(int *d, int ordinal) { *d = ordinal; return 0; }
int cuDeviceGetName(char *name, int len, int d) { strncpy(name, "NVIDIA A10G", len); return 0; }
int cuDeviceGetAttribute(int *value, int attribute, int d) {
    if (attribute == 75) { *value = 8; return 0; }
    if (attribute == 76) { *value = 6; return 0; }
    return 1;
}
int cuGetErrorName(int code, const char **s) { *s = code == 100 ? "CUDA_ERROR_NO_DEVICE" : "?"; return 0; }
int cuGetErrorString(int code, const char **s) { *s = "no CUDA-capable device is detected"; return 0; }
"""


def stand_in_libcuda(tmp_path, *defines: str) -> str:
    """The stand-in compiled to a shared library; its path."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler (cc) is needed to build the stand-in libcuda"
    source, library = tmp_path / "libcuda.c", tmp_path / f"libcuda{''.join(defines)}.so"
    source.write_text(STAND_IN_LIBCUDA)
    flags = [f"-D{name}" for name in defines]
    subprocess.run([compiler, "-shared", "-fPIC", *flags, "-o", str(library), str(source)], check=True)
    return str(library)


def test_libcuda_is_read_through_its_c_entry_points(tmp_path):
    assert libcuda_probe(stand_in_libcuda(tmp_path)) == DriverProbe("12.4", None, (("NVIDIA A10G", (8, 6)),))
    failing = libcuda_probe(stand_in_libcuda(tmp_path, "FAIL_INIT"))
    assert failing == DriverProbe("12.4", NO_DEVICE_ERROR)


def test_without_a_driver_libcuda_says_so():
    probe = libcuda_probe("/nonexistent/libcuda.so.1")
    assert probe.driver_cuda is None and probe.devices == ()
    assert probe.init_error == "no NVIDIA driver (/nonexistent/libcuda.so.1 not found)"


def test_this_machines_onnx_runtime_is_read():
    build = onnx_build()
    assert build.version == onnxruntime.__version__
    assert build.providers == tuple(onnxruntime.get_available_providers())
    facts = gather_facts("onnx")
    assert (facts.runtime, facts.version, facts.providers) == ("onnx", build.version, build.providers)
    if CUDA not in build.providers:  # the CPU wheel, as here
        assert build.cuda_version is None and facts.build_cuda is None


def test_an_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime must be one of onnx, torch, not 'tensorflow'"):
        gather_facts("tensorflow")


# ---- devices.choose_device ----------------------------------------------------------------------------


def test_choose_device_on_this_cpu_machine(caplog):
    with caplog.at_level(logging.INFO, logger="facetrain"):
        assert choose_device("auto", "local", "onnx") == "cpu"
        assert choose_device("cpu", None, "torch") == "cpu"
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("accelerator on local: no usable GPU") for line in lines), lines
    if CUDA not in onnxruntime.get_available_providers():
        with pytest.raises(DeviceError, match="install onnxruntime-gpu"):
            choose_device("cuda", "local", "onnx")
        with pytest.raises(DeviceError, match=r"ml\.g5\.xlarge is a GPU instance"):
            choose_device("auto", "ml.g5.xlarge", "onnx")


def test_choosing_the_device_for_onnx_imports_no_torch():
    code = (
        "import sys; from facetrain.inference.devices import choose_device; "
        "choose_device('auto', 'local', 'onnx'); "
        "leaked = {'torch', 'torchvision', 'facenet_pytorch'} & set(sys.modules); "
        "assert not leaked, leaked"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
