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
        "dataset": DatasetSummary(fingerprint="f", identities=1, images=1, bytes=1, skipped=0),
    }
    for name, value in changes.items():
        (request if name in RunRequest.model_fields else values)[name] = value
    return RunRecord.model_validate({**values, "request": RunRequest.model_validate(request)})
