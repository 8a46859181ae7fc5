"""`facetrain identify` on real photos against a job's results (weights=none, so the job's seed matters).

Each photo's line holds `faces`, one answer per face found; the face the job enrolled (face_selection=
largest) is among them, embedded exactly as the job embedded it."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from facetrain.contract.embeddings_file import dump_embeddings, load_embeddings
from facetrain.contract.rules_file import load_rules, render_rules
from PIL import Image
from support.cli import identify

SEED = "7"
PHOTOS = ["faces-dev/person_02/img3.jpg", "faces-dev/person_10/img46.jpg", "faces-dev/person_04/img57.jpg"]


@pytest.fixture(scope="module")
def results(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    tree = sagemaker_tree_class(
        tmp_path_factory.mktemp("identify") / "opt_ml", {"weights": "none", "seed": SEED}
    )
    tree.add_identities(shared_data / "faces-dev")
    assert module_job(tree).rc == 0, tree.failure()
    return tree


def test_identify_embeds_exactly_as_the_job_did(results, shared_data, capsys):
    code, answers, err = identify(
        capsys, *(shared_data / p for p in PHOTOS), "--results", results.model, "--top", "4"
    )
    assert code == 0, err
    records = results.records()
    means = {name: values.astype(np.float64) for name, _, values in results.enrollment()}
    threshold = results.rules()["accept_threshold"]
    assert [answer["photo"] for answer in answers] == [str(shared_data / p) for p in PHOTOS]
    for photo, line in zip(PHOTOS, answers, strict=True):
        record = records[photo.removeprefix("faces-dev/")]
        assert line["faces_found"] == record["faces_found"] == len(line["faces"])
        # the face the job enrolled (the largest) is one of the faces answered, with the job's box
        [answer] = [face for face in line["faces"] if face["box"] == record["box"]]
        expected = {name: float(np.linalg.norm(record["embedding"] - mean)) for name, mean in means.items()}
        assert len(answer["candidates"]) == 4
        for candidate in answer["candidates"]:
            # the same crop through the same seeded random weights: the job's embedding, to float noise
            assert candidate["distance"] == pytest.approx(expected[candidate["identity"]], abs=5e-6)
            assert candidate["accepted"] == (candidate["distance"] <= threshold)
        ranked = sorted(expected, key=expected.get)
        assert [c["identity"] for c in answer["candidates"]] == ranked
        assert answer["distance"] == answer["candidates"][0]["distance"]
        assert answer["accepted"] == answer["candidates"][0]["accepted"]
        assert answer["identity"] == (ranked[0] if answer["accepted"] else None)
        assert answer["margin"] == pytest.approx(expected[ranked[1]] - expected[ranked[0]], abs=1e-5)
        assert answer["probability"] == record["probability"]


def test_largest_face_only_answers_the_face_the_job_enrolled(results, shared_data, capsys):
    code, answers, err = identify(
        capsys, *(shared_data / p for p in PHOTOS), "--results", results.model, "--largest-face-only"
    )
    assert code == 0, err
    records = results.records()
    for photo, line in zip(PHOTOS, answers, strict=True):
        record = records[photo.removeprefix("faces-dev/")]
        [answer] = line["faces"]
        assert answer["box"] == record["box"]
        assert line["faces_found"] == record["faces_found"]


def test_weights_none_results_warn_loudly(results, shared_data, capsys):
    code, [answer], err = identify(capsys, shared_data / PHOTOS[0], "--results", results.model)
    assert code == 0
    assert "NOT FOR PRODUCTION" in err
    assert "NOT FOR PRODUCTION" in answer["warning"]
    assert answer["faces"] and all(len(face["candidates"]) == 3 for face in answer["faces"])  # --top default


def test_photo_without_a_face_is_an_answer_not_a_traceback(results, shared_data, tmp_path, capsys):
    blank = tmp_path / "wall.jpg"
    Image.new("RGB", (400, 300), (200, 190, 180)).save(blank)
    code, answers, err = identify(capsys, blank, shared_data / PHOTOS[0], "--results", results.model)
    assert code == 0, err
    assert answers[0]["photo"] == str(blank)
    assert answers[0]["faces"] == [] and answers[0]["identities"] == []  # nobody, and nobody accepted
    assert answers[0]["faces_found"] == 0 and answers[0]["faces_answered"] == 0
    assert answers[0]["reason"] == "no_face"
    assert answers[0]["error"].startswith("no face found")
    assert answers[1]["faces"][0]["candidates"]  # the next photo is still identified
    assert "Traceback" not in err


def test_unreadable_photos_exit_1_with_their_reason(results, shared_data, tmp_path, capsys):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo", encoding="utf-8")
    missing = tmp_path / "missing.jpg"
    code, answers, _ = identify(capsys, text, missing, shared_data / PHOTOS[0], "--results", results.model)
    assert code == 1
    assert [a.get("reason") for a in answers] == ["not_an_image", "unreadable", None]
    assert [a["faces"] for a in answers[:2]] == [[], []]
    assert answers[2]["faces"][0]["candidates"]


def test_results_folder_without_results_exits_2(tmp_path, shared_data, capsys):
    code, answers, err = identify(capsys, shared_data / PHOTOS[0], "--results", tmp_path)
    assert code == 2 and answers == []
    assert "rules.py" in err and "published results folder" in err


def copy_results(results, tmp_path):
    folder = tmp_path / "results"
    shutil.copytree(results.model, folder)
    return folder


def test_weights_other_than_the_results_are_refused(results, shared_data, tmp_path, capsys):
    folder = copy_results(results, tmp_path)
    rules = folder / "rules.py"
    rules.write_text(
        rules.read_text().replace("'weights_sha256': None", "'weights_sha256': '" + "ab" * 32 + "'")
    )
    code, answers, err = identify(capsys, shared_data / PHOTOS[0], "--results", folder)
    assert code == 2 and answers == []
    assert "same weights" in err


def test_vggface2_results_resolve_weights_like_the_job(results, shared_data, tmp_path, capsys, monkeypatch):
    folder = copy_results(results, tmp_path)
    rules = folder / "rules.py"
    # rendered as the job renders it: rules.py is compared byte for byte (no stale warning line)
    rules.write_text(
        render_rules({**load_rules(rules.read_bytes()), "weights": "vggface2", "not_for_production": False})
    )
    payload = load_embeddings(folder / "saved_embeddings.pkl")
    payload["metadata"]["hyperparameters"]["weights"] = "vggface2"
    buffer = io.BytesIO()
    dump_embeddings(payload["metadata"], payload["records"], buffer)
    (folder / "saved_embeddings.pkl").write_bytes(buffer.getvalue())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, answers, err = identify(
        capsys, shared_data / PHOTOS[0], "--results", folder, "--weights-dir", tmp_path
    )
    assert code == 2 and answers == []
    assert "20180402-114759-vggface2.pt was not found" in err
    assert str(tmp_path / "torch" / "checkpoints") in err and str(tmp_path) in err
    assert "NOT FOR PRODUCTION" not in err


def test_results_that_disagree_are_refused(results, shared_data, tmp_path, capsys):
    folder = copy_results(results, tmp_path)
    rules = folder / "rules.py"
    rules.write_text(rules.read_text().replace("'image_size': 160", "'image_size': 128"))
    code, _, err = identify(capsys, shared_data / PHOTOS[0], "--results", folder)
    assert code == 2
    assert "image_size=128" in err


def test_results_from_before_the_runtime_setting_are_identified_with_torch(
    sagemaker_tree_class, tmp_path, shared_data, module_job, capsys
):
    """Results made before issue 28 record no `runtime` (torch made them) and no ONNX file digests: identify
    embeds them with runtime=torch, as they were embedded; read as runtime=onnx, their model files would
    not match and identify would refuse them."""
    tree = sagemaker_tree_class(tmp_path / "opt_ml", {"weights": "none", "seed": SEED, "runtime": "torch"})
    tree.add_identities(shared_data / "faces-dev", limit=2)
    assert module_job(tree).rc == 0, tree.failure()
    payload = load_embeddings(tree.model / "saved_embeddings.pkl")
    del payload["metadata"]["hyperparameters"]["runtime"]
    buffer = io.BytesIO()
    dump_embeddings(payload["metadata"], payload["records"], buffer, payload.get("strangers", ()))
    (tree.model / "saved_embeddings.pkl").write_bytes(buffer.getvalue())

    code, [answer], err = identify(capsys, shared_data / PHOTOS[0], "--results", tree.model, "--top", "1")

    assert code == 0, err
    record = tree.records()[PHOTOS[0].removeprefix("faces-dev/")]
    [face] = [face for face in answer["faces"] if face["box"] == record["box"]]
    means = {name: values.astype(np.float64) for name, _, values in tree.enrollment()}
    candidate = face["candidates"][0]
    expected = float(np.linalg.norm(record["embedding"] - means[candidate["identity"]]))
    assert candidate["distance"] == pytest.approx(expected, abs=5e-6)
