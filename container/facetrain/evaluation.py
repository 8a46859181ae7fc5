"""Leave-one-out evaluation of an enrollment and calibration of its accept threshold (numpy only).

Each photo is compared with every enrolled identity's mean as the enrollment publishes it (the sum of the
unit embeddings, re-normalised), except its own identity's mean, which is recomputed without the photo
(leave one out) and re-normalised the same way. Distances are Euclidean between unit vectors (rules.py's
metric). Photos of identities with at least two photos give a genuine distance (photo to its own
leave-one-out mean) and an identification outcome (is the nearest mean its own?); every photo gives one
impostor distance per other identity.

The accept threshold is calibrated at `target_far` when there are at least 1/target_far impostor pairs
and MIN_GENUINE genuine distances: it is the largest distance, rounded down to 4 decimals, that accepts
at most floor(target_far x pairs) impostor pairs. Otherwise the configured default is used, and the
outputs say why. Memory stays O(N + K·D + chunk): distances are computed in row chunks, the impostor
distribution is kept as a fixed fine histogram plus the few smallest values calibration needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MIN_GENUINE = 10  # genuine distances needed to calibrate (and so to measure the false-reject rate)
BIN_WIDTH = 1e-4  # impostor histogram resolution (its percentiles are accurate to this)
MAX_DISTANCE = 2.0  # the largest distance between unit vectors
THRESHOLD_DECIMALS = 4
MISLABELS_LISTED = 100
CLOSEST_PAIRS_LISTED = 10
CHUNK_ELEMENTS = 1 << 19  # distances computed per chunk (x8 bytes: 4 MiB)
ROUND = 6


@dataclass(frozen=True)
class Evaluation:
    """What the evaluation found: `summary` goes to metrics.json, the arrays feed the report's plots."""

    summary: dict[str, object]
    genuine: np.ndarray  # genuine distances, one per evaluated photo
    impostor_counts: np.ndarray  # histogram of impostor distances, bins of BIN_WIDTH from 0

    @property
    def threshold(self) -> float:
        return float(self.summary["threshold"])  # type: ignore[arg-type]


@dataclass
class _PhotoDistances:
    """Per photo: distance to its own leave-one-out mean (NaN when not evaluated), nearest other mean."""

    own: np.ndarray
    nearest_other: np.ndarray
    nearest_other_index: np.ndarray


@dataclass
class _ImpostorAccumulator:
    """Streams impostor distances: fine histogram, exact count/sum/min/max, the smallest `keep` values,
    and how many are at or below the default threshold."""

    keep: int
    default_threshold: float
    counts: np.ndarray
    smallest: np.ndarray
    total: float = 0.0
    cutoff: float = math.inf  # the largest of `smallest` once it holds `keep` values
    minimum: float = math.inf
    maximum: float = -math.inf
    at_or_below_default: int = 0

    @classmethod
    def create(cls, keep: int, default_threshold: float) -> _ImpostorAccumulator:
        bins = round(MAX_DISTANCE / BIN_WIDTH)
        return cls(keep, default_threshold, np.zeros(bins, np.int64), np.empty(0))

    def add(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        index = np.minimum((values / BIN_WIDTH).astype(np.int64), self.counts.size - 1)
        self.counts += np.bincount(index, minlength=self.counts.size)
        self.total += float(values.sum())
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))
        self.at_or_below_default += int(np.count_nonzero(values <= self.default_threshold))
        candidates = values[values < self.cutoff]
        if candidates.size:
            merged = np.concatenate([self.smallest, candidates])
            if merged.size >= self.keep:
                merged = np.partition(merged, self.keep - 1)[: self.keep]
                self.cutoff = float(merged.max())
            self.smallest = merged

    @property
    def count(self) -> int:
        return int(self.counts.sum())


def _distances(rows: np.ndarray, means: np.ndarray, means_sq: np.ndarray) -> np.ndarray:
    """Euclidean distances (float64) between each row and each mean."""
    squared = np.einsum("ij,ij->i", rows, rows)[:, None] - 2.0 * (rows @ means.T) + means_sq[None, :]
    return np.sqrt(np.clip(squared, 0.0, MAX_DISTANCE**2))


