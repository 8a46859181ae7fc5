"""runtime=onnx (the default): the job's process imports no torch, torchvision nor facenet-pytorch.

The import contract (pyproject.toml, `make lint`) proves it for every import the code states; this runs the
real `train` entry point in a fresh interpreter and reads sys.modules at its end, so an import that only
happens at run time (a lazy one, or one a library makes) is caught too. runtime=torch is run the same way
and does import torch: the probe can see it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
TORCH_STACK = ("torch", "torchvision", "facenet_pytorch")
PROBE = f"""
import json, os, sys
if os.environ.get("BLOCK_TORCH"):  # as in the training image: torch is not there
    sys.modules.update(dict.fromkeys({TORCH_STACK!r}))
from facetrain.train import main
code = main([])
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({TORCH_STACK!r}))
print("PROBE " + json.dumps({{"code": code, "loaded": loaded, "onnxruntime": "onnxruntime" in sys.modules}}))
"""


def _run(tree, tmp_path, **extra: str) -> tuple[dict, str]:
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(tree.base), "PYTHONUNBUFFERED": "1", **extra}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line is not None, done.stdout + done.stderr
    return json.loads(line.removeprefix("PROBE ")), done.stdout + done.stderr


@pytest.mark.parametrize("embedder", ["facenet", "dlib-resnet"])
def test_the_onnx_job_imports_no_torch(sagemaker_tree, shared_data, tmp_path, embedder):
    sagemaker_tree.add_identities(shared_data / "faces-small")
    if embedder == "dlib-resnet":  # its faces are found by runtime=onnx's MTCNN too
        sagemaker_tree.set_hyperparameters({"embedder": "dlib-resnet"})
    probe, output = _run(sagemaker_tree, tmp_path)
    assert probe == {"code": 0, "loaded": [], "onnxruntime": True}, output
    dimension = 128 if embedder == "dlib-resnet" else 512
    assert [name for name, _, _ in sagemaker_tree.enrollment(dimension)] == sorted(
        p.name for p in (shared_data / "faces-small").iterdir() if p.is_dir()
    )
    metrics = sagemaker_tree.metrics()
    assert (metrics["runtime"], metrics["hyperparameters"]["runtime"]) == ("onnx", "onnx")
    assert {"pnet.onnx", "rnet.onnx", "onet.onnx"} <= set(metrics["model_files"])


def test_the_torch_job_does_import_torch(sagemaker_tree, shared_data, tmp_path):
    sagemaker_tree.add_identities(shared_data / "faces-small")
    sagemaker_tree.update_hyperparameters(runtime="torch")
    probe, output = _run(sagemaker_tree, tmp_path)
    assert probe["code"] == 0, output
    assert {"torch", "facenet_pytorch"} <= set(probe["loaded"])
    assert sagemaker_tree.metrics()["runtime"] == "torch"
    assert {"torch", "facenet-pytorch"} <= set(sagemaker_tree.metrics()["versions"])
    assert "onnxruntime" not in sagemaker_tree.metrics()["versions"]
    assert not any(name.endswith(".onnx") for name in sagemaker_tree.metrics()["model_files"])


def test_runtime_torch_without_torch_fails_naming_the_fix(sagemaker_tree, shared_data, tmp_path):
    sagemaker_tree.add_identities(shared_data / "faces-small")
    sagemaker_tree.update_hyperparameters(runtime="torch")
    probe, output = _run(sagemaker_tree, tmp_path, BLOCK_TORCH="1")
    assert probe["code"] == 1, output
    failure = sagemaker_tree.failure()
    assert failure.startswith("runtime=torch needs the Python packages torch and facenet-pytorch"), failure
    assert "leave runtime out (onnx, the default)" in failure
    assert "Internal error" not in failure and "Traceback" not in output
