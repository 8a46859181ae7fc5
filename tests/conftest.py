"""Fixtures shared by the whole test suite.

`shared_data`: the real photographs in `../shared/data/` beside the checkout. They are never copied into
the repository; tests link or derive files from them under tmp_path. When the folder is missing the test
is skipped with the reason, except under CI (env var CI set), where a missing data set is a failure.

`sagemaker_tree`: a SageMaker training tree (`input/config/*.json`, `input/data/<channel>/`) under
tmp_path, for running the training job with SAGEMAKER_BASE_DIR pointing at it.

This file must not import torch (other suites share it).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from facetrain.sagemaker_env import channel_config, write_json, write_tree

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# What the suites rely on inside shared/data (see its README.md).
SHARED_DATA_CONTENT = ("faces-small", "faces-dev", "edge-cases/multiface.jpg")


def running_in_ci() -> bool:
    """CI systems set CI (GitHub Actions, GitLab, …: CI=true); an explicit false/0 does not count."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real photos (../shared/data); skip without them, but fail under CI."""
    missing = [name for name in SHARED_DATA_CONTENT if not (SHARED_DATA / name).exists()]
    if missing:
        reason = (
            f"the real test photos are missing: {', '.join(missing)} not found in {SHARED_DATA} "
            "(the ../shared/data folder beside the checkout, see its README.md)"
        )
        if running_in_ci():
            pytest.fail(f"CI is set and {reason}; CI must run the tests that need them", pytrace=False)
        pytest.skip(reason)
    return SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the real photos (directly or through another fixture) `real_photos`."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_photos)


DEFAULT_HYPERPARAMETERS = {"weights": "none", "seed": "0"}
CHANNEL_CONFIG = channel_config()  # File mode, FullyReplicated, as SageMaker writes it


class SageMakerTree:
    """A /opt/ml-like tree: input/config/{hyperparameters,inputdataconfig,resourceconfig}.json, input/data/.

    `hyperparameters` values must be strings, as SageMaker writes them. Channels are declared in
    inputdataconfig.json as they are created (face_imgs always, unless `images=False`).
    """

    def __init__(
        self,
        base: Path,
        hyperparameters: Mapping[str, str] | None = None,
        images: bool = True,
        hosts: tuple[str, ...] = ("algo-1",),
        current_host: str = "algo-1",
    ) -> None:
        self.base = base
        self.channels: list[str] = []
        self.tree = write_tree(
            base,
            DEFAULT_HYPERPARAMETERS if hyperparameters is None else hyperparameters,
            {},
            current_host,
            hosts,
        )
        self.config, self.data = self.tree.config_dir, self.tree.data_dir
        self.set_hyperparameters(DEFAULT_HYPERPARAMETERS if hyperparameters is None else hyperparameters)
        if images:
            self.channel("face_imgs")

    # ---- inputs -------------------------------------------------------------------------------------
    def set_hyperparameters(self, values: Mapping[str, str]) -> None:
        """Write hyperparameters.json (every value a string, as SageMaker passes them)."""
        not_strings = {key: value for key, value in values.items() if not isinstance(value, str)}
        assert not not_strings, f"SageMaker hyperparameters are strings; got {not_strings}"
        self.hyperparameters = dict(values)
        write_json(self.tree.hyperparameters_file, self.hyperparameters)

    def update_hyperparameters(self, **values: str) -> None:
        self.set_hyperparameters({**self.hyperparameters, **values})

    def channel(self, name: str, declare: bool = True) -> Path:
        """Create input/data/<name>/ and declare it in inputdataconfig.json."""
        path = self.data / name
        path.mkdir(parents=True, exist_ok=True)
        if declare and name not in self.channels:
            self.channels.append(name)
            write_json(self.tree.inputdataconfig_file, {channel: CHANNEL_CONFIG for channel in self.channels})
        return path

    @property
    def images(self) -> Path:
        return self.data / "face_imgs"

    def add_photo(self, identity: str, name: str, source: Path | bytes) -> Path:
        """Put one photo in face_imgs/<identity>/<name>: a symlink to a file, or the bytes given."""
        folder = self.images / identity if identity else self.images
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            target.symlink_to(source.resolve())
        return target

    def add_identities(
        self, folder: Path, limit: int | None = None, names: Iterable[str] | None = None
    ) -> None:
        """Link the photos of every identity folder of `folder` (at most `limit` per identity)."""
        wanted = set(names) if names is not None else None
        for identity in sorted(p for p in folder.iterdir() if p.is_dir()):
            if wanted is not None and identity.name not in wanted:
                continue
            photos = sorted(p for p in identity.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            for photo in photos[:limit]:
                self.add_photo(identity.name, photo.name, photo)

    # ---- outputs ------------------------------------------------------------------------------------
    @property
    def model(self) -> Path:
        return self.tree.model_dir

    @property
    def failure_file(self) -> Path:
        return self.tree.failure_file

    def failure(self) -> str | None:
        return self.failure_file.read_text(encoding="utf-8") if self.failure_file.exists() else None

    def model_files(self) -> list[str]:
        return sorted(p.name for p in self.model.iterdir()) if self.model.is_dir() else []

    def metrics(self) -> dict[str, Any]:
        return json.loads((self.model / "metrics.json").read_text(encoding="utf-8"))

    def rejected_text(self) -> str:
        return (self.model / "rejected.csv").read_text(encoding="utf-8")

    def rejected(self) -> list[dict[str, str]]:
        """rejected.csv rows (the `#` warning line skipped)."""
        lines = [line for line in self.rejected_text().splitlines(keepends=True) if not line.startswith("#")]
        return list(csv.DictReader(io.StringIO("".join(lines))))

    def rejected_by_photo(self) -> dict[str, dict[str, str]]:
        return {row["photo"]: row for row in self.rejected()}

    def enrollment_text(self) -> str:
        return (self.model / "final_mean_embeddings.csv").read_text(encoding="utf-8")

    def enrollment(self, dimension: int = 512) -> list[tuple[str, int, Any]]:
        from facetrain.contract.enrollment_csv import parse_csv

        return parse_csv(self.enrollment_text(), dimension)

    def embeddings(self) -> dict[str, Any]:
        from facetrain.contract.embeddings_file import load_embeddings

        return load_embeddings(self.model / "saved_embeddings.pkl")

    def records(self) -> dict[str, dict[str, Any]]:
        """Per-photo records of saved_embeddings.pkl by photo key (identity/photo)."""
        return {record["key"]: record for record in self.embeddings()["records"]}

    def rules_text(self) -> str:
        return (self.model / "rules.py").read_text(encoding="utf-8")

    def rules(self) -> dict[str, Any]:
        from facetrain.contract.rules_file import load_rules

        return load_rules(self.rules_text())


@pytest.fixture(scope="session")
def sagemaker_tree_class() -> type[SageMakerTree]:
    """The SageMakerTree class, for module-scoped trees built under tmp_path_factory."""
    return SageMakerTree


@pytest.fixture
def sagemaker_tree(tmp_path: Path) -> SageMakerTree:
    """An empty SageMaker tree (face_imgs channel declared, weights=none) under tmp_path/opt_ml."""
    return SageMakerTree(tmp_path / "opt_ml")
