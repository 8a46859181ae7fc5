"""Running the training image with podman as SageMaker runs it (tests/image; the fixtures are in its
conftest.py): `podman run --network none -v TREE:/opt/ml IMAGE train`, the tree laid out by
facetrain.sagemaker_env.write_tree as the offline backend lays it out."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from facetrain.sagemaker_env import OptMl, channel_config, write_tree

WEIGHTS_LABEL = "facetrain.vggface2-weights"


@dataclass(frozen=True)
class Image:
    """The image under test and how to run podman on this machine."""

    name: str
    podman: str
    env: Mapping[str, str]
    labels: Mapping[str, str]
    config_env: Mapping[str, str]

    @property
    def weights_baked(self) -> bool:
        return self.labels.get(WEIGHTS_LABEL) == "baked"

    def podman_cmd(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.podman, *args], env=dict(self.env), capture_output=True, text=True, timeout=timeout
        )

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`podman run --rm --network none IMAGE ARGS` (no /opt/ml mount)."""
        return self.podman_cmd("run", "--rm", "--network", "none", self.name, *args, timeout=timeout)


class ImageJob:
    """One training job of the image on a fresh /opt/ml tree (`base`, mounted read-write at /opt/ml)."""

    def __init__(self, image: Image, base: Path, hyperparameters: Mapping[str, str]) -> None:
        self.image = image
        self.tree: OptMl = write_tree(base, hyperparameters, {"face_imgs": channel_config()})
        self.name = f"facetrain-test-{uuid.uuid4().hex[:12]}"

    @property
    def images(self) -> Path:
        return self.tree.channel("face_imgs")

    def copy_photos(self, folder: Path) -> None:
        """Copy <folder>/<identity>/<photo> into the face_imgs channel (copies: the mount must hold them)."""
        shutil.copytree(folder, self.images, dirs_exist_ok=True)

    def command(self) -> list[str]:
        """What SageMaker does: no network, /opt/ml mounted, the argument `train`."""
        return [
            self.image.podman, "run", "--rm", "--name", self.name, "--network", "none",
            "--volume", f"{self.tree.base}:/opt/ml", self.image.name, "train",
        ]  # fmt: skip

    def run(self, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(), env=dict(self.image.env), capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> subprocess.Popen[str]:
        """Start the job in the background, its log (stdout and stderr together) readable line by line."""
        return subprocess.Popen(
            self.command(),
            env=dict(self.image.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def remove(self) -> None:
        """Remove the container if it is still there (a failed test), without waiting for it."""
        self.image.podman_cmd("rm", "--force", "--time", "0", self.name, timeout=60)

    def failure(self) -> str | None:
        path = self.tree.failure_file
        return path.read_text(encoding="utf-8") if path.exists() else None

    def model_files(self) -> list[str]:
        return sorted(p.name for p in self.tree.model_dir.iterdir())
