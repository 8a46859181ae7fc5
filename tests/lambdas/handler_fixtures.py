"""Names the handler tests share (importable, unlike conftest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # conftest imports this module before it sets the Powertools environment
    from facetrain_lambdas.run_record import RunRecord

BUCKET = "facetrain-data-test"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/facetrain:test"
ROLE = "arn:aws:iam::123456789012:role/facetrain-sagemaker"


def run_record(**changes: object) -> RunRecord:
    """A run record of run r1 (execution r1) in BUCKET, with changes (those naming a RunRequest field go
    to its request)."""
    from facetrain.contract.hyperparameters import Hyperparameters
    from facetrain_lambdas.run_record import DatasetSummary, RunRecord
    from facetrain_lambdas.run_request import RunRequest

    request = {
        "run_id": "r1",
        "execution": "r1",
        "source": "console",
        "trigger_key": None,
        "bucket": BUCKET,
        "images_prefix": "face_imgs/",
        "config_prefix": "config/",
        "results_prefix": "results/",
        "hyperparameters": {"batch_size": 8},
        "instance_type": "ml.g4dn.xlarge",
        "instance_count": 1,
    }
    values: dict[str, object] = {
        "created_at": "2025-01-01T00:00:00+00:00",
        "settings": Hyperparameters(batch_size=8),
        "manifest_key": "results/runs/r1/manifest.json",
        "cfg_manifest_key": "results/runs/r1/cfg-manifest.json",
        "dataset": DatasetSummary(identities=1, images=1, bytes=1, skipped=0),
        "run_fingerprint": "f",
    }
    for name, value in changes.items():
        (request if name in RunRequest.model_fields else values)[name] = value
    return RunRecord.model_validate({**values, "request": RunRequest.model_validate(request)})


def latest_document(**changes: object) -> dict:
    """A latest.json document publishing run r1 (execution exec-1), with changes."""
    from facetrain_lambdas.published import LatestRecord
    from facetrain_lambdas.quality_gate import QualityGate, QualityGateDecision

    values = {
        "run_id": "r1",
        "previous_run_id": None,
        "execution": "exec-1",
        "published_at": "2026-12-03T10:00:00+00:00",
        "training_job_name": "facetrain-r1",
        "run_fingerprint": "abc",
        "identities": 2,
        "images_accepted": 9,
        "images_rejected": 1,
        "identification_accuracy": 0.9,
        "accept_threshold": 0.39,
        "quality_gate": QualityGateDecision(
            run_id="r1",
            gate=QualityGate(),
            identification_accuracy=0.9,
            published_identification_accuracy=None,
            passed=True,
            problems=[],
        ),
        "not_for_production": False,
        "run_files": {"saved_embeddings.pkl": "results/runs/r1/saved_embeddings.pkl"},
        "current_files": {"rules.py": "results/rules.py"},
    }
    return {**LatestRecord(**values).model_dump(mode="json"), **changes}
