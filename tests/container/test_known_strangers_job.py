"""Known strangers through the whole job, on real embeddings (issue 24, item 3): faces-dev enrolled
(embedder=dlib-resnet) with faces-small's 4 people as face_imgs/_strangers/ (at two depths), plus a
stranger file that is no photo and one with no face. The strangers are never enrolled, evaluate() gets
their unit embeddings, metrics.json counts them apart, saved_embeddings.pkl keeps them apart, and a next
run reuses them (previous channel, Spot checkpoint) or, with the folder deleted, forgets them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from facetrain.contract.decision import accepts
from facetrain.contract.names import STRANGERS_FOLDER
from PIL import Image

DLIB = {"embedder": "dlib-resnet"}
PEOPLE = ("person_02", "person_04", "person_05", "person_10")
# faces-small's photos as strangers: two directly in the folder, two deeper down.
STRANGER_PLACES = {
    "angelina_jolie": "angelina_jolie.jpg",
    "kate_siegel": "kate_siegel.jpg",
    "paul_rudd": "public/paul_rudd.jpg",
    "shea_whigham": "public/set-2/shea_whigham.jpg",
}
STRANGER_KEYS = sorted(f"{STRANGERS_FOLDER}/{place}" for place in STRANGER_PLACES.values())
UNUSABLE = {
    f"{STRANGERS_FOLDER}/visitors/notes.jpg": "not_an_image",
    f"{STRANGERS_FOLDER}/visitors/wall.jpg": "no_face",
}


def _blank_jpeg(forge) -> bytes:
    return forge.encode(Image.new("RGB", (400, 300), (128, 128, 128)), "JPEG")


def _tree(sagemaker_tree_class, base, shared_data, forge, strangers: bool = True, checkpoints: bool = False):
    tree = sagemaker_tree_class(base / "opt_ml", dict(DLIB))
    tree.add_identities(shared_data / "faces-dev")
    if strangers:
        folder = tree.images / STRANGERS_FOLDER
        for person, place in STRANGER_PLACES.items():
            (folder / place).parent.mkdir(parents=True, exist_ok=True)
            (folder / place).symlink_to(shared_data / "faces-small" / person / "1.jpg")
        (folder / "visitors").mkdir()
        (folder / "visitors" / "notes.jpg").write_bytes(b"a note, not a photo")
        (folder / "visitors" / "wall.jpg").write_bytes(_blank_jpeg(forge))
        (folder / ".DS_Store").write_bytes(b"\0")  # skipped inside the folder, as in a person's
        (folder / "_old").mkdir()
        (folder / "_old" / "x.jpg").symlink_to(shared_data / "faces-small" / "paul_rudd" / "1.jpg")
    if checkpoints:
        (tree.base / "checkpoints").mkdir()
    return tree


class EvaluateSpy:
    """Wraps facetrain.job.evaluate and keeps what each call got as `strangers`."""

    def __init__(self, real):
        self.real = real
        self.strangers: list[np.ndarray | None] = []

    def __call__(self, *args, **kwargs):
        self.strangers.append(kwargs.get("strangers"))
        return self.real(*args, **kwargs)


def _run(tree, module_job) -> EvaluateSpy:
    import facetrain.job

    spy = EvaluateSpy(facetrain.job.evaluate)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(facetrain.job, "evaluate", spy)
        result = module_job(tree)
    assert result.rc == 0, tree.failure()
    assert len(spy.strangers) == 1
    return spy


@pytest.fixture(scope="module")
def first(sagemaker_tree_class, tmp_path_factory, shared_data, forge, module_job):
    tree = _tree(
        sagemaker_tree_class, tmp_path_factory.mktemp("strangers"), shared_data, forge, checkpoints=True
    )
    return tree, _run(tree, module_job)


def _means(tree) -> dict[str, np.ndarray]:
    return {identity: values for identity, _, values in tree.enrollment(128)}


def test_strangers_are_never_enrolled(first):
    tree, _ = first
    assert [identity for identity, _, _ in tree.enrollment(128)] == list(PEOPLE)
    assert tree.rules()["identities"] == list(PEOPLE)
    assert {record["identity"] for record in tree.records().values()} == set(PEOPLE)
    assert not [key for key in tree.records() if key.startswith(STRANGERS_FOLDER)]
    metrics = tree.metrics()
    assert metrics["identities"] == 4 and metrics["identities_excluded"] == {}
    rows = metrics["evaluation"]["per_identity"]
    assert [row["identity"] for row in rows] == list(PEOPLE)


def test_the_pickle_keeps_the_strangers_apart_for_reuse(first):
    tree, _ = first
    strangers = tree.embeddings()["strangers"]
    assert [record["key"] for record in strangers] == STRANGER_KEYS
    assert {record["identity"] for record in strangers} == {STRANGERS_FOLDER}
    for record in strangers:
        assert record["embedding"].shape == (128,)
        assert abs(float(np.linalg.norm(record["embedding"])) - 1.0) < 1e-3


def test_evaluate_received_the_strangers_unit_embeddings(first):
    tree, spy = first
    (received,) = spy.strangers
    stored = np.stack([record["embedding"] for record in tree.embeddings()["strangers"]])
    assert received.shape == (4, 128) and received.dtype == np.float32
    np.testing.assert_array_equal(received, stored)


def test_metrics_count_the_strangers_apart_from_the_enrollments_images(first):
    tree, _ = first
    metrics = tree.metrics()
    assert (metrics["images_total"], metrics["images_accepted"], metrics["images_rejected"]) == (24, 24, 0)
    assert metrics["rejections_by_reason"] == {}
    assert metrics["strangers"] == {
        "photos": 6,
        "used": 4,
        "rejected": 2,
        "rejections_by_reason": {"no_face": 1, "not_an_image": 1},
    }
    assert metrics["embeddings_computed"] == 28 and metrics["embeddings_reused"] == 0


def test_unusable_strangers_are_rejected_rows_and_not_a_failure(first):
    tree, _ = first
    rows = tree.rejected_by_photo()
    assert set(rows) == set(UNUSABLE)
    for key, reason in UNUSABLE.items():
        assert (rows[key]["identity"], rows[key]["reason"]) == ("", reason)


def test_the_open_set_evaluation_counts_the_strangers_searches(first):
    """Each stranger is one non-mated search against every identity's mean; the dlib embeddings of four
    film actors are far from faces-dev's people, and the count accepted is what the published means and
    threshold give."""
    tree, _ = first
    evaluation = tree.metrics()["evaluation"]
    open_set = evaluation["open_set"]
    known = open_set["known_strangers"]
    assert known["trials"] == 4
    threshold = tree.rules()["accept_threshold"]
    means = np.stack(list(_means(tree).values()))
    stored = np.stack([record["embedding"] for record in tree.embeddings()["strangers"]])
    nearest = np.linalg.norm(stored[:, None, :] - means[None, :, :], axis=2).min(axis=1)
    assert known["errors"] == sum(accepts(float(d), threshold) for d in nearest)
    assert open_set["fpir"]["trials"] == 24 + 4  # each enrolled photo against the other identities, and them


def test_a_next_run_reuses_the_strangers_from_the_previous_pickle(
    first, sagemaker_tree_class, tmp_path, shared_data, forge, module_job
):
    tree, spy = first
    again = _tree(sagemaker_tree_class, tmp_path, shared_data, forge)
    shutil.copy(tree.model / "saved_embeddings.pkl", again.channel("previous") / "saved_embeddings.pkl")

    (received,) = _run(again, module_job).strangers

    metrics = again.metrics()
    assert (metrics["embeddings_computed"], metrics["embeddings_reused"]) == (0, 28)
    assert metrics["strangers"] == tree.metrics()["strangers"]
    np.testing.assert_array_equal(received, spy.strangers[0])
    assert [r["key"] for r in again.embeddings()["strangers"]] == STRANGER_KEYS
    assert again.rules()["accept_threshold"] == tree.rules()["accept_threshold"]


def test_a_restarted_spot_job_resumes_the_strangers_from_its_checkpoint(
    first, sagemaker_tree_class, tmp_path, shared_data, forge, module_job
):
    tree, spy = first
    segments = sorted((tree.base / "checkpoints").iterdir())
    assert segments, "the first run had a checkpoint folder: its outcomes were saved"
    restarted = _tree(sagemaker_tree_class, tmp_path, shared_data, forge)
    shutil.copytree(tree.base / "checkpoints", restarted.base / "checkpoints")

    (received,) = _run(restarted, module_job).strangers

    metrics = restarted.metrics()
    # Every outcome resumed, the strangers' lasting rejections (no face, not an image) included.
    assert (metrics["embeddings_computed"], metrics["embeddings_reused"]) == (0, 28)
    assert metrics["strangers"] == tree.metrics()["strangers"]
    np.testing.assert_array_equal(received, spy.strangers[0])


def test_deleting_the_folder_forgets_the_strangers_at_the_next_run(
    first, sagemaker_tree_class, tmp_path, shared_data, forge, module_job
):
    tree, _ = first
    deleted = _tree(sagemaker_tree_class, tmp_path, shared_data, forge, strangers=False)
    shutil.copy(tree.model / "saved_embeddings.pkl", deleted.channel("previous") / "saved_embeddings.pkl")

    (received,) = _run(deleted, module_job).strangers

    assert received.shape == (0, 128)
    assert deleted.embeddings()["strangers"] == []  # their embeddings are not carried over
    metrics = deleted.metrics()
    assert metrics["strangers"] == {"photos": 0, "used": 0, "rejected": 0, "rejections_by_reason": {}}
    assert metrics["evaluation"]["open_set"]["known_strangers"] is None
    assert metrics["embeddings_reused"] == 24
    assert metrics["dataset_fingerprint"] != tree.metrics()["dataset_fingerprint"]
    for identity, mean in _means(tree).items():
        np.testing.assert_allclose(_means(deleted)[identity], mean, atol=1e-6)
