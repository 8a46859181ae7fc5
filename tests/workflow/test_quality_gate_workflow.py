"""The quality gate in the moto-executed workflow: a run below it fails by name and publishes nothing."""

from __future__ import annotations

import json

from facetrain_lambdas.quality_gate import QualityGateDecision
from support.testkit import FakeSageMaker, upload_photos
from support.workflow import WorkflowStack

PHOTOS = {"alice": 3, "bob": 2, "carol": 2}
CURRENT = ("final_mean_embeddings.csv", "rules.py", "saved_embeddings.pkl", "latest.json", "report.html")


def test_a_run_below_the_gate_fails_by_name_and_changes_nothing_published(
    stack: WorkflowStack, fake_sagemaker: FakeSageMaker
) -> None:
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    fake_sagemaker.identification_accuracy = 0.97
    first = stack.run({"run_id": "good"}, name="exec-good")
    assert first["status"] == "SUCCEEDED", first.get("cause")
    published = {name: stack.read(f"results/{name}") for name in CURRENT}
    stack.notifications()

    upload_photos(stack.s3, stack.bucket, {"dave": 2})
    fake_sagemaker.identification_accuracy = 0.62
    gate = {"min_identification_accuracy": 0.9}
    refused = stack.run({"run_id": "weak", "quality_gate": gate}, name="exec-weak")

    assert refused["status"] == "FAILED"
    assert refused["error"] == "QualityGateFailed"
    assert "0.6200 is below min_identification_accuracy 0.9000" in refused["cause"]
    for name, body in published.items():
        assert stack.read(f"results/{name}") == body, name
    # The refused run's files, its report included, stay for inspection, with the decision.
    assert stack.read("results/runs/weak/report.html").startswith(b"<!doctype html>")
    decision = QualityGateDecision.model_validate_json(stack.read("results/runs/weak/quality_gate.json"))
    assert decision.passed is False and decision.identification_accuracy == 0.62
    assert decision.run_id == "weak" and decision.gate.min_identification_accuracy == 0.9
    assert decision.published_identification_accuracy == 0.97 and len(decision.problems) == 1
    (notification,) = stack.notifications()
    assert notification["Subject"] == "facetrain retraining failed"
    assert (
        "QualityGateFailed" in notification["Message"]
        and "below min_identification_accuracy" in notification["Message"]
    )


def test_a_drop_against_the_published_run_is_refused(
    stack: WorkflowStack, fake_sagemaker: FakeSageMaker
) -> None:
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    fake_sagemaker.identification_accuracy = 0.98
    assert stack.run({"run_id": "first"}, name="exec-first")["status"] == "SUCCEEDED"
    upload_photos(stack.s3, stack.bucket, {"erin": 2})
    fake_sagemaker.identification_accuracy = 0.90

    refused = stack.run({"run_id": "second", "quality_gate": {"max_accuracy_drop": 0.05}}, name="exec-second")

    assert refused["error"] == "QualityGateFailed"
    assert "dropped 0.0800 from the published 0.9800" in refused["cause"]
    assert json.loads(stack.read("results/latest.json"))["run_id"] == "first"


def test_a_run_through_the_gate_records_its_figures(
    stack: WorkflowStack, fake_sagemaker: FakeSageMaker
) -> None:
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    fake_sagemaker.identification_accuracy = 0.93

    result = stack.run({"run_id": "ok", "quality_gate": {"min_identification_accuracy": 0.9}}, name="exec-ok")

    assert result["status"] == "SUCCEEDED", result.get("cause")
    latest = json.loads(stack.read("results/latest.json"))
    assert latest["identification_accuracy"] == 0.93 and latest["quality_gate"]["passed"] is True
    assert json.loads(stack.read("results/runs/ok/published.json")) == latest
    assert stack.read("results/report.html") == stack.read("results/runs/ok/report.html")


def test_an_unknown_gate_field_is_refused_by_name(stack: WorkflowStack) -> None:
    upload_photos(stack.s3, stack.bucket, PHOTOS)

    result = stack.run({"quality_gate": {"min_accuracy": 0.9}}, name="exec-typo")

    assert result["error"] == "InvalidInput" and "quality_gate.min_accuracy" in result["cause"]


def test_max_fpir_refuses_a_metrics_document_without_open_set(
    stack: WorkflowStack, fake_sagemaker: FakeSageMaker
) -> None:
    """The fake job writes metrics.json as a training image older than max_fpir does: no open_set."""
    upload_photos(stack.s3, stack.bucket, PHOTOS)

    refused = stack.run({"run_id": "old-image", "quality_gate": {"max_fpir": 0.05}}, name="exec-old-image")

    assert refused["error"] == "QualityGateFailed"
    assert "no open-set evaluation" in refused["cause"] and "rebuild and redeploy" in refused["cause"]
    decision = QualityGateDecision.model_validate_json(stack.read("results/runs/old-image/quality_gate.json"))
    assert decision.passed is False and decision.gate.max_fpir == 0.05 and decision.fpir_upper_95 is None
    keys = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix="results/").get("Contents", [])
    assert not [item["Key"] for item in keys if not item["Key"].startswith("results/runs/")]
