"""metrics.json: what the job measured. One model for its writer (the job, which validates the document
before it writes it) and its readers (publish's artifact check, the quality gate, the notification).

`parse_metrics` refuses another format or version, and names the fields that do not fit.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .documents import DocumentError, parse_document

FORMAT = "facetrain.metrics"
VERSION = 1


class MetricsError(DocumentError):
    """metrics.json cannot be read: the message says what is wrong."""


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DistanceSummary(_Document):
    """A distribution of distances (None everywhere when there are none)."""

    count: int
    min: float | None
    p50: float | None
    p95: float | None
    max: float | None
    mean: float | None


class IdentityEvaluation(_Document):
    """One identity's row of the evaluation."""

    identity: str
    enrolled: bool
    photos_used: int
    photos_rejected: int
    rejections: dict[str, int]
    evaluated: bool
    loo_accuracy: float | None
    mean_genuine_distance: float | None
    nearest_identity: str | None
    nearest_distance: float | None
    margin: float | None
    suspected_mislabels: int


class ClosestPair(_Document):
    identities: list[str]
    distance: float


class SuspectedMislabel(_Document):
    photo: str
    identity: str
    distance_to_own_mean: float
    closest_identity: str
    distance_to_closest: float


class EvaluationSummary(_Document):
    """The leave-one-out evaluation and the accept threshold it gives (facetrain.evaluation)."""

    method: str
    photos_evaluated: int
    identities_evaluated: int
    identification_accuracy: float | None
    threshold: float
    threshold_source: Literal["calibrated", "default"]
    threshold_note: str
    target_far: float
    false_accept_rate: float | None
    false_reject_rate: float | None
    false_accepts: int | None
    false_rejects: int | None
    genuine: DistanceSummary
    impostor: DistanceSummary
    per_identity: list[IdentityEvaluation]
    closest_pairs: list[ClosestPair]
    suspected_mislabels_total: int
    suspected_mislabels: list[SuspectedMislabel]


class MetricsDocument(_Document):
    """metrics.json. `evaluation` is absent when no identity could be enrolled (status failed)."""

    format: Literal["facetrain.metrics"] = FORMAT
    version: Literal[1] = VERSION
    status: Literal["succeeded", "failed"]
    not_for_production: bool
    warning: str | None
    images_total: int
    images_accepted: int
    images_rejected: int
    rejections_by_reason: dict[str, int]
    identities: int
    identities_excluded: dict[str, str]  # identity -> why it is not enrolled
    embedder: str
    weights: str
    weights_sha256: str | None
    model_files: dict[str, str]
    embedding_dim: int
    device: str
    torch_threads: int
    images_per_second: float | None
    embeddings_computed: int
    embeddings_reused: int
    hosts: int
    dataset_fingerprint: str
    hyperparameters: dict[str, Any]  # the resolved settings (facetrain.contract.hyperparameters)
    created_at: str
    versions: dict[str, str]  # distribution -> version, of the libraries that made the embeddings
    evaluation: EvaluationSummary | None = None
    timings: dict[str, float]


def parse_metrics(data: object) -> MetricsDocument:
    """A metrics.json document (already decoded from JSON), or MetricsError saying what does not fit."""
    return parse_document(
        MetricsDocument,
        data,
        "metrics.json",
        format=FORMAT,
        version=VERSION,
        remedy="it was written by another version of the training image; rebuild and redeploy it together "
        "with this stack",
        error=MetricsError,
    )


def read_metrics(text: str) -> MetricsDocument:
    """parse_metrics of a metrics.json file's text."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise MetricsError(f"metrics.json is not JSON ({exc})") from None
    return parse_metrics(data)
