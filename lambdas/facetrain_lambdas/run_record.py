"""The run record (run.json) validate writes and start/publish read, and the pointer passed between states."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .layout import RunLayout
from .quality_gate import QualityGate
from .s3_json import read_json

FORMAT = "facetrain.run"
VERSION = 1


class DatasetSummary(BaseModel):
    """What validate saw under the images prefix."""

    fingerprint: str  # of the photos, the config files and the resolved settings (see run_fingerprint)
    identities: int
    images: int
    bytes: int
    skipped: int  # objects left out without refusing the run (see RunRecord.warnings)


class RunRecord(BaseModel):
    """Everything a run was validated with: the single input of start and publish."""

    model_config = ConfigDict(frozen=True)

    format: str = FORMAT
    version: int = VERSION
    run_id: str
    execution: str
    source: str
    trigger_key: str | None
    created_at: str
    bucket: str
    images_prefix: str
    config_prefix: str
    results_prefix: str
    hyperparameters: dict[str, str]  # as passed to CreateTrainingJob
    settings: dict[str, Any]  # resolved: config files + hyperparameters, with defaults
    instance_type: str
    instance_count: int
    manifest_key: str
    cfg_manifest_key: str | None
    previous_manifest_key: str | None = None  # per-photo embeddings of the published run, to reuse
    previous_run_id: str | None = None
    dataset: DatasetSummary
    warnings: list[str] = Field(default_factory=list)  # what validation left out of the run, and why
    no_change: bool = False  # same fingerprint as the published run, and not forced: nothing to train
    quality_gate: QualityGate | None = None

    @property
    def layout(self) -> RunLayout:
        return RunLayout(bucket=self.bucket, results_prefix=self.results_prefix, run_id=self.run_id)


class RunPointer(BaseModel):
    """The small piece of state the ASL carries from validate to the later states."""

    run_id: str
    bucket: str
    run_record_key: str
    manifest_key: str
    dataset_fingerprint: str
    identities: int
    images: int
    no_change: bool = False


def load_run_record(s3: Any, pointer: RunPointer) -> RunRecord:
    """Read the run record a pointer refers to."""
    return RunRecord.model_validate(read_json(s3, pointer.bucket, pointer.run_record_key))
