"""The job's evaluation on faces-dev (weights=none): metrics.json["evaluation"], rules.py's threshold, report.

target_fpir=0.05 makes the 24 non-mated searches (each photo against the 3 other identities) enough to
calibrate: 1 of them may be accepted. target_far=0.05 is only reported beside the per-pair rates.
"""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from facetrain.evaluation import evaluate

SUMMARY_KEYS = {"count", "min", "p50", "p95", "max", "mean"}
ROW_KEYS = {
    "identity",
    "enrolled",
    "photos_used",
    "photos_rejected",
    "rejections",
    "evaluated",
    "loo_accuracy",
    "mean_genuine_distance",
    "nearest_identity",
    "nearest_distance",
    "margin",
    "suspected_mislabels",
}


@pytest.fixture(scope="module")
def calibrated_run(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    tree = sagemaker_tree_class(
        tmp_path_factory.mktemp("evaluation") / "opt_ml",
        {"weights": "none", "target_far": "0.05", "target_fpir": "0.05"},
    )
    tree.add_identities(shared_data / "faces-dev")
    tree.add_photo("person_02", "notes.jpg", b"not a photo at all")
    tree.add_photo("nobody", "readme.jpg", b"still not a photo")
    result = module_job(tree)
    assert result.rc == 0, tree.failure()
    return tree


def test_evaluation_in_metrics(calibrated_run):
    evaluation = calibrated_run.metrics()["evaluation"]
    assert 0.0 <= evaluation["identification_accuracy"] <= 1.0
    assert evaluation["photos_evaluated"] == 24 and evaluation["identities_evaluated"] == 4
    assert evaluation["threshold_source"] == "calibrated"
    assert evaluation["target_far"] == 0.05
    assert evaluation["open_set"]["fpir"]["errors"] <= 1 and evaluation["open_set"]["fpir"]["trials"] == 24
    assert evaluation["false_accepts"] <= 3  # the 1 accepted search's photo against its 3 other means
    assert evaluation["false_accept_rate"] == pytest.approx(evaluation["false_accepts"] / 72, abs=1e-6)
    assert evaluation["false_accept_rate"] <= 0.05
    assert 0.0 <= evaluation["false_reject_rate"] <= 1.0
    assert set(evaluation["genuine"]) == set(evaluation["impostor"]) == SUMMARY_KEYS
    assert (evaluation["genuine"]["count"], evaluation["impostor"]["count"]) == (24, 72)
    assert evaluation["suspected_mislabels_total"] == len(evaluation["suspected_mislabels"])


def test_per_identity_table_reports_rejections(calibrated_run):
    rows = {row["identity"]: row for row in calibrated_run.metrics()["evaluation"]["per_identity"]}
    assert set(rows) == {"person_02", "person_04", "person_05", "person_10", "nobody"}
    assert all(set(row) == ROW_KEYS for row in rows.values())
    assert rows["person_02"]["photos_used"] == 6
    assert rows["person_02"]["rejections"] == {"not_an_image": 1}
    assert rows["person_10"]["photos_used"] == 8 and rows["person_10"]["photos_rejected"] == 0
    assert rows["nobody"]["enrolled"] is False and rows["nobody"]["photos_used"] == 0
    assert rows["nobody"]["rejections"] == {"not_an_image": 1}
    assert rows["person_04"]["nearest_identity"] in {"person_02", "person_05", "person_10"}


def test_rules_carry_exactly_the_calibrated_threshold(calibrated_run):
    evaluation = calibrated_run.metrics()["evaluation"]
    rules = calibrated_run.rules()
    assert rules["accept_threshold"] == evaluation["threshold"]
    assert repr(rules["accept_threshold"]) == repr(evaluation["threshold"])
    assert rules["accept_threshold"] != 1.1
    assert rules["threshold_source"] == "calibrated" and rules["target_far"] == 0.05
    # behaviour changed (issue 24): left out, accept_threshold is None ("calibrate"), no longer 1.1
    assert calibrated_run.metrics()["hyperparameters"]["accept_threshold"] is None


def test_evaluation_is_that_of_the_published_embeddings(calibrated_run):
    records = calibrated_run.embeddings()["records"]
    names = [name for name, _, _ in calibrated_run.enrollment()]
    labels = np.array([names.index(record["identity"]) for record in records])
    embeddings = np.stack([record["embedding"] for record in records])
    rejections = {"person_02": {"not_an_image": 1}, "nobody": {"not_an_image": 1}}
    keys = [r["key"] for r in records]
    again = evaluate(embeddings, labels, names, keys, 0.05, 0.96, rejections, target_fpir=0.05)
    assert again.summary == calibrated_run.metrics()["evaluation"]


def test_report_is_published_with_its_pictures(calibrated_run):
    text = (calibrated_run.model / "report.html").read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>")
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 3  # distance histograms, DET curve, projection
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "NOT FOR PRODUCTION" in text
    assert "person_02/notes.jpg" in text and "not_an_image" in text
    threshold = calibrated_run.rules()["accept_threshold"]
    assert f"{threshold:.4f}" in text and "calibrated" in text
