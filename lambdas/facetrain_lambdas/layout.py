"""Where a run's files live in the data bucket.

<results_prefix>runs/<run_id>/run.json            run record written by validate
<results_prefix>runs/<run_id>/manifest.json       SageMaker manifest of the validated photos
<results_prefix>runs/<run_id>/cfg-manifest.json   SageMaker manifest of the validated config files
<results_prefix>runs/<run_id>/previous-manifest.json  the published run's saved_embeddings.pkl (reuse)
<results_prefix>runs/<run_id>/problems.json       every problem, when validation failed
<results_prefix>runs/<run_id>/training/           SageMaker output (<job>/output/model.tar.gz)
<results_prefix>runs/<run_id>/checkpoints/        Spot checkpoints
<results_prefix>runs/<run_id>/<result file>       the run's verified results
<results_prefix><current file>, latest.json       the current results, updated by publish
"""

from __future__ import annotations

from dataclasses import dataclass

from facetrain.contract.latest_pointer import LATEST_JSON
from facetrain.contract.names import EMBEDDINGS_PKL, ENROLLMENT_CSV, RULES_PY

# The documents of a run's folder runs/<run id>/, by who writes them: validate (run.json, or problems.json
# when it refuses the run), publish (quality_gate.json once it checked the archive, published.json once the
# run became current). Their names are here once, for their writers and every reader (the offline runner's
# copy and history, the erasure scrubber, the retention sweep).
RUN_JSON = "run.json"
PROBLEMS_JSON = "problems.json"
QUALITY_GATE_JSON = "quality_gate.json"
PUBLISHED_JSON = "published.json"

# The files the original job published at the results prefix root.
CURRENT_FILES = (ENROLLMENT_CSV, RULES_PY, EMBEDDINGS_PKL)


def s3_uri(bucket: str, key: str) -> str:
    """s3://bucket/key"""
    return f"s3://{bucket}/{key}"


@dataclass(frozen=True)
class RunLayout:
    """Keys of one run's files."""

    bucket: str
    results_prefix: str
    run_id: str

    @property
    def run_prefix(self) -> str:
        return f"{self.results_prefix}runs/{self.run_id}/"

    @property
    def run_record_key(self) -> str:
        return f"{self.run_prefix}{RUN_JSON}"

    @property
    def manifest_key(self) -> str:
        return f"{self.run_prefix}manifest.json"

    @property
    def cfg_manifest_key(self) -> str:
        return f"{self.run_prefix}cfg-manifest.json"

    @property
    def previous_manifest_key(self) -> str:
        return f"{self.run_prefix}previous-manifest.json"

    @property
    def problems_key(self) -> str:
        return f"{self.run_prefix}{PROBLEMS_JSON}"

    @property
    def training_output_uri(self) -> str:
        return s3_uri(self.bucket, f"{self.run_prefix}training/")

    @property
    def checkpoint_uri(self) -> str:
        return s3_uri(self.bucket, f"{self.run_prefix}checkpoints/")

    def run_file_key(self, name: str) -> str:
        return f"{self.run_prefix}{name}"

    def current_file_key(self, name: str) -> str:
        return f"{self.results_prefix}{name}"

    @property
    def latest_key(self) -> str:
        return f"{self.results_prefix}{LATEST_JSON}"
