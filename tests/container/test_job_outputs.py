"""The job's files in model/ on faces-dev (24 photos, 4 people), weights=none: content and determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from facetrain.contract.metrics import read_metrics
from PIL import Image

OUTPUT_FILES = [
    "final_mean_embeddings.csv",
    "metrics.json",
    "rejected.csv",
    "report.html",
    "rules.py",
    "saved_embeddings.pkl",
]
SEED = "5"


def dev_photos(shared_data: Path) -> dict[str, Path]:
    root = shared_data / "faces-dev"
    return {p.relative_to(root).as_posix(): p for p in sorted(root.glob("*/*.jpg"))}


def make_dev_tree(sagemaker_tree_class, base: Path, shared_data: Path, seed: str):
    tree = sagemaker_tree_class(base, {"weights": "none", "seed": seed})
    tree.add_identities(shared_data / "faces-dev")
    return tree


@pytest.fixture(scope="module")
def dev_run(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    tree = make_dev_tree(sagemaker_tree_class, tmp_path_factory.mktemp("dev") / "opt_ml", shared_data, SEED)
    result = module_job(tree)
    assert result.rc == 0, tree.failure()
    return tree


def test_model_holds_exactly_the_outputs(dev_run):
    assert dev_run.model_files() == OUTPUT_FILES
    assert dev_run.failure() is None


def test_enrollment_csv(dev_run, shared_data):
    text = dev_run.enrollment_text()
    lines = text.splitlines()
    assert lines[0].startswith("# NOT FOR PRODUCTION")
    assert lines[1].startswith('"identity","num_images","e0","e1",')
    assert lines[1].endswith(',"e511"')
    rows = dev_run.enrollment()
    expected_counts = {p.name: len(list(p.glob("*.jpg"))) for p in (shared_data / "faces-dev").iterdir()}
    assert [(name, count) for name, count, _ in rows] == sorted(expected_counts.items())
    for name, _, values in rows:
        assert values.shape == (512,)
        assert abs(float(np.linalg.norm(values.astype(np.float64))) - 1.0) < 1e-5, name
    assert len(lines) == 2 + len(rows)


def test_records_match_the_photos(dev_run, shared_data):
    photos = dev_photos(shared_data)
    records = dev_run.records()
    assert sorted(records) == sorted(photos)
    for key, record in records.items():
        assert record["identity"] == key.split("/")[0]
        assert record["sha256"] == hashlib.sha256(photos[key].read_bytes()).hexdigest()
        assert record["embedding"].shape == (512,)
        assert abs(float(np.linalg.norm(record["embedding"])) - 1.0) < 1e-5
        assert record["faces_found"] >= 1
        assert 0.5 < record["probability"] <= 1.0
        with Image.open(photos[key]) as image:
            width, height = image.size
        left, top, right, bottom = record["box"]
        # the box is in full-resolution pixels of the photo (not of the 512 px detection copy)
        assert -0.1 * width < left < right < 1.1 * width, (key, record["box"], image.size)
        assert -0.1 * height < top < bottom < 1.1 * height, (key, record["box"], image.size)
        assert right - left >= 20


def test_identity_mean_is_the_normalised_mean_of_its_photos(dev_run):
    by_identity: dict[str, list[np.ndarray]] = {}
    for record in dev_run.records().values():
        by_identity.setdefault(record["identity"], []).append(record["embedding"].astype(np.float64))
    rows = dev_run.enrollment()
    assert {name for name, _, _ in rows} == set(by_identity)
    for name, count, values in rows:
        assert count == len(by_identity[name])
        total = np.sum(by_identity[name], axis=0)
        np.testing.assert_allclose(values, total / np.linalg.norm(total), atol=1e-5, err_msg=name)


def test_embeddings_pickle_metadata(dev_run):
    payload = dev_run.embeddings()
    metadata = payload["metadata"]
    assert metadata["not_for_production"] is True
    assert "NOT FOR PRODUCTION" in metadata["warning"]
    assert metadata["weights"] == "none"
    assert metadata["weights_sha256"] is None
    assert metadata["embedding_dim"] == 512
    assert metadata["hyperparameters"]["seed"] == int(SEED)
    assert metadata["hyperparameters"]["weights"] == "none"
    # runtime=onnx (the default): ONNX Runtime made the embeddings, not torch
    assert set(metadata["versions"]) == {"facetrain", "onnxruntime", "numpy", "pillow"}


def test_rules_file(dev_run, shared_data):
    text = dev_run.rules_text()
    assert "NOT FOR PRODUCTION" in text
    rules = dev_run.rules()
    assert rules["identities"] == sorted(p.name for p in (shared_data / "faces-dev").iterdir())
    assert rules["not_for_production"] is True
    assert rules["weights"] == "none"
    assert rules["metric"] == "euclidean"
    assert rules["image_size"] == 160
    assert rules["embedding_dim"] == 512
    metrics = dev_run.metrics()
    # Behaviour changed (issue 24): the threshold was facenet's fallback 1.1 (too few pairs to calibrate);
    # now the data bounds it: random weights put every photo near every other, so it lies below the
    # nearest non-mated search and accepts no stranger.
    evaluation = metrics["evaluation"]
    assert evaluation["threshold_source"] == "data-bound"
    assert rules["accept_threshold"] == evaluation["threshold"]
    assert 0 < rules["accept_threshold"] < evaluation["open_set"]["nearest_non_mated_distance"]
    assert rules["dataset_fingerprint"] == metrics["dataset_fingerprint"]
    assert rules["created_at"] == metrics["created_at"]


def test_dataset_fingerprint_is_recomputable(dev_run, shared_data):
    digest = hashlib.sha256()
    for key, path in sorted(dev_photos(shared_data).items()):
        digest.update(f"{key}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    assert dev_run.metrics()["dataset_fingerprint"] == digest.hexdigest()


def test_rejected_csv_is_empty_but_marked(dev_run):
    assert dev_run.rejected_text().splitlines() == [
        "# NOT FOR PRODUCTION: embeddings from random weights (weights=none), for tests only; "
        "they do not recognise anyone",
        '"identity","photo","reason","message"',
    ]


def test_metrics(dev_run):
    metrics = dev_run.metrics()
    # the document its readers read: the contract's model, format and version first
    document = read_metrics((dev_run.model / "metrics.json").read_text())
    assert list(metrics)[:2] == ["format", "version"] and document.format == "facetrain.metrics"
    assert (
        document.evaluation is not None
        and document.evaluation.threshold == metrics["evaluation"]["threshold"]
    )
    assert metrics["status"] == "succeeded"
    assert metrics["not_for_production"] is True
    assert "NOT FOR PRODUCTION" in metrics["warning"]
    assert metrics["images_total"] == 24
    assert metrics["images_accepted"] == 24
    assert metrics["images_rejected"] == 0
    assert metrics["rejections_by_reason"] == {}
    assert metrics["identities"] == 4
    assert metrics["identities_excluded"] == {}
    assert metrics["weights"] == "none"
    assert metrics["weights_sha256"] is None
    assert metrics["device"] in ("cpu", "cuda")
    assert metrics["images_per_second"] > 0
    assert metrics["hyperparameters"]["seed"] == int(SEED)
    timings = metrics["timings"]
    assert set(timings) == {
        "model_setup",
        "decode",
        "detect",
        "crop",
        "embed",
        "evaluate",
        "write",
        "report",
        "total",
    }
    assert all(value >= 0 for value in timings.values())
    assert timings["total"] >= timings["detect"] + timings["embed"]


def test_same_seed_is_byte_identical_and_another_seed_differs(
    dev_run, sagemaker_tree_class, tmp_path, shared_data, run_job
):
    again = make_dev_tree(sagemaker_tree_class, tmp_path / "again", shared_data, SEED)
    assert run_job(again).rc == 0, again.failure()
    assert again.enrollment_text() == dev_run.enrollment_text()
    assert (again.model / "final_mean_embeddings.csv").read_bytes() == (
        dev_run.model / "final_mean_embeddings.csv"
    ).read_bytes()

    other = make_dev_tree(sagemaker_tree_class, tmp_path / "other", shared_data, "6")
    assert run_job(other).rc == 0, other.failure()
    first = {name: values for name, _, values in dev_run.enrollment()}
    second = {name: values for name, _, values in other.enrollment()}
    assert first.keys() == second.keys()
    for name in first:
        assert np.abs(first[name] - second[name]).max() > 1e-3, name
    # the photos are the same, so the fingerprint is too
    assert other.metrics()["dataset_fingerprint"] == dev_run.metrics()["dataset_fingerprint"]
