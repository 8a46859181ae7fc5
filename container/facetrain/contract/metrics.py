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


class ErrorRate(_Document):
    """A rate measured on `trials` searches (or pairs), `errors` of them wrong, with its exact two-sided 95 %
    confidence interval (Clopper-Pearson): with few trials, `upper_95` is what the data can vouch for."""

    errors: int
    trials: int
    rate: float | None  # errors / trials; None without trials
    lower_95: float | None
    upper_95: float | None


class OpenSetEvaluation(_Document):
    """1:N search at the published threshold, in NIST FRVT's terms. A search compares one probe photo with
    every enrolled identity's mean and returns the nearest within the threshold (facetrain.contract.decision).

    Non-mated searches: each enrolled photo against every OTHER identity (its own left out), plus each known
    stranger's photo against every identity; a non-mated search that returns anyone is a false positive
    (FPIR). Mated searches: each photo of an identity with at least two photos, its own mean recomputed
    without it (leave one out); one that does not return its own identity is a false negative (FNIR)."""

    gallery_size: int  # enrolled identities a search compares with
    target_fpir: float
    fpir: ErrorRate  # all non-mated searches (enrolled photos with their identity left out, and strangers)
    fnir: ErrorRate  # mated searches
    known_strangers: ErrorRate | None  # the known strangers' searches alone; None when there were none
    # The smallest FPIR these non-mated searches can show: the 95 % upper bound of zero false positives among
    # n searches, two-sided as every upper_95 (1 - 0.025 ** (1 / n)); a target below it cannot be shown.
    smallest_supported_fpir: float | None
    nearest_non_mated_distance: float | None  # the closest any non-mated search came to a false positive


class EvaluationSummary(_Document):
    """The leave-one-out evaluation and the accept threshold it gives (facetrain.evaluation)."""

    method: str
    photos_evaluated: int
    identities_evaluated: int
    identification_accuracy: float | None
    threshold: float
    # calibrated: set for target_fpir on enough non-mated searches; data-bound: too few searches to show
    # target_fpir, set below the nearest non-mated distance (threshold_note gives the margin); configured: the
    # operator's accept_threshold, published as given; default: no non-mated search at all (one identity).
    threshold_source: Literal["calibrated", "data-bound", "configured", "default"]
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
    # Absent only in metrics.json written before open-set evaluation (the images of issue 23 and older).
    open_set: OpenSetEvaluation | None = None


class StrangerPhotos(_Document):
    """The known strangers' photos (face_imgs/_strangers/): never enrolled, counted apart from images_*.
    `used` are the non-mated searches they add to the evaluation (evaluation.open_set.known_strangers);
    the `rejected` ones are in rejected.csv (identity empty, photo `_strangers/…`)."""

    photos: int  # = used + rejected
    used: int
    rejected: int
    rejections_by_reason: dict[str, int]


class MetricsDocument(_Document):
    """metrics.json. `evaluation` is absent when no identity could be enrolled (status failed).

    images_total = images_accepted + images_rejected: the enrollment's files (identity folders and stray
    top-level files); the known strangers are counted in `strangers`. embeddings_computed,
    embeddings_reused, photos_examined and images_per_second count the strangers' photos too.
    photos_examined: the photos this run decoded and searched for a face (embedded or rejected), neither
    reused from the previous run nor resumed from a checkpoint; images_per_second is photos_examined per
    second of the slowest host's photo loop, None when no photo was examined. files_skipped: the files known
    not to be photos (Thumbs.db, text, videos: contract.photo_files) in a person's or the strangers' folder,
    counted in no images_* and no rejections_by_reason; rejected.csv lists each (reason `not_a_photo`), so
    it holds images_rejected + files_skipped + strangers.rejected rows. run_id: the run's id as start
    passed it (None: a job started without it)."""

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
    images_per_second: float | None  # photos_examined / the slowest host's loop; None: none examined
    embeddings_computed: int
    embeddings_reused: int
    hosts: int
    dataset_fingerprint: str
    hyperparameters: dict[str, Any]  # the resolved settings (facetrain.contract.hyperparameters)
    created_at: str
    versions: dict[str, str]  # distribution -> version, of the libraries that made the embeddings
    # Absent only in metrics.json written before known strangers (the images of issue 23 and older).
    strangers: StrangerPhotos | None = None
    # Absent only in metrics.json written before issue 25 (their images_per_second counted reused photos).
    photos_examined: int | None = None
    # Absent in metrics.json written before issue 27 (which counted such files among the rejected photos).
    files_skipped: int = 0
    run_id: str | None = None  # absent before issue 27, None in a job started without it
    # What ran the networks (the `runtime` setting) and its intra-op threads: absent before issue 28, whose
    # jobs all ran torch and wrote torch_threads.
    runtime: str | None = None
    inference_threads: int | None = None
    torch_threads: int | None = None
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
