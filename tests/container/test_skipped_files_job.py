"""Through the real `train` script (issue 27): files that are not photos are skipped, not counted as photos,
and the run id start passes is in metrics.json and report.html without entering any fingerprint.

faces-dev's person_02 and person_04 (2 photos each), a notes.txt in person_02's folder, and a folder `ghost/`
holding only a Thumbs.db and a notes.txt, with require_all_identities=true and facetrain_run_id=weekly-7:
the run succeeds (ghost is no person, so nobody is left out), counts 4 photos, lists the 3 skipped files in
rejected.csv (`not_a_photo`) and metrics.json's files_skipped, and logs their count only. The same photos
again under another run id reuse every embedding; without a run id the report shows none."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
TRAIN = Path(sys.executable).with_name("train")  # the console script of the venv running the tests
PHOTOS = 4  # faces-dev person_02 and person_04, 2 photos each
SKIPPED = ["ghost/Thumbs.db", "ghost/notes.txt", "person_02/notes.txt"]


def _train(tree, cwd: Path) -> str:
    """Run `train` as SageMaker does (default log level); its exit code, stdout and stderr."""
    assert TRAIN.is_file(), f"{TRAIN} is missing: install the project into .venv (pip install -e '.[job]')"
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(tree.base), "PYTHONUNBUFFERED": "1"}
    env.pop("FACETRAIN_LOG_LEVEL", None)
    cwd.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([str(TRAIN)], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def _tree(sagemaker_tree_class, base: Path, shared_data: Path, **settings: str):
    tree = sagemaker_tree_class(base / "opt_ml")
    tree.update_hyperparameters(**settings)
    tree.add_identities(shared_data / "faces-dev", limit=2, names=("person_02", "person_04"))
    tree.add_photo("person_02", "notes.txt", b"person_02 is the one on the left\n")
    tree.add_photo("ghost", "Thumbs.db", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    tree.add_photo("ghost", "notes.txt", b"the new hire's photos come next week\n")
    return tree


@pytest.fixture(scope="module")
def first(sagemaker_tree_class, tmp_path_factory, shared_data):
    base = tmp_path_factory.mktemp("first")
    tree = _tree(
        sagemaker_tree_class,
        base,
        shared_data,
        require_all_identities="true",
        facetrain_run_id="weekly-7",
    )
    return tree, _train(tree, base / "cwd")


def _again(first_tree, sagemaker_tree_class, base: Path, shared_data: Path, **settings: str):
    """The same photos, the first run's embeddings as the previous channel."""
    tree = _tree(sagemaker_tree_class, base, shared_data, require_all_identities="true", **settings)
    shutil.copy(first_tree.model / "saved_embeddings.pkl", tree.channel("previous") / "saved_embeddings.pkl")
    return tree, _train(tree, base / "cwd")


def test_a_folder_of_files_that_are_not_photos_is_no_person_and_fails_nothing(first) -> None:
    tree, output = first
    assert output.startswith("exit 0"), output + str(tree.failure())
    metrics = tree.metrics()
    assert (metrics["status"], metrics["identities"], metrics["identities_excluded"]) == ("succeeded", 2, {})
    assert (metrics["images_total"], metrics["images_accepted"], metrics["images_rejected"]) == (PHOTOS, 4, 0)
    assert metrics["rejections_by_reason"] == {} and metrics["files_skipped"] == len(SKIPPED)
    assert tree.rules()["identities"] == ["person_02", "person_04"]
    rows = tree.rejected_by_photo()
    assert sorted(rows) == SKIPPED
    assert [(rows[key]["identity"], rows[key]["reason"]) for key in SKIPPED] == [
        ("ghost", "not_a_photo"),
        ("ghost", "not_a_photo"),
        ("person_02", "not_a_photo"),
    ]
    assert rows["ghost/Thumbs.db"]["message"].startswith("not a photo (a Windows thumbnail cache): skipped")


def test_the_log_counts_the_skipped_files_and_names_none(first) -> None:
    _, output = first
    assert (
        "INFO facetrain: 3 files skipped on host algo-1: not photos (contract.photo_files), each named in "
        "rejected.csv"
    ) in output
    assert "ghost" not in output and not any(key in output for key in SKIPPED)


def test_the_run_id_is_in_metrics_and_the_report(first) -> None:
    tree, _ = first
    assert tree.metrics()["run_id"] == "weekly-7"
    page = (tree.model / "report.html").read_text(encoding="utf-8")
    assert '<p class="meta">run weekly-7 · 2 identities' in page
    assert "<tr><th>run id</th><td>weekly-7</td></tr>" in page
    assert "; 3 files skipped, not photos" in page


def test_another_run_id_still_reuses_every_embedding(first, sagemaker_tree_class, tmp_path, shared_data):
    first_tree, _ = first
    tree, output = _again(
        first_tree, sagemaker_tree_class, tmp_path, shared_data, facetrain_run_id="weekly-8"
    )
    assert output.startswith("exit 0"), output + str(tree.failure())
    metrics = tree.metrics()
    assert (metrics["embeddings_computed"], metrics["embeddings_reused"]) == (0, PHOTOS)
    assert metrics["hyperparameters"] == first_tree.metrics()["hyperparameters"]
    assert metrics["run_id"] == "weekly-8"


def test_a_job_started_without_a_run_id_shows_none(first, sagemaker_tree_class, tmp_path, shared_data):
    first_tree, _ = first
    tree, output = _again(first_tree, sagemaker_tree_class, tmp_path, shared_data)
    assert output.startswith("exit 0"), output + str(tree.failure())
    assert tree.metrics()["run_id"] is None and tree.metrics()["embeddings_reused"] == PHOTOS
    page = (tree.model / "report.html").read_text(encoding="utf-8")
    assert "run id" not in page and '<p class="meta">2 identities' in page
