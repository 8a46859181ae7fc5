"""The training image, run as SageMaker runs it (support.podman_image).

`image`: podman and the image (FACETRAIN_IMAGE, default localhost/facetrain:local, built by
`make image-local`). Without either the tests are skipped with the reason, except under CI (env var CI set),
where they fail: CI builds the image first and must test it.

`image_job`: makes ImageJob trees under tmp_path (photos are COPIED in: a link would point outside the
mount) and removes any container a failed test leaves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from support.podman_image import Image, ImageJob

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO_ROOT / "container" / "podman" / "containers.conf"
IMAGE = os.environ.get("FACETRAIN_IMAGE", "localhost/facetrain:local")


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(reason: str) -> None:
    if _running_in_ci():
        pytest.fail(f"CI is set and {reason}; CI must build and test the image", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def image() -> Image:
    """podman and the image; skip (fail under CI) naming `make image-local` when either is missing."""
    podman = shutil.which("podman")
    if podman is None:
        _missing(
            "podman is not installed, so `make image-local` cannot build the image "
            "(`make podman` installs podman as root)"
        )
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    exists = subprocess.run([podman, "image", "exists", IMAGE], env=env, capture_output=True, timeout=60)
    if exists.returncode != 0:
        _missing(f"the image {IMAGE} is not built: run `make image-local`")
    inspect = subprocess.run(
        [podman, "image", "inspect", IMAGE], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    config = json.loads(inspect.stdout)[0]
    labels = config.get("Labels") or config.get("Config", {}).get("Labels") or {}
    config_env = dict(entry.split("=", 1) for entry in config.get("Config", {}).get("Env") or [])
    return Image(IMAGE, podman, env, labels, config_env)


@pytest.fixture
def image_job(image: Image, tmp_path: Path) -> Iterator[Callable[[Mapping[str, str]], ImageJob]]:
    """Make ImageJob(hyperparameters) trees under tmp_path; containers left running are removed."""
    made: list[ImageJob] = []

    def make(hyperparameters: Mapping[str, str]) -> ImageJob:
        job = ImageJob(image, tmp_path / f"opt-ml-{len(made)}", hyperparameters)
        made.append(job)
        return job

    yield make
    for job in made:
        job.remove()
