"""What the training image holds: exactly its flavour's lock (requirements/job.txt, or job-gpu.txt; the
Dockerfile's own check, rerun), no torch, the ONNX exports the job runs (verified against their manifests
and opened, with no network: container/image_check.py, rerun), the label and variable that say whether
the vggface2 weights are baked, and none of the build machine's CA bundle."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.podman_image import Image

pytestmark = pytest.mark.image

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PEM = re.compile(r"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", re.DOTALL)


LOCKS = {"cpu": "requirements/job.txt", "gpu": "requirements/job-gpu.txt"}
ONNX_DIR = "/opt/facetrain/onnx"


def test_the_image_holds_exactly_the_job_lock(image: Image) -> None:
    accelerator = image.labels.get("facetrain.accelerator")
    assert accelerator in LOCKS, image.labels
    assert image.config_env.get("FACETRAIN_ACCELERATOR") == accelerator
    done = image.run(
        "bash",
        "-c",
        f"cd /opt/facetrain/src && python tools/locks.py installed {LOCKS[accelerator]} && pip check",
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("module", ["torch", "torchvision", "facenet_pytorch", "onnx"])
def test_the_image_has_no_torch(image: Image, module: str) -> None:
    done = image.run("python", "-c", f"import {module}")
    assert done.returncode == 1
    assert f"ModuleNotFoundError: No module named '{module}'" in done.stderr


def test_the_onnx_exports_are_there_verified_and_open_with_no_network(image: Image) -> None:
    assert image.config_env.get("FACETRAIN_ONNX_DIR") == ONNX_DIR
    done = image.run("python", "/opt/facetrain/src/container/image_check.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "image check: no torch; every export verified and opened" in done.stdout
    assert f"{ONNX_DIR}/mtcnn: pnet " in done.stdout
    assert f"{ONNX_DIR}/facenet-random-seed0: facenet " in done.stdout
    assert "embedder=facenet weights=none runtime=onnx: opens (4 ONNX files)" in done.stdout
    assert "embedder=dlib-resnet" in done.stdout
    folders = image.run("ls", ONNX_DIR).stdout.split()
    expected = {"mtcnn", "facenet-random-seed0"}
    if image.weights_baked:
        assert "embedder=facenet weights=vggface2 runtime=onnx: opens (4 ONNX files)" in done.stdout
        assert len(set(folders) - expected) == 1, folders  # facenet-<the vggface2 file's sha256 prefix>
    else:
        assert set(folders) == expected


def test_train_is_on_path_and_python_is_the_locks_minor_version(image: Image) -> None:
    done = image.run("bash", "-c", "command -v train && python -c 'import sys; print(sys.version_info[:2])'")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "(3, 11)"


def test_the_label_and_the_variable_agree_on_the_weights(image: Image) -> None:
    label = image.labels.get("facetrain.vggface2-weights")
    assert label in ("baked", "absent"), image.labels
    assert image.config_env.get("FACETRAIN_VGGFACE2_WEIGHTS") == label
    weights = "/opt/torch/checkpoints/20180402-114759-vggface2.pt"
    present = image.run("test", "-s", weights).returncode == 0
    assert present == (label == "baked")


def _certificates(bundle: str) -> set[str]:
    return {"".join(body.split()) for body in PEM.findall(bundle)}


def test_the_build_machines_ca_bundle_is_not_in_the_image(image: Image) -> None:
    """pip got the bundle as a build secret: neither the file nor the certificates only this machine
    trusts (its intercepting CA) may be in any certificate file of the image, nor PIP_CERT in its config."""
    assert "PIP_CERT" not in image.config_env
    assert not any("pipcert" in value for value in image.config_env.values())
    listing = image.run(
        "bash", "-c",
        "test ! -e /run/secrets/pipcert && "
        "find / -xdev \\( -name '*.crt' -o -name '*.pem' \\) -type f -print0 | xargs -0 cat",
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    in_image = _certificates(listing.stdout)
    assert in_image, "the image should hold the public CA certificates (ca-certificates, certifi)"
    if not HOST_CA_BUNDLE.is_file():
        return
    host_only = _certificates(HOST_CA_BUNDLE.read_text(encoding="utf-8")) - _certificates(
        image.run("cat", "/etc/ssl/certs/ca-certificates.crt").stdout
    )
    assert not host_only & in_image, "a certificate only the build machine trusts is in the image"