def _chunks(rows: int, columns: int, chunk_elements: int) -> list[tuple[int, int]]:
    """(start, stop) row ranges of about chunk_elements distances each."""
    step = max(1, chunk_elements // max(1, columns))
    return [(start, min(rows, start + step)) for start in range(0, rows, step)]


def _scan_photos(
    embeddings: np.ndarray,
    labels: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    impostors: _ImpostorAccumulator,
    chunk_elements: int,
) -> _PhotoDistances:
    """One pass over the photos in chunks: leave-one-out own distance, nearest other mean, impostors."""
    n, k = len(labels), len(sums)
    norms = np.linalg.norm(sums, axis=1)
    means = sums / norms[:, None]
    means_sq = np.einsum("ij,ij->i", means, means)
    result = _PhotoDistances(np.full(n, np.nan), np.full(n, np.inf), np.full(n, -1, np.int64))
    for start, stop in _chunks(n, k, chunk_elements):
        rows = embeddings[start:stop].astype(np.float64)
        own = labels[start:stop]
        local = np.arange(stop - start)
        distances = _distances(rows, means, means_sq)
        distances[local, own] = np.inf
        if k > 1:
            nearest = np.argmin(distances, axis=1)
            result.nearest_other_index[start:stop] = nearest
            result.nearest_other[start:stop] = distances[local, nearest]
            impostors.add(distances[np.isfinite(distances)])
        evaluated = counts[own] >= 2
        if evaluated.any():
            rest = sums[own[evaluated]] - rows[evaluated]
            length = np.linalg.norm(rest, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                loo = np.linalg.norm(rows[evaluated] - rest / length[:, None], axis=1)
            # a leave-one-out mean of zero length has no direction: count it as the farthest possible
            loo[~(length > 1e-12)] = MAX_DISTANCE
            result.own[start:stop][evaluated] = loo
    return result


def _round_below(value: float) -> float:
    """The largest number with THRESHOLD_DECIMALS decimals strictly below `value` (never below 0)."""
    scale = 10**THRESHOLD_DECIMALS
    candidate = round(math.floor(value * scale) / scale, THRESHOLD_DECIMALS)
    while candidate >= value and candidate > 0.0:
        candidate = round(candidate - 1 / scale, THRESHOLD_DECIMALS)
    return max(candidate, 0.0)


def _summary(values: np.ndarray) -> dict[str, float | int | None]:
    if values.size == 0:
        return {"count": 0, "min": None, "p50": None, "p95": None, "max": None, "mean": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {
        "count": int(values.size),
        "min": round(float(values.min()), ROUND),
        "p50": round(float(p50), ROUND),
        "p95": round(float(p95), ROUND),
        "max": round(float(values.max()), ROUND),
        "mean": round(float(values.mean()), ROUND),
    }


def _histogram_quantile(counts: np.ndarray, q: float) -> float:
    """Quantile of histogrammed values as np.percentile defines it (linear between order statistics),
    each order statistic placed within its bin: accurate to BIN_WIDTH."""
    cumulative = np.cumsum(counts)

    def order_statistic(rank: int) -> float:
        index = int(np.searchsorted(cumulative, rank, side="right"))
        before = int(cumulative[index - 1]) if index else 0
        return (index + (rank - before + 0.5) / int(counts[index])) * BIN_WIDTH

    position = q * (int(cumulative[-1]) - 1)
    low = math.floor(position)
    high = min(low + 1, int(cumulative[-1]) - 1)
    return order_statistic(low) + (position - low) * (order_statistic(high) - order_statistic(low))


def _impostor_summary(acc: _ImpostorAccumulator) -> dict[str, float | int | None]:
    if acc.count == 0:
        return _summary(np.empty(0))
    p50, p95 = (min(max(_histogram_quantile(acc.counts, q), acc.minimum), acc.maximum) for q in (0.5, 0.95))
    return {
        "count": acc.count,
        "min": round(acc.minimum, ROUND),
        "p50": round(p50, ROUND),
        "p95": round(p95, ROUND),
        "max": round(acc.maximum, ROUND),
        "mean": round(acc.total / acc.count, ROUND),
    }


def _calibrate(
    genuine: np.ndarray, impostors: _ImpostorAccumulator, target_far: float, default: float
) -> dict[str, object]:
    """Threshold, its source, why, and the false-accept/false-reject rates it gives on these pairs."""
    pairs, allowed = impostors.count, math.floor(target_far * impostors.count + 1e-9)
    needed = math.ceil(1 / target_far - 1e-9)
    if allowed >= 1 and genuine.size >= MIN_GENUINE:
        threshold = _round_below(float(np.sort(impostors.smallest)[allowed]))
        accepted = int(np.count_nonzero(impostors.smallest <= threshold))
        source = "calibrated"
        note = (
            f"calibrated on {pairs} impostor pairs: the largest distance (to {THRESHOLD_DECIMALS} decimals) "
            f"accepting at most {allowed} of them (target_far={target_far})"
        )
    else:
        threshold, accepted, source = default, impostors.at_or_below_default, "default"
        note = (
            f"too few pairs to calibrate at target_far={target_far} ({pairs} impostor pairs, "
            f"{needed} needed; {genuine.size} genuine distances, {MIN_GENUINE} needed): "
            f"using accept_threshold={default}"
        )
    rejected = int(np.count_nonzero(genuine > threshold))
    return {
        "threshold": threshold,
        "threshold_source": source,
        "threshold_note": note,
        "target_far": target_far,
        "false_accept_rate": round(accepted / pairs, ROUND) if pairs else None,
        "false_reject_rate": round(rejected / genuine.size, ROUND) if genuine.size else None,
        "false_accepts": accepted if pairs else None,
        "false_rejects": rejected if genuine.size else None,
    }


def error_rate_curve(
    genuine: np.ndarray, impostor_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The DET curve: (thresholds, false-accept rates, false-reject rates) at every impostor-histogram
    bin edge where either rate changes, thresholds increasing. An impostor counts as accepted from the
    upper edge of its bin, a genuine distance as rejected below it: accurate to BIN_WIDTH. Empty arrays
    when either kind of distance is missing."""
    total = int(impostor_counts.sum())
    if total == 0 or genuine.size == 0:
        empty = np.empty(0)
        return empty, empty, empty
    thresholds = (np.arange(impostor_counts.size) + 1) * BIN_WIDTH
    far = np.cumsum(impostor_counts) / total
    frr = 1.0 - np.searchsorted(np.sort(genuine), thresholds, side="right") / genuine.size
    changed = np.ones(thresholds.size, bool)
    changed[1:] = (np.diff(far) != 0) | (np.diff(frr) != 0)
    return thresholds[changed], far[changed], frr[changed]


def _nearest_means(means: np.ndarray, chunk_elements: int) -> tuple[np.ndarray, np.ndarray, list]:
    """For each mean the closest other mean (index, distance), and the closest pairs overall."""
    k = len(means)
    means_sq = np.einsum("ij,ij->i", means, means)
    nearest = np.full(k, -1, np.int64)
    nearest_distance = np.full(k, np.inf)
    pairs: list[tuple[float, int, int]] = []
    if k < 2:
        return nearest, nearest_distance, pairs
    for start, stop in _chunks(k, k, chunk_elements):
        distances = _distances(means[start:stop], means, means_sq)
        rows = np.arange(start, stop)
        distances[rows - start, rows] = np.inf
        nearest[start:stop] = np.argmin(distances, axis=1)
        nearest_distance[start:stop] = distances[rows - start, nearest[start:stop]]
        upper = np.where(np.arange(k)[None, :] > rows[:, None], distances, np.inf).ravel()
        take = min(CLOSEST_PAIRS_LISTED, upper.size)
        for flat in np.argpartition(upper, take - 1)[:take]:
            if np.isfinite(upper[flat]):
                pairs.append((float(upper[flat]), start + int(flat) // k, int(flat) % k))
    pairs.sort()
    return nearest, nearest_distance, pairs[:CLOSEST_PAIRS_LISTED]


def _number(value: float) -> float | None:
    return round(float(value), ROUND) if np.isfinite(value) else None


def _per_identity(
    identities: Sequence[str],
    labels: np.ndarray,
    counts: np.ndarray,
    photos: _PhotoDistances,
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


def principal_axes(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, the first two principal axes (signs fixed) and their shares of the variance (the report's
    2-D projection of the embeddings)."""
    rows = embeddings.astype(np.float64)
    centre = rows.mean(axis=0)
    _, singular, axes = np.linalg.svd(rows - centre, full_matrices=False)
    axes = axes[:2] * np.sign(axes[:2, [0]] + (axes[:2, [0]] == 0))
    variance = singular**2
    share = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    return centre, axes, share


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
    impostors = _ImpostorAccumulator.create(keep, default_threshold)
    photos = _scan_photos(embeddings, labels, sums, counts, impostors, chunk_elements)
    evaluated = ~np.isnan(photos.own)
    genuine = photos.own[evaluated]
    decision = _calibrate(genuine, impostors, target_far, default_threshold)
    threshold = float(decision["threshold"])  # type: ignore[arg-type]
    correct = evaluated & (photos.own < photos.nearest_other)
    flagged = evaluated & (photos.nearest_other < photos.own) & (photos.nearest_other <= threshold)
    means = sums / np.linalg.norm(sums, axis=1)[:, None]
    nearest, nearest_distance, closest = _nearest_means(means, chunk_elements)
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
        "genuine": _summary(genuine),
        "impostor": _impostor_summary(impostors),
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
