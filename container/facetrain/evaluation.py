"""Leave-one-out evaluation of an enrollment (numpy only): `evaluate` gives metrics.json's evaluation and
the distances the report plots.

Each photo is compared with every enrolled identity's mean as the enrollment publishes it (the sum of the
unit embeddings, re-normalised), except its own identity's mean, which is recomputed without the photo
(leave one out) and re-normalised the same way (embedding_distances.py). Photos of identities with at
least two photos give a genuine distance (photo to its own leave-one-out mean) and an identification
outcome (is the nearest mean its own?): a mated search; every photo gives one impostor distance per other
identity, and its nearest one is a non-mated search (its own identity left out), as is each known
stranger's photo against every mean (open_set.py). The accept threshold is chosen on those searches
(threshold_calibration.choose_threshold) and FPIR/FNIR measured at it, beside the per-pair rates. A
photo nearer another identity's mean than its own, within the threshold (or the embedder's fallback, if
larger), is a suspected mislabel; the per-identity table and the closest pairs of identities come with
them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .contract.hyperparameters import DEFAULT_TARGET_FPIR
from .embedding_distances import (
    CHUNK_ELEMENTS,
    PhotoDistances,
    nearest_mean_distance,
    nearest_means,
    scan_photos,
)
from .open_set import SearchOutcomes, open_set_summary
from .threshold_calibration import (
    ROUND,
    ImpostorAccumulator,
    choose_threshold,
    distance_summary,
    impostor_summary,
    pair_rates,
)

MISLABELS_LISTED = 100


@dataclass(frozen=True)
class Evaluation:
    """What the evaluation found: `summary` goes to metrics.json, the arrays feed the report's plots."""

    summary: dict[str, object]
    genuine: np.ndarray  # genuine distances, one per evaluated photo
    impostor_counts: np.ndarray  # histogram of impostor distances, bins of BIN_WIDTH from 0
    # The 1:N searches (open_set.py): FPIR(t) = mean(concat(non_mated, stranger_non_mated) <= t),
    # FNIR(t) = 1 - mean(mated_hit & (mated <= t)).
    non_mated: np.ndarray  # per enrolled photo (when another identity exists): nearest other mean
    stranger_non_mated: np.ndarray  # per known stranger's photo: nearest mean (empty when none)
    mated: np.ndarray  # per mated search: distance to its own leave-one-out mean (= genuine)
    mated_hit: np.ndarray  # per mated search: its own identity is strictly the nearest mean

    @property
    def searches(self) -> SearchOutcomes:
        gallery_size = self.summary["open_set"]["gallery_size"]  # type: ignore[index]
        return SearchOutcomes(
            int(gallery_size),
            self.non_mated,
            self.stranger_non_mated,
            self.mated,
            self.mated_hit,
        )

    @property
    def threshold(self) -> float:
        return float(self.summary["threshold"])  # type: ignore[arg-type]


def _number(value: float) -> float | None:
    return round(float(value), ROUND) if np.isfinite(value) else None


def _per_identity(
    identities: Sequence[str],
    labels: np.ndarray,
    counts: np.ndarray,
    photos: PhotoDistances,
    correct: np.ndarray,
    flagged: np.ndarray,
    nearest: tuple[np.ndarray, np.ndarray],
    rejections: Mapping[str, Mapping[str, int]] | None,
) -> list[dict[str, object]]:
    """One row per enrolled identity, then one per identity with rejected photos only."""
    rejections = rejections or {}
    k = len(identities)
    evaluated = ~np.isnan(photos.own)
    right = np.bincount(labels, weights=correct, minlength=k)
    genuine_sum = np.bincount(labels[evaluated], weights=photos.own[evaluated], minlength=k)
    margin = np.full(k, np.inf)
    np.minimum.at(margin, labels[evaluated], (photos.nearest_other - photos.own)[evaluated])
    suspects = np.bincount(labels, weights=flagged, minlength=k)
    rows: list[dict[str, object]] = []
    for index, name in enumerate(identities):
        used = int(counts[index])
        rejected = dict(sorted(rejections.get(name, {}).items()))
        other = int(nearest[0][index])
        rows.append(
            {
                "identity": name,
                "enrolled": True,
                "photos_used": used,
                "photos_rejected": sum(rejected.values()),
                "rejections": rejected,
                "evaluated": used >= 2,
                "loo_accuracy": _number(right[index] / used) if used >= 2 else None,
                "mean_genuine_distance": _number(genuine_sum[index] / used) if used >= 2 else None,
                "nearest_identity": identities[other] if other >= 0 else None,
                "nearest_distance": _number(nearest[1][index]),
                "margin": _number(margin[index]),
                "suspected_mislabels": int(suspects[index]),
            }
        )
    for name in sorted(set(rejections) - set(identities)):
        rejected = dict(sorted(rejections[name].items()))
        rows.append(
            {
                "identity": name,
                "enrolled": False,
                "photos_used": 0,
                "photos_rejected": sum(rejected.values()),
                "rejections": rejected,
                "evaluated": False,
                "loo_accuracy": None,
                "mean_genuine_distance": None,
                "nearest_identity": None,
                "nearest_distance": None,
                "margin": None,
                "suspected_mislabels": 0,
            }
        )
    return rows


