"""The lock files (tools/locks.py): every environment is locked with hashes, the training image installs
the tests' versions and no torch (its export stage has torch, at the tests' versions), the GPU image's
ONNX Runtime is a CUDA 12 build, the Lambda locks share the tests' versions, and this environment is
exactly its lock."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import locks
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "container" / "Dockerfile"
BY_OUTPUT = {lock.output: lock for lock in locks.LOCKS}
DEV = REPO_ROOT / "requirements" / "dev.txt"
JOB = REPO_ROOT / "requirements" / "job.txt"
JOB_GPU = REPO_ROOT / "requirements" / "job-gpu.txt"
EXPORT = REPO_ROOT / "requirements" / "export.txt"
# What the job imports (container/facetrain) on runtime=onnx: these must be in the image at the tests'
# versions (the GPU image has onnxruntime-gpu instead of onnxruntime).
JOB_PACKAGES = (
    "onnxruntime",
    "numpy",
    "pillow",
    "matplotlib",
    "pydantic",
    "pyyaml",
    "dlib-bin",
    "face-recognition-models",
)
# The reference runtime and the exporter: the image's export stage has them, its final stage must not.
TORCH_PACKAGES = ("torch", "torchvision", "facenet-pytorch", "onnx")
# The GPU image's own packages, not in the tests' environment: ONNX Runtime's CUDA 12 build and the CUDA 12 /
# cuDNN 9 libraries its `cuda,cudnn` extras bring (nvidia-*-cu12 wheels).
GPU_RUNTIME = "onnxruntime-gpu"
CUDA_12_WHEEL = re.compile(r"nvidia-[a-z0-9-]+-cu12")


def _hashes(lock_file: Path) -> dict[str, set[str]]:
    """{name: the --hash values of its entry}."""
    found: dict[str, set[str]] = {}
    current = ""
    for line in lock_file.read_text().splitlines():
        match = locks._PIN.match(line)
        if match:
            current = locks.canonical(match.group(1))
            found[current] = set()
        elif current and (hashed := re.search(r"--hash=(sha256:[0-9a-f]{64})", line)):
            found[current].add(hashed.group(1))
    return found


def image_lock_problems(
    dockerfile: str, job_lock: Path, dev_lock: Path, python: str, runtime: str = "onnxruntime"
) -> list[str]:
    """How the image would differ from the tests' environment: its Python, the lock it installs, versions
    or files that are not the dev lock's (but for the GPU runtime and its CUDA 12 wheels), job packages
    missing from it, and torch or its exporter in it. `runtime`: the ONNX Runtime distribution the image
    must hold (onnxruntime, or onnxruntime-gpu for requirements/job-gpu.txt)."""
    problems: list[str] = []
    # The base is FROM python:X.Y.Z-slim-<debian>, or FROM ${BASE_IMAGE} whose default is that image
    # (container/podman/build_local.sh overrides it only where no registry answers).
    base = re.search(r"^(?:FROM|ARG BASE_IMAGE=)\s*python:(\d+\.\d+)\.\d+-slim-\w+", dockerfile, re.MULTILINE)
    if not base:
        problems.append("the image is not built FROM a pinned python:X.Y.Z-slim-<debian> base")
    elif base.group(1) != python:
        problems.append(f"the image's Python is {base.group(1)}, the locks are resolved for {python}")
    rel = job_lock.relative_to(job_lock.parents[1]).as_posix()
    if f"--require-hashes --no-build-isolation -r {rel}" not in dockerfile:
        problems.append(f"the image does not install {rel} with --require-hashes")
    if f"tools/locks.py installed {rel}" not in dockerfile:
        problems.append(f"the image build does not verify its environment against {rel}")
    job, dev = locks.pins(job_lock), locks.pins(dev_lock)
    job_hashes, dev_hashes = _hashes(job_lock), _hashes(dev_lock)
    for name, version in sorted(job.items()):
        if runtime == GPU_RUNTIME and (name == GPU_RUNTIME or CUDA_12_WHEEL.fullmatch(name)):
            continue
        if dev.get(name) != version:
            problems.append(f"{name}: the image gets {version}, the tests ran {dev.get(name, 'nothing')}")
        elif not job_hashes[name] <= dev_hashes[name]:
            problems.append(f"{name}=={version}: the image's files are not the tests' files")
    wanted = [runtime if name == "onnxruntime" else name for name in JOB_PACKAGES]
    problems += [f"{name} is not in {rel}" for name in wanted if name not in job]
    problems += [
        f"{name} is in {rel}: the image must hold no torch" for name in TORCH_PACKAGES if name in job
    ]
    other = {"onnxruntime", GPU_RUNTIME} - {runtime}
    problems += [f"{name} is in {rel} beside {runtime} (the same import)" for name in other if name in job]
    return problems


def test_every_environment_has_a_lock_with_a_hash_for_every_package() -> None:
    outputs = set(BY_OUTPUT)
    assert {
        "requirements/dev.txt",
        "requirements/job.txt",
        "requirements/job-gpu.txt",
        "requirements/export.txt",
        "requirements/build.txt",
        "requirements/sam-cli.txt",
        "requirements/checkov.txt",
        "container/layer-requirements.txt",
        "lambdas/requirements.txt",
        "requirements/launch.txt",
    } <= outputs
    for output in outputs:
        path = REPO_ROOT / output
        text = path.read_text()
        assert "#    make lock" in text.splitlines()[1], f"{output}: regenerated by something else"
        pinned = locks.pins(path)
        assert pinned, output
        hashes = _hashes(path)
        assert all(hashes[name] for name in pinned), f"{output}: a package without --hash"
        # nothing but pins: no unpinned, URL or editable requirement
        for line in text.splitlines():
            if line and not line.startswith((" ", "#")):
                assert locks._PIN.match(line), f"{output}: {line}"


def test_a_lock_used_as_a_constraint_comes_first_and_the_dev_lock_pins_torch() -> None:
    order = [lock.output for lock in locks.LOCKS]
    for lock in locks.LOCKS:
        for constraint in lock.constraints:
            if constraint.endswith(".txt"):
                assert order.index(constraint) < order.index(lock.output), (lock.output, constraint)
    dev = locks.pins(DEV)
    pinned_by_hand = locks.pins(REPO_ROOT / "requirements" / "pins.in")
    assert pinned_by_hand == {
        "torch": "2.14.1",
        "torchvision": "0.29.1",
        "onnxruntime": "1.31.1",
        "onnx": "1.23.2",
    }
    assert all(dev[name] == version for name, version in pinned_by_hand.items())
    assert locks.pins(REPO_ROOT / "requirements" / "build.txt").items() <= dev.items()


def test_the_image_installs_the_tests_versions() -> None:
    dockerfile, python = DOCKERFILE.read_text(), BY_OUTPUT["requirements/dev.txt"].python
    assert image_lock_problems(dockerfile, JOB, DEV, python) == []
    assert image_lock_problems(dockerfile, JOB_GPU, DEV, python, runtime=GPU_RUNTIME) == []
    for output in ("requirements/job.txt", "requirements/job-gpu.txt", "requirements/export.txt"):
        assert BY_OUTPUT[output].python == python, output
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == BY_OUTPUT["requirements/dev.txt"].python


def test_the_parity_check_fails_when_the_image_and_the_lock_disagree(tmp_path: Path) -> None:
    dockerfile = DOCKERFILE.read_text()
    python = BY_OUTPUT["requirements/dev.txt"].python
    other_base = re.sub(r"=python:3\.11\.\d+", "=python:3.12.8", dockerfile)
    assert "the image's Python is 3.12, the locks are resolved for 3.11" in image_lock_problems(
        other_base, JOB, DEV, python
    )
    old_torch = re.sub(r"=python:\S+", "=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", dockerfile)
    assert any("pinned python" in p for p in image_lock_problems(old_torch, JOB, DEV, python))
    unlocked = dockerfile.replace("-r requirements/job.txt", "'.[job,dlib]'")
    assert any("does not install" in p for p in image_lock_problems(unlocked, JOB, DEV, python))
    (tmp_path / "requirements").mkdir()
    drifted = tmp_path / "requirements" / "job.txt"
    drifted.write_text(
        JOB.read_text()
        .replace("onnxruntime==1.31.1", "onnxruntime==1.20.0")
        .replace("matplotlib==", "matplotlib-x==")
    )
    problems = image_lock_problems(dockerfile, drifted, DEV, python)
    assert "onnxruntime: the image gets 1.20.0, the tests ran 1.31.1" in problems
    assert "matplotlib is not in requirements/job.txt" in problems


def test_the_gpu_image_runs_onnx_runtimes_cuda_12_build() -> None:
    """CUDA 12 runs on drivers >= 525 (SageMaker's hosts); onnxruntime-gpu 1.27+ on PyPI is a CUDA 13 build
    (nvidia-cuda-runtime 13, nvidia-cudnn-cu13), which would need R580."""
    gpu = locks.pins(JOB_GPU)
    assert tuple(int(part) for part in gpu[GPU_RUNTIME].split(".")[:2]) <= (1, 26), gpu[GPU_RUNTIME]
    cuda = sorted(name for name in gpu if name.startswith("nvidia-"))
    assert {"nvidia-cuda-runtime-cu12", "nvidia-cudnn-cu12", "nvidia-cublas-cu12"} <= set(cuda)
    assert all(CUDA_12_WHEEL.fullmatch(name) for name in cuda), cuda
    assert GPU_RUNTIME not in locks.pins(DEV) and GPU_RUNTIME not in locks.pins(JOB)


def test_the_image_check_catches_torch_a_missing_runtime_and_the_wrong_cuda(tmp_path: Path) -> None:
    dockerfile, python = DOCKERFILE.read_text(), BY_OUTPUT["requirements/dev.txt"].python
    (tmp_path / "requirements").mkdir()
    with_torch = tmp_path / "requirements" / "job.txt"
    torch_entries = [b for b in _blocks(EXPORT) if locks.canonical(b.split("==")[0]) in ("torch", "onnx")]
    with_torch.write_text(JOB.read_text() + "".join(torch_entries))
    problems = image_lock_problems(dockerfile, with_torch, DEV, python)
    assert "torch is in requirements/job.txt: the image must hold no torch" in problems
    assert "onnx is in requirements/job.txt: the image must hold no torch" in problems
    both = tmp_path / "requirements" / "job-gpu.txt"
    both.write_text(JOB_GPU.read_text() + "".join(b for b in _blocks(JOB) if b.startswith("onnxruntime==")))
    assert "onnxruntime is in requirements/job-gpu.txt beside onnxruntime-gpu (the same import)" in (
        image_lock_problems(dockerfile, both, DEV, python, runtime=GPU_RUNTIME)
    )
    cuda_13 = tmp_path / "job-gpu-cuda13.txt"
    cuda_13.write_text(JOB_GPU.read_text().replace("nvidia-cudnn-cu12==", "nvidia-cudnn-cu13=="))
    assert any(
        p.startswith("nvidia-cudnn-cu13: the image gets")
        for p in image_lock_problems(dockerfile, cuda_13, DEV, python, runtime=GPU_RUNTIME)
    )


def test_the_export_stage_has_torch_at_the_tests_versions() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert "--require-hashes --no-build-isolation -r requirements/export.txt" in dockerfile
    assert "tools/locks.py installed requirements/export.txt" in dockerfile
    export, dev = locks.pins(EXPORT), locks.pins(DEV)
    export_hashes, dev_hashes = _hashes(EXPORT), _hashes(DEV)
    assert set(TORCH_PACKAGES) | {"onnxruntime"} <= export.keys()
    for name, version in export.items():
        assert dev.get(name) == version, f"{name}: export stage {version}, tests {dev.get(name)}"
        assert export_hashes[name] <= dev_hashes[name], name


def _blocks(lock_file: Path) -> list[str]:
    """A lock file's entries, each `name==version` with its hash lines."""
    return re.findall(r"^[A-Za-z0-9][^\n]*==[^\n]*\n(?:    [^\n]*\n)*", lock_file.read_text(), re.MULTILINE)


def test_the_lambda_locks_share_the_tests_versions() -> None:
    dev = locks.pins(DEV)
    for output in ("container/layer-requirements.txt", "lambdas/requirements.txt"):
        lock = BY_OUTPUT[output]
        assert (lock.python, lock.platform) == ("3.13", locks.LAMBDA_PYTHON_3_13)
        for name, version in locks.pins(REPO_ROOT / output).items():
            assert dev.get(name) == version, f"{output}: {name}=={version}, the tests ran {dev.get(name)}"
    layer = locks.pins(REPO_ROOT / "container" / "layer-requirements.txt")
    assert {"numpy", "pydantic", "pyyaml"} <= layer.keys() and "torch" not in layer
    assert "-r layer-requirements.txt" in (REPO_ROOT / "container" / "Makefile").read_text()


# Where .venv-launch cannot have the tests' version, and why (the SDK's own requirements).
LAUNCH_DIFFERS = {
    "graphql-core": "sagemaker-train needs graphene<4, which needs graphql-core<3.3",
    "rich": "sagemaker-core needs rich<15; import-linter (dev only) takes rich 15",
    "protobuf": "sagemaker-core needs protobuf<7; onnx and onnxruntime take protobuf 7",
}


def test_the_launch_lock_shares_the_tests_versions_but_where_the_sdk_forbids() -> None:
    dev, launch = locks.pins(DEV), locks.pins(REPO_ROOT / "requirements" / "launch.txt")
    assert {"sagemaker-train", "sagemaker-core", "aws-lambda-powertools", "boto3"} <= launch.keys()
    differ = {name for name in launch.keys() & dev.keys() if launch[name] != dev[name]}
    assert differ <= LAUNCH_DIFFERS.keys(), {name: (launch[name], dev[name]) for name in differ}
    assert "torch" not in launch


def test_setup_installs_only_the_locks() -> None:
    dry = subprocess.run(
        ["make", "-n", "setup", "tools"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    installs = [line for line in dry.splitlines() if "pip install" in line]
    assert installs, dry
    for line in installs:
        assert "--require-hashes" in line or line.endswith("--no-deps --no-build-isolation -e ."), line
    assert "-r requirements/dev.txt" in dry and "tools/locks.py installed requirements/dev.txt" in dry
    # runtime=onnx's networks, exported once by set-up where torch is (the job process never imports it)
    assert "-m facetrain.inference.export --cache --weights none --seed 0" in dry
    for lock in ("requirements/sam-cli.txt", "requirements/checkov.txt", "requirements/launch.txt"):
        assert f"-r {lock}" in dry and f"tools/locks.py installed requirements/build.txt {lock}" in dry, lock


@pytest.mark.skipif(
    Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve(),
    reason="runs in the project's .venv only (make setup makes it from requirements/dev.txt)",
)
def test_this_environment_is_exactly_the_dev_lock() -> None:
    assert locks.environment_problems(locks.pins(DEV), locks.installed_distributions()) == []


def test_environment_problems_names_missing_different_and_extra_packages() -> None:
    locked = {"numpy": "2.4.6", "torch": "2.14.1", "six": "1.17.0"}
    present = {"numpy": "2.4.6", "torch": "2.5.1", "requests": "2.34.2", "facetrain": "0.1.0"}
    assert locks.environment_problems(locked, present) == [
        "requests==2.34.2 is installed but not in the lock",
        "six==1.17.0 is locked but not installed",
        "torch is 2.5.1, the lock says 2.14.1",
    ]
    assert locks.environment_problems(locked, dict(locked)) == []


def test_pins_reads_names_canonically_with_extras_and_hashes(tmp_path: Path) -> None:
    lock = tmp_path / "x.txt"
    lock.write_text(
        "# header\n"
        "aws-lambda-powertools[tracer]==3.37.0 \\\n    --hash=sha256:" + "a" * 64 + "\n"
        "    # via -r x.in\n"
        "Face_Recognition.Models==0.3.0 \\\n    --hash=sha256:" + "b" * 64 + "\n"
    )
    assert locks.pins(lock) == {"aws-lambda-powertools": "3.37.0", "face-recognition-models": "0.3.0"}
    assert _hashes(lock)["face-recognition-models"] == {"sha256:" + "b" * 64}
