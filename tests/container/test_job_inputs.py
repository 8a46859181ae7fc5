"""Photos derived at test time from the real ones (rotated, truncated, odd modes, …) through the job.

One job run (module fixture) holds every kind of input; the tests read its outputs. With weights=none all
embeddings are nearly parallel (cosine > 0.9999 between different people), so a cosine threshold proves
nothing: rotation is checked through the face box (in the upright frame, against a control without the
EXIF tag) and by comparing distances, and lossless variants (16-bit, alpha) must give the same embedding.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

KATE = "faces-small/kate_siegel/1.jpg"  # 1125 x 1612
FLAT_GREY = (128, 128, 128)


def box_distance(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def distance(a, b) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64)))


@pytest.fixture(scope="module")
def inputs_run(sagemaker_tree_class, tmp_path_factory, shared_data, forge, module_job):
    tree = sagemaker_tree_class(
        tmp_path_factory.mktemp("inputs") / "opt_ml", {"weights": "none", "seed": "3"}
    )
    tree.add_identities(shared_data / "faces-small")
    kate = forge.load_rgb(shared_data / KATE)
    kate_bytes = (shared_data / KATE).read_bytes()

    tree.add_photo("rotated", "upright.jpg", forge.encode(kate, "JPEG", quality=95))
    for orientation in (3, 6, 8):
        tree.add_photo("rotated", f"exif{orientation}.jpg", forge.exif_rotated_jpeg(kate, orientation))
    tree.add_photo("control", "sideways_no_tag.jpg", forge.exif_rotated_jpeg(kate, 6, tag=False))

    gray = kate.convert("L")
    tree.add_photo("modes", "gray.png", forge.encode(gray, "PNG"))
    tree.add_photo("modes", "gray16.png", forge.gray16_png(gray))
    tree.add_photo("modes", "rgb.png", forge.encode(kate, "PNG"))
    tree.add_photo("modes", "rgba.png", forge.encode(kate.convert("RGBA"), "PNG"))
    tree.add_photo("modes", "cmyk.jpg", forge.encode(kate.convert("CMYK"), "JPEG", quality=95))
    tree.add_photo("modes", "webp_named.jpg", forge.encode(kate, "WEBP", quality=90))

    tree.add_photo("broken", "good.jpg", shared_data / "faces-small" / "paul_rudd" / "1.jpg")
    tree.add_photo("broken", "truncated.jpg", forge.truncated(kate_bytes))
    tree.add_photo("broken", "notes.jpg", b"holiday notes\nnot a photo\n")
    tree.add_photo("broken", "tiny.jpg", forge.encode(kate.resize((10, 10)), "JPEG"))
    tree.add_photo("broken", "huge.png", forge.png_with_declared_size(100_000, 100_000))
    tree.add_photo("broken", "flat.png", forge.encode(Image.new("RGB", (640, 480), FLAT_GREY), "PNG"))

    tree.add_photo("all_broken", "truncated.jpg", forge.truncated(kate_bytes))
    tree.add_photo("all_broken", "notes.jpg", b"not a photo")

    tree.add_photo("", "group.jpg", b"photos go in folders")  # a stray file (a .txt is skipped)
    tree.add_photo("_drafts", "1.jpg", shared_data / KATE)
    tree.add_photo(".cache", "1.jpg", shared_data / KATE)

    result = module_job(tree)
    assert result.rc == 0, tree.failure()
    return tree


def test_exif_rotated_photos_are_accepted_in_the_upright_frame(inputs_run):
    records = inputs_run.records()
    upright = records["rotated/upright.jpg"]
    width = 1125
    for orientation in (3, 6, 8):
        record = records[f"rotated/exif{orientation}.jpg"]
        assert box_distance(record["box"], upright["box"]) < 0.02 * width, (orientation, record["box"])
    # control: the same pixels without the tag are not seen upright (the face box is elsewhere)
    control = records.get("control/sideways_no_tag.jpg")
    if control is None:
        assert inputs_run.rejected_by_photo()["control/sideways_no_tag.jpg"]["reason"] == "no_face"
    else:
        assert box_distance(control["box"], upright["box"]) > 0.1 * width


def test_exif_rotated_embeddings_are_closest_to_the_upright_photo(inputs_run):
    records = inputs_run.records()
    upright = records["rotated/upright.jpg"]["embedding"]
    others = [
        distance(records[f"{name}/1.jpg"]["embedding"], upright)
        for name in ("angelina_jolie", "paul_rudd", "shea_whigham")
    ]
    for orientation in (3, 6, 8):
        rotated = records[f"rotated/exif{orientation}.jpg"]["embedding"]
        assert distance(rotated, upright) < min(others), orientation


def test_lossless_variants_give_the_same_face_and_embedding(inputs_run):
    records = inputs_run.records()
    for variant, reference in (("gray16.png", "gray.png"), ("rgba.png", "rgb.png")):
        got, expected = records[f"modes/{variant}"], records[f"modes/{reference}"]
        assert box_distance(got["box"], expected["box"]) < 0.01, variant
        np.testing.assert_allclose(got["embedding"], expected["embedding"], atol=1e-5, err_msg=variant)


def test_other_modes_and_formats_are_accepted(inputs_run):
    records = inputs_run.records()
    reference = records["modes/rgb.png"]
    for name in ("gray.png", "cmyk.jpg", "webp_named.jpg"):
        record = records[f"modes/{name}"]
        assert record["faces_found"] == 1, name
        assert box_distance(record["box"], reference["box"]) < 0.02 * 1125, (name, record["box"])
    assert "modes" in [name for name, _, _ in inputs_run.enrollment()]


@pytest.mark.parametrize(
    ("photo", "reason", "words"),
    [
        ("broken/truncated.jpg", "unreadable", "truncated or corrupt"),
        ("broken/notes.jpg", "not_an_image", "not an image"),
        ("broken/tiny.jpg", "too_small", "10x10 px"),
        ("broken/huge.png", "too_large", "max_image_pixels"),
        ("broken/flat.png", "no_face", "no face found"),
        ("group.jpg", "not_in_identity_folder", "face_imgs/<person>/"),
    ],
)
def test_broken_photos_are_rejected_with_their_reason(inputs_run, photo, reason, words):
    row = inputs_run.rejected_by_photo()[photo]
    assert row["reason"] == reason
    assert words in row["message"]
    assert row["identity"] == ("" if "/" not in photo else photo.split("/")[0])
    assert photo not in inputs_run.records()


def test_identity_with_a_good_photo_is_enrolled_despite_broken_ones(inputs_run):
    assert "broken/good.jpg" in inputs_run.records()
    counts = {name: count for name, count, _ in inputs_run.enrollment()}
    assert counts["broken"] == 1
    assert counts["rotated"] == 4
    assert counts["modes"] == 6


def test_identity_without_usable_photo_is_excluded_and_reported(inputs_run):
    metrics = inputs_run.metrics()
    assert set(metrics["identities_excluded"]) == {"all_broken"}
    assert "0 usable photos" in metrics["identities_excluded"]["all_broken"]
    assert "all_broken" not in [name for name, _, _ in inputs_run.enrollment()]
    assert "all_broken" not in inputs_run.rules()["identities"]
    rows = inputs_run.rejected_by_photo()
    assert rows["all_broken/truncated.jpg"]["reason"] == "unreadable"
    assert rows["all_broken/notes.jpg"]["reason"] == "not_an_image"


def test_underscore_and_dot_folders_are_skipped(inputs_run):
    keys = set(inputs_run.records()) | set(inputs_run.rejected_by_photo())
    assert not [key for key in keys if key.startswith(("_", "."))]
    assert "_drafts" not in inputs_run.rules()["identities"]


def test_counts_are_consistent(inputs_run):
    metrics = inputs_run.metrics()
    rejected = inputs_run.rejected()
    files = [p for p in inputs_run.images.rglob("*") if p.is_file() or p.is_symlink()]
    listed = [
        p
        for p in files
        if not any(part.startswith(("_", ".")) for part in p.relative_to(inputs_run.images).parts)
    ]
    assert metrics["images_total"] == len(listed) == 24
    assert metrics["images_accepted"] == len(inputs_run.records())
    assert metrics["images_rejected"] == len(rejected)
    assert metrics["images_total"] == metrics["images_accepted"] + metrics["images_rejected"]
    by_reason: dict[str, int] = {}
    for row in rejected:
        by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
    assert metrics["rejections_by_reason"] == by_reason
    assert metrics["identities"] == len(inputs_run.enrollment()) == len(inputs_run.rules()["identities"])
    assert inputs_run.rejected_text().startswith("# NOT FOR PRODUCTION")


def test_min_images_per_identity_excludes_small_identities(sagemaker_tree, shared_data, run_job):
    sagemaker_tree.update_hyperparameters(min_images_per_identity="2")
    for name in ("img12.jpg", "img53.jpg"):
        sagemaker_tree.add_photo("person_02", name, shared_data / "faces-dev" / "person_02" / name)
    sagemaker_tree.add_photo("kate", "1.jpg", shared_data / KATE)
    assert run_job(sagemaker_tree).rc == 0, sagemaker_tree.failure()
    assert [(name, count) for name, count, _ in sagemaker_tree.enrollment()] == [("person_02", 2)]
    row = sagemaker_tree.rejected_by_photo()["kate/1.jpg"]
    assert row["reason"] == "identity_excluded"
    assert "fewer than min_images_per_identity=2" in row["message"]
    metrics = sagemaker_tree.metrics()
    assert set(metrics["identities_excluded"]) == {"kate"}
    assert "1 usable photo" in metrics["identities_excluded"]["kate"]
    assert (metrics["images_total"], metrics["images_accepted"], metrics["images_rejected"]) == (3, 2, 1)
    assert sagemaker_tree.rules()["identities"] == ["person_02"]
    assert set(sagemaker_tree.records()) == {"person_02/img12.jpg", "person_02/img53.jpg"}


@pytest.fixture(scope="module")
def multiface_runs(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    trees = {}
    for selection in ("reject", "largest", "most_probable"):
        tree = sagemaker_tree_class(
            tmp_path_factory.mktemp(selection) / "opt_ml",
            {"weights": "none", "seed": "0", "face_selection": selection},
        )
        tree.add_photo("group", "multiface.jpg", shared_data / "edge-cases" / "multiface.jpg")
        tree.add_photo("kate", "1.jpg", shared_data / KATE)
        assert module_job(tree).rc == 0, tree.failure()
        trees[selection] = tree
    return trees


def test_several_faces_rejected_with_face_selection_reject(multiface_runs):
    tree = multiface_runs["reject"]
    row = tree.rejected_by_photo()["group/multiface.jpg"]
    assert row["reason"] == "several_faces"
    assert "face_selection=reject" in row["message"]
    assert "group" in tree.metrics()["identities_excluded"]
    assert [name for name, _, _ in tree.enrollment()] == ["kate"]


def test_several_faces_accepted_with_largest_or_most_probable(multiface_runs):
    largest = multiface_runs["largest"].records()["group/multiface.jpg"]
    probable = multiface_runs["most_probable"].records()["group/multiface.jpg"]
    assert largest["faces_found"] >= 2
    assert probable["faces_found"] == largest["faces_found"]

    def area(box):
        return (box[2] - box[0]) * (box[3] - box[1])

    assert area(largest["box"]) >= area(probable["box"])
    assert probable["probability"] >= largest["probability"]
    for selection in ("largest", "most_probable"):
        tree = multiface_runs[selection]
        assert [name for name, _, _ in tree.enrollment()] == ["group", "kate"]
        assert tree.metrics()["hyperparameters"]["face_selection"] == selection