def evaluate(
    embeddings: np.ndarray,
    labels: np.ndarray,
    identities: Sequence[str],
    keys: Sequence[str],
    target_far: float,
    default_threshold: float,
    rejections: Mapping[str, Mapping[str, int]] | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
    *,
    target_fpir: float = DEFAULT_TARGET_FPIR,
    accept_threshold: float | None = None,
    strangers: np.ndarray | None = None,
) -> Evaluation:
    """Evaluate an enrollment: `embeddings` (N, D) unit rows, `labels` (N,) indexes into `identities`,
    `keys` the photos' names; `rejections` maps identity → reason → photos not used (for the table).

    The threshold: `accept_threshold` when the operator set one (published as given), else chosen at
    `target_fpir` on the searches, else (no non-mated search) `default_threshold`, the embedder's fallback.
    `strangers` (S, D): unit embeddings of known strangers' photos, extra non-mated searches.
    `target_far` is reported beside the per-pair false-accept rate; it does not set the threshold."""
    labels = np.asarray(labels, dtype=np.int64)
    strangers = np.empty((0, embeddings.shape[1])) if strangers is None else np.asarray(strangers)
    k = len(identities)
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros((k, embeddings.shape[1]))
    for start in range(0, len(labels), 65536):  # float64 sums without a float64 copy of everything
        np.add.at(sums, labels[start : start + 65536], embeddings[start : start + 65536].astype(np.float64))
    # Enough of the smallest impostor distances to count exactly those a calibrated threshold accepts:
    # it accepts at most `allowed` non-mated searches, so at most allowed x (k - 1) impostor pairs.
    allowed = math.floor(target_fpir * (len(labels) + len(strangers)) + 1e-9)
    known = accept_threshold if accept_threshold is not None else default_threshold
    impostors = ImpostorAccumulator.create(allowed * max(1, k - 1) + 1, known)
    photos = scan_photos(embeddings, labels, sums, counts, impostors.add, chunk_elements)
    evaluated = ~np.isnan(photos.own)
    genuine = photos.own[evaluated]
    means = sums / np.linalg.norm(sums, axis=1)[:, None]
    outcomes = SearchOutcomes(
        gallery_size=k,
        non_mated=photos.nearest_other[np.isfinite(photos.nearest_other)],
        stranger_non_mated=nearest_mean_distance(strangers, means, chunk_elements),
        mated=genuine,
        mated_hit=(photos.own < photos.nearest_other)[evaluated],
    )
    choice = choose_threshold(outcomes, target_fpir, accept_threshold, default_threshold)
    threshold = choice.threshold
    decision = {
        "threshold": threshold,
        "threshold_source": choice.source,
        "threshold_note": choice.note,
        **pair_rates(genuine, impostors, threshold, target_far),
    }
    correct = evaluated & (photos.own < photos.nearest_other)
    # Within the published threshold or the embedder's fallback, whichever is larger: a mislabelled photo is
    # itself a close non-mated search, so a threshold derived from the searches may lie below it.
    flag_within = max(threshold, default_threshold)
    flagged = evaluated & (photos.nearest_other < photos.own) & (photos.nearest_other <= flag_within)
    nearest, nearest_distance, closest = nearest_means(means, chunk_elements)
    suspects = np.flatnonzero(flagged)
    suspects = suspects[np.argsort((photos.nearest_other - photos.own)[suspects], kind="stable")]
    summary: dict[str, object] = {
        "method": "leave-one-out: each photo against every identity's re-normalised mean, its own "
        "recomputed without it; Euclidean distance between unit embeddings",
        "photos_evaluated": int(evaluated.sum()),
        "identities_evaluated": int(np.count_nonzero(counts >= 2)),
        "identification_accuracy": (
            round(float(correct.sum()) / int(evaluated.sum()), ROUND) if evaluated.any() else None
        ),
        **decision,
        "genuine": distance_summary(genuine),
        "impostor": impostor_summary(impostors),
        "per_identity": _per_identity(
            identities, labels, counts, photos, correct, flagged, (nearest, nearest_distance), rejections
        ),
        "closest_pairs": [
            {"identities": [identities[a], identities[b]], "distance": round(d, ROUND)} for d, a, b in closest
        ],
        "suspected_mislabels_total": int(suspects.size),
        "suspected_mislabels": [
            {
                "photo": keys[i],
                "identity": identities[labels[i]],
                "distance_to_own_mean": round(float(photos.own[i]), ROUND),
                "closest_identity": identities[photos.nearest_other_index[i]],
                "distance_to_closest": round(float(photos.nearest_other[i]), ROUND),
            }
            for i in suspects[:MISLABELS_LISTED]
        ],
        "open_set": open_set_summary(outcomes, threshold, target_fpir),
    }
    return Evaluation(
        summary=summary,
        genuine=genuine,
        impostor_counts=impostors.counts,
        non_mated=outcomes.non_mated,
        stranger_non_mated=outcomes.stranger_non_mated,
        mated=outcomes.mated,
        mated_hit=outcomes.mated_hit,
    )
