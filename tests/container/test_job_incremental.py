"""Incremental retraining in the job: the `previous` channel's embeddings are reused by photo sha256 when
the embedding settings are unchanged, and the result equals a full recompute."""

from __future__ import annotations

import shutil

import numpy as np
import pytest


def _tree(sagemaker_tree_class, base, shared_data, people=("person_02", "person_04"), limit=3):
    tree = sagemaker_tree_class(base)
    tree.add_identities(shared_data / "faces-dev", limit=limit, names=people)
    return tree


def _with_previous(tree, previous_tree):
    channel = tree.channel("previous")
    shutil.copy(previous_tree.model / "saved_embeddings.pkl", channel / "saved_embeddings.pkl")
    return tree


def _means(tree) -> dict[str, np.ndarray]:
    return {identity: values for identity, _, values in tree.enrollment()}


@pytest.fixture
def full(sagemaker_tree_class, shared_data, tmp_path, run_job):
    tree = _tree(sagemaker_tree_class, tmp_path / "full", shared_data)
    assert run_job(tree).rc == 0
    return tree


def test_nothing_new_computes_nothing_and_equals_the_full_run(
    sagemaker_tree_class, shared_data, tmp_path, run_job, full
):
    again = _with_previous(_tree(sagemaker_tree_class, tmp_path / "again", shared_data), full)

    assert run_job(again).rc == 0

    metrics = again.metrics()
    assert (metrics["embeddings_computed"], metrics["embeddings_reused"]) == (0, 6)
    for identity, mean in _means(full).items():
        np.testing.assert_allclose(_means(again)[identity], mean, atol=1e-5)


def test_one_new_photo_computes_one(sagemaker_tree_class, shared_data, tmp_path, run_job, full):
    grown = _with_previous(_tree(sagemaker_tree_class, tmp_path / "grown", shared_data, limit=4), full)
    recomputed = _tree(sagemaker_tree_class, tmp_path / "recomputed", shared_data, limit=4)

    assert run_job(grown).rc == 0 and run_job(recomputed).rc == 0

    assert (grown.metrics()["embeddings_computed"], grown.metrics()["embeddings_reused"]) == (2, 6)
    for identity, mean in _means(recomputed).items():
        np.testing.assert_allclose(_means(grown)[identity], mean, atol=1e-5)


def test_a_removed_photo_changes_its_identitys_mean_as_a_full_recompute(
    sagemaker_tree_class, shared_data, tmp_path, run_job, full
):
    shrunk = _with_previous(_tree(sagemaker_tree_class, tmp_path / "shrunk", shared_data), full)
    removed = sorted((shrunk.images / "person_02").iterdir())[0]
    removed.unlink()
    reference = _tree(sagemaker_tree_class, tmp_path / "reference", shared_data)
    (reference.images / "person_02" / removed.name).unlink()

    assert run_job(shrunk).rc == 0 and run_job(reference).rc == 0

    assert (shrunk.metrics()["embeddings_computed"], shrunk.metrics()["embeddings_reused"]) == (0, 5)
    assert not np.allclose(_means(shrunk)["person_02"], _means(full)["person_02"], atol=1e-4)
    np.testing.assert_allclose(_means(shrunk)["person_02"], _means(reference)["person_02"], atol=1e-5)
    np.testing.assert_allclose(_means(shrunk)["person_04"], _means(full)["person_04"], atol=1e-5)


def test_a_changed_embedding_setting_recomputes_everything(
    sagemaker_tree_class, shared_data, tmp_path, run_job, full
):
    changed = _with_previous(_tree(sagemaker_tree_class, tmp_path / "changed", shared_data), full)
    changed.update_hyperparameters(margin="10")

    assert run_job(changed).rc == 0

    assert (changed.metrics()["embeddings_computed"], changed.metrics()["embeddings_reused"]) == (6, 0)


def test_a_setting_that_does_not_change_embeddings_keeps_the_reuse(
    sagemaker_tree_class, shared_data, tmp_path, run_job, full
):
    other_batch = _with_previous(_tree(sagemaker_tree_class, tmp_path / "batch", shared_data), full)
    other_batch.update_hyperparameters(batch_size="2", min_images_per_identity="1")

    assert run_job(other_batch).rc == 0

    assert other_batch.metrics()["embeddings_reused"] == 6


def test_switching_the_runtime_recomputes_everything_and_agrees(
    sagemaker_tree_class, shared_data, tmp_path, run_job, full
):
    """The runtimes' embeddings agree to ~1e-7 but are not bit-equal: the fingerprint holds the runtime
    and the ONNX files' digests, so a switch recomputes every photo (and the means still agree)."""
    switched = _with_previous(_tree(sagemaker_tree_class, tmp_path / "torch", shared_data), full)
    switched.update_hyperparameters(runtime="torch")

    assert run_job(switched).rc == 0

    assert full.metrics()["runtime"] == "onnx" and switched.metrics()["runtime"] == "torch"
    assert (switched.metrics()["embeddings_computed"], switched.metrics()["embeddings_reused"]) == (6, 0)
    assert full.metrics()["model_files"].keys() - switched.metrics()["model_files"].keys() == {
        "pnet.onnx",
        "rnet.onnx",
        "onet.onnx",
        "inception_resnet_v1-random-seed0.onnx",
    }
    for identity, mean in _means(full).items():
        np.testing.assert_allclose(_means(switched)[identity], mean, atol=1e-4)


def test_another_onnx_export_recomputes_everything(
    sagemaker_tree_class, shared_data, tmp_path, run_job, full, monkeypatch
):
    """Another export of InceptionResnetV1 in the cache (here: seed 1's network under seed 0's name, its
    manifest updated to match) is another fingerprint: nothing is reused, and the embeddings change."""
    import json

    from facetrain.contract.hyperparameters import Hyperparameters
    from facetrain.inference.export import export_models
    from facetrain.inference.model_files import resolve_model, sha256_file
    from facetrain.inference.onnx_files import onnx_home

    cache = tmp_path / "onnx-cache"
    shutil.copytree(onnx_home(), cache)
    folder = cache / "facenet-random-seed0"
    manifest = json.loads((folder / "manifest.json").read_text())
    model = folder / manifest["files"][0]["name"]
    other = export_models(tmp_path / "seed1", resolve_model(Hyperparameters(weights="none"), None), seed=1)
    shutil.copy(next(f.path for f in other.files if f.role == "facenet"), model)
    manifest["files"][0]["sha256"] = sha256_file(model)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("FACETRAIN_ONNX_DIR", str(cache))
    changed = _with_previous(_tree(sagemaker_tree_class, tmp_path / "reexported", shared_data), full)

    assert run_job(changed).rc == 0

    assert (changed.metrics()["embeddings_computed"], changed.metrics()["embeddings_reused"]) == (6, 0)
    assert not np.allclose(_means(changed)["person_02"], _means(full)["person_02"], atol=1e-3)
