"""latest.json: what is published now (also kept per run as runs/<run id>/published.json).

One model for its writer and its readers: publish writes it last, after the current files; validate reads
it (the published fingerprint and per-photo embeddings), publish reads the one it replaces (the quality
gate's comparison) and the offline runner reads it (which files to copy out). A latest.json of version 1
(before issue 27: `dataset_fingerprint` for the run fingerprint) is read as version 2
(`upgraded_latest`): a stack updated over published results keeps them.
"""

from __future__ import annotations

from typing import Any, Literal

from facetrain.contract.documents import DocumentError, parse_document
from facetrain.contract.latest_pointer import LATEST_FORMAT, LATEST_VERSION
from pydantic import BaseModel, ConfigDict

from .errors import InvalidInput
from .layout import RunLayout, s3_uri
from .observability import logger
from .quality_gate import QualityGateDecision
from .s3_json import read_json_if_present

FORMAT = LATEST_FORMAT
VERSION = LATEST_VERSION


class LatestRecord(BaseModel):
    """The published run: its figures and where its files are (keys in the data bucket)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["facetrain.latest"] = FORMAT  # the contract's LATEST_FORMAT (a Literal takes no name)
    version: Literal[2] = VERSION
    run_id: str
    previous_run_id: str | None
    execution: str
    published_at: str  # ISO 8601, UTC
    training_job_name: str
    # Of the photos, the config files and the resolved settings (run.json's run_fingerprint); not
    # metrics.json's dataset_fingerprint (the photos alone).
    run_fingerprint: str
    identities: int
    images_accepted: int
    images_rejected: int
    identification_accuracy: float | None
    accept_threshold: float | None
    quality_gate: QualityGateDecision  # the published run's, as in its runs/<run id>/quality_gate.json
    not_for_production: bool
    run_files: dict[str, str]  # file name -> key under runs/<run id>/
    current_files: dict[str, str]  # file name -> key at the results prefix


def upgraded_latest(data: object) -> object:
    """A latest.json of version 1 as version 2 (its `dataset_fingerprint` is `run_fingerprint`); anything
    else unchanged."""
    if not isinstance(data, dict) or (data.get("format"), data.get("version")) != (FORMAT, 1):
        return data
    if "dataset_fingerprint" not in data:
        return data  # not a version 1 record after all: parse_document says what does not fit
    upgraded = {**data, "version": VERSION, "run_fingerprint": data["dataset_fingerprint"]}
    del upgraded["dataset_fingerprint"]
    return upgraded


def parse_latest(data: object, where: str) -> LatestRecord:
    """A latest.json document, or InvalidInput naming what is wrong and what to do: another format or
    version (written by something else, or a newer facetrain) is refused, never overwritten blindly."""
    try:
        return parse_document(
            LatestRecord,
            upgraded_latest(data),
            where,
            format=FORMAT,
            version=VERSION,
            remedy="this stack cannot tell what is published; move it aside (the files it names stay where "
            "they are) and run again",
        )
    except DocumentError as exc:
        raise InvalidInput([str(exc)]) from None


def read_published(s3: Any, layout: RunLayout) -> LatestRecord | None:
    """The currently published run, or None when nothing is published.

    A latest.json that is not JSON counts as nothing published (retraining then replaces it); one of
    another format is refused (parse_latest); any other S3 error (access, throttling) is raised, never
    mistaken for "nothing published".
    """
    try:
        data = read_json_if_present(s3, layout.bucket, layout.latest_key)
    except ValueError:
        logger.warning("latest.json is not JSON: taken as no published run", extra={"key": layout.latest_key})
        return None
    if data is None:
        return None
    return parse_latest(data, s3_uri(layout.bucket, layout.latest_key))
