"""The genuine and impostor distance distributions summarised, and the accept threshold calibrated on
them (numpy only).

The impostor distances are streamed into an ImpostorAccumulator: a fixed fine histogram (bins of
BIN_WIDTH) plus exact count/sum/min/max and the few smallest values calibration needs, so memory does not
grow with their number. `calibrate` sets the accept threshold at `target_far` when there are at least
1/target_far impostor pairs and MIN_GENUINE genuine distances: the largest distance, rounded down to
THRESHOLD_DECIMALS decimals, that accepts at most floor(target_far x pairs) impostor pairs. Otherwise the
configured default is used, and its note says why. `error_rate_curve` is the DET curve the report plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .embedding_distances import MAX_DISTANCE

MIN_GENUINE = 10  # genuine distances needed to calibrate (and so to measure the false-reject rate)
BIN_WIDTH = 1e-4  # impostor histogram resolution (its percentiles are accurate to this)
THRESHOLD_DECIMALS = 4
ROUND = 6  # decimals of the distances and rates written to metrics.json


@dataclass
class ImpostorAccumulator:
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
    def create(cls, keep: int, default_threshold: float) -> ImpostorAccumulator:
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


def _round_below(value: float) -> float:
    """The largest number with THRESHOLD_DECIMALS decimals strictly below `value` (never below 0)."""
    scale = 10**THRESHOLD_DECIMALS
    candidate = round(math.floor(value * scale) / scale, THRESHOLD_DECIMALS)
    while candidate >= value and candidate > 0.0:
        candidate = round(candidate - 1 / scale, THRESHOLD_DECIMALS)
    return max(candidate, 0.0)


def distance_summary(values: np.ndarray) -> dict[str, float | int | None]:
    """count, min, p50, p95, max and mean of `values` (all None but the count when there are none)."""
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


def impostor_summary(acc: ImpostorAccumulator) -> dict[str, float | int | None]:
    """distance_summary's fields for the accumulated impostor distances (percentiles from the histogram,
    accurate to BIN_WIDTH)."""
    if acc.count == 0:
        return distance_summary(np.empty(0))
    p50, p95 = (min(max(_histogram_quantile(acc.counts, q), acc.minimum), acc.maximum) for q in (0.5, 0.95))
    return {
        "count": acc.count,
        "min": round(acc.minimum, ROUND),
        "p50": round(p50, ROUND),
        "p95": round(p95, ROUND),
        "max": round(acc.maximum, ROUND),
        "mean": round(acc.total / acc.count, ROUND),
    }


def calibrate(
    genuine: np.ndarray, impostors: ImpostorAccumulator, target_far: float, default: float
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
