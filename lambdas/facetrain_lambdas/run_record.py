"""The run record (runs/<run id>/run.json) validate writes and start, publish and stop read, the problems
(problems.json) it writes instead when it refuses a run, and the pointer passed between states.

One model for the writer and every reader. The record holds the resolved request as validate accepted it
(`RunRequest`), the typed settings the job will resolve to (`Hyperparameters`) and what validate found; the
hyperparameters passed to CreateTrainingJob are derived from the request, never stored twice. A record of
version 2 (before issue 27: the run fingerprint was `dataset.fingerprint`) is read as version 3, its one
field moved (`upgraded_run_record`); one of another format or version (an older facetrain wrote version 1,
with the request's fields at the top) is refused with a message naming the object and what to do; it is
never read by guessing.
"""

from __future__ import annotations

from typing import Any, Literal

from facetrain.contract.documents import DocumentError, parse_document
from facetrain.contract.hyperparameters import Hyperparameters, to_sagemaker_strings
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from .errors import InvalidInput
from .layout import RunLayout, s3_uri
from .quality_gate import QualityGate
from .run_request import RunRequest
from .s3_json import read_json, read_json_if_present

FORMAT = "facetrain.run"
VERSION = 3
REMEDY = (
    "run.json is written by validate of this stack; start a new execution (a new run id) so that "
    "validate writes it again"
)


class DatasetSummary(BaseModel):
    """What validate saw under the images prefix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identities: int
    images: int  # photos in identity folders (the enrollment's)
    bytes: int  # of every photo in the manifest, known strangers' included
    skipped: int  # objects left out without refusing the run (see RunRecord.warnings)
    # Known strangers' photos (<images prefix>_strangers/): in the manifest, never an identity. 0 in run.json
    # written before known strangers.
    strangers: int = 0


class RunRecord(BaseModel):
    """Everything a run was validated with: the single input of start and publish."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["facetrain.run"] = FORMAT
    version: Literal[3] = VERSION
    request: RunRequest  # the execution input over the stack's defaults, as validate accepted it
    created_at: str  # ISO 8601, UTC
    settings: Hyperparameters  # resolved: config files + hyperparameters, with defaults
    manifest_key: str
    cfg_manifest_key: str | None
    previous_manifest_key: str | None = None  # per-photo embeddings of the published run, to reuse
    previous_run_id: str | None = None
    dataset: DatasetSummary
    # Of the photos, the config files and the resolved settings (dataset.run_fingerprint()): equal to the
    # published run's, nothing would change. Not metrics.json's dataset_fingerprint (the photos alone).
    run_fingerprint: str
    warnings: list[str] = Field(default_factory=list)  # what validation left out of the run, and why
    no_change: bool = False  # same fingerprint as the published run, and not forced: nothing to train

    @property
    def layout(self) -> RunLayout:
        return RunLayout(
            bucket=self.request.bucket, results_prefix=self.request.results_prefix, run_id=self.request.run_id
        )

    @property
    def quality_gate(self) -> QualityGate:
        """The gate the run must pass to be published (every bound unset when none was asked for)."""
        return self.request.quality_gate or QualityGate()

    def sagemaker_hyperparameters(self) -> dict[str, str]:
        """The request's hyperparameters as passed to CreateTrainingJob (string values)."""
        return to_sagemaker_strings(self.request.hyperparameters)


class ValidationProblems(BaseModel):
    """runs/<run id>/problems.json: why validate refused the run (every problem), and what it would have
    left out. Written instead of run.json; nothing reads it back but operators."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["facetrain.problems"] = "facetrain.problems"
    version: Literal[1] = 1
    run_id: str
    problems: list[str]
    warnings: list[str]


class RunPointer(BaseModel):
    """The small piece of state the ASL carries from validate to the later states."""

    run_id: str
    bucket: str
    run_record_key: str
    manifest_key: str
    # dataset_fingerprint: its name in the pointers of executions started before issue 27
    run_fingerprint: str = Field(validation_alias=AliasChoices("run_fingerprint", "dataset_fingerprint"))
    identities: int
    images: int
    strangers: int = 0  # known strangers' photos in the manifest (DatasetSummary.strangers)
    no_change: bool = False


def upgraded_run_record(data: object) -> object:
    """A run.json of version 2 as version 3 (its `dataset.fingerprint` is `run_fingerprint`): executions
    validated before an update, and the run history, read it as written then. Anything else unchanged."""
    if not isinstance(data, dict) or (data.get("format"), data.get("version")) != (FORMAT, 2):
        return data
    dataset = data.get("dataset")
    if not isinstance(dataset, dict) or "fingerprint" not in dataset:
        return data  # not a version 2 record after all: parse_document says what does not fit
    dataset = dict(dataset)
    return {**data, "version": VERSION, "dataset": dataset, "run_fingerprint": dataset.pop("fingerprint")}


def parse_run_record(data: object, where: str) -> RunRecord:
    """A run.json document (version 3, or 2: upgraded_run_record), or DocumentError naming `where`, what
    does not fit and what to do."""
    return parse_document(
        RunRecord, upgraded_run_record(data), where, format=FORMAT, version=VERSION, remedy=REMEDY
    )


def read_run_record_if_present(s3: Any, layout: RunLayout) -> RunRecord | None:
    """The run record of `layout`'s run, or None when validate never wrote one; DocumentError (ValueError)
    when the object is not JSON or not a run record of this version."""
    where = s3_uri(layout.bucket, layout.run_record_key)
    try:
        data = read_json_if_present(s3, layout.bucket, layout.run_record_key)
    except ValueError:
        raise DocumentError(f"{where} is not JSON: {REMEDY}") from None
    return None if data is None else parse_run_record(data, where)


def load_run_record(s3: Any, pointer: RunPointer) -> RunRecord:
    """Read the run record a pointer refers to; InvalidInput when it cannot be read as one."""
    where = s3_uri(pointer.bucket, pointer.run_record_key)
    try:
        return parse_run_record(read_json(s3, pointer.bucket, pointer.run_record_key), where)
    except DocumentError as exc:
        raise InvalidInput([str(exc)]) from None
    except ValueError:  # the body is not JSON
        raise InvalidInput([f"{where} is not JSON: {REMEDY}"]) from None
