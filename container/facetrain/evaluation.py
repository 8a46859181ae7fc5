"""Leave-one-out evaluation of an enrollment (numpy only): `evaluate` gives metrics.json's evaluation and
the distances the report plots.

Each photo is compared with every enrolled identity's mean as the enrollment publishes it (the sum of the
unit embeddings, re-normalised), except its own identity's mean, which is recomputed without the photo
(leave one out) and re-normalised the same way (embedding_distances.py). Photos of identities with at
least two photos give a genuine distance (photo to its own leave-one-out mean) and an identification
outcome (is the nearest mean its own?); every photo gives one impostor distance per other identity. The
accept threshold is calibrated on those distances, or the configured default used and the outputs say why
(threshold_calibration.py). A photo nearer another identity's mean than its own, within the threshold, is
a suspected mislabel; the per-identity table and the closest pairs of identities come with them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .embedding_distances import CHUNK_ELEMENTS, PhotoDistances, nearest_means, scan_photos
from .threshold_calibration import ROUND, ImpostorAccumulator, calibrate, distance_summary, impostor_summary

MISLABELS_LISTED = 100


@dataclass(frozen=True)
class Evaluation:
    """What the evaluation found: `summary` goes to metrics.json, the arrays feed the report's plots."""

    summary: dict[str, object]
    genuine: np.ndarray  # genuine distances, one per evaluated photo
    impostor_counts: np.ndarray  # histogram of impostor distances, bins of BIN_WIDTH from 0

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
) -> Evaluation:
    """Evaluate an enrollment: `embeddings` (N, D) unit rows, `labels` (N,) indexes into `identities`,
    `keys` the photos' names; `rejections` maps identity → reason → photos not used (for the table)."""
    labels = np.asarray(labels, dtype=np.int64)
    k = len(identities)
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros((k, embeddings.shape[1]))
    for start in range(0, len(labels), 65536):  # float64 sums without a float64 copy of everything
        np.add.at(sums, labels[start : start + 65536], embeddings[start : start + 65536].astype(np.float64))
    keep = math.floor(target_far * len(labels) * max(0, k - 1) + 1e-9) + 1
    impostors = ImpostorAccumulator.create(keep, default_threshold)
    photos = scan_photos(embeddings, labels, sums, counts, impostors.add, chunk_elements)
    evaluated = ~np.isnan(photos.own)
    genuine = photos.own[evaluated]
    decision = calibrate(genuine, impostors, target_far, default_threshold)
    threshold = float(decision["threshold"])  # type: ignore[arg-type]
    correct = evaluated & (photos.own < photos.nearest_other)
    flagged = evaluated & (photos.nearest_other < photos.own) & (photos.nearest_other <= threshold)
    means = sums / np.linalg.norm(sums, axis=1)[:, None]
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
    }
    return Evaluation(summary=summary, genuine=genuine, impostor_counts=impostors.counts)
