"""A Spot interruption and its restart, with the real `train` console script: SIGTERM mid-job flushes the
checkpoint, and the restarted job (a fresh /opt/ml with the checkpoint folder put back, as SageMaker does)
computes only the photos it had not done, and enrolls exactly as an uninterrupted run."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import numpy as np
import pytest
from facetrain.checkpoints import load_checkpoints
from test_train_subprocess import TRAIN, sigterm_after, train_env

pytestmark = pytest.mark.slow
COPIES = 2  # faces-dev twice (48 photos); the second copy's bytes differ, so that its sha256 does too


def _tree(sagemaker_tree_class, base, shared_data, checkpoints: bool):
    tree = sagemaker_tree_class(base)
    for copy in range(COPIES):
        for photo in sorted((shared_data / "faces-dev").glob("*/*.jpg")):
            name = f"copy{copy}_{photo.name}"
            # bytes after the JPEG's end marker: the same pixels, another file
            tree.add_photo(photo.parent.name, name, photo if copy == 0 else photo.read_bytes() + b"\0" * copy)
    if checkpoints:
        (tree.base / "checkpoints").mkdir()
    return tree


def _train(tree, tmp_path, name: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [str(TRAIN), "train"], env=train_env(tree), cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    (tmp_path / f"{name}.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    return result, time.monotonic() - started


def test_an_interrupted_job_resumes_from_its_checkpoint(sagemaker_tree_class, shared_data, tmp_path):
    interrupted = _tree(sagemaker_tree_class, tmp_path / "interrupted", shared_data, checkpoints=True)
    total = sum(1 for _ in interrupted.images.rglob("*.jpg"))
    assert total == 24 * COPIES

    log_path = tmp_path / "interrupted.log"
    started = time.monotonic()
    rc, output = sigterm_after(interrupted, log_path, f"progress: 25/{total} photos processed", 300)
    interrupted_seconds = time.monotonic() - started
    assert rc == 143, output
    assert f"progress: {total}/{total}" not in output
    segments = re.findall(r"checkpoint: (\d+) embeddings? and (\d+) rejections? saved", output)
    assert segments, output
    saved = sum(int(embeddings) for embeddings, _ in segments)
    assert 0 < saved < total
    assert len(list((interrupted.base / "checkpoints").iterdir())) == len(segments)

    # SageMaker restarts the job on a new instance and puts the checkpoint objects back
    restarted = _tree(sagemaker_tree_class, tmp_path / "restarted", shared_data, checkpoints=False)
    shutil.copytree(interrupted.base / "checkpoints", restarted.base / "checkpoints")
    resumed, resumed_seconds = _train(restarted, tmp_path, "restarted")
    reference = _tree(sagemaker_tree_class, tmp_path / "reference", shared_data, checkpoints=False)
    whole, whole_seconds = _train(reference, tmp_path, "reference")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert f"checkpoint: {saved} photo outcomes resumed ({saved} embeddings, 0 rejections)" in resumed.stdout
    metrics = restarted.metrics()
    assert (metrics["embeddings_computed"], metrics["embeddings_reused"]) == (total - saved, saved)
    assert reference.metrics()["embeddings_computed"] == total
    # the same enrollment as the uninterrupted run
    means = {identity: values for identity, _, values in restarted.enrollment()}
    expected = {identity: values for identity, _, values in reference.enrollment()}
    assert means.keys() == expected.keys()
    for identity, values in expected.items():
        np.testing.assert_allclose(means[identity], values, atol=1e-5)
    records, expected_records = restarted.records(), reference.records()
    assert records.keys() == expected_records.keys()
    for key, record in expected_records.items():
        np.testing.assert_allclose(records[key]["embedding"], record["embedding"], atol=1e-5)
    # the restarted job's checkpoint now holds every photo
    fingerprint = restarted.embeddings()["metadata"]["embedding_fingerprint"]
    assert len(load_checkpoints(restarted.base / "checkpoints", fingerprint, 512).accepted) == total
    print(
        f"\nspot resume, {total} photos: interrupted after {interrupted_seconds:.1f} s with {saved} saved; "
        f"restart computed {total - saved} in {resumed_seconds:.1f} s; uninterrupted {whole_seconds:.1f} s"
    )
