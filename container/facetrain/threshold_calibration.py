"""The per-pair genuine and impostor distance distributions summarised, with the per-pair error rates at
the published threshold (numpy only). The threshold itself is chosen on 1:N searches (open_set.py).

The impostor distances (photo to another identity's mean) are streamed into an ImpostorAccumulator: a
fixed fine histogram (bins of BIN_WIDTH) plus exact count/sum/min/max and the smallest values needed to
count exactly how many pairs the published threshold accepts, so memory does not grow with their number.
`error_rate_curve` is the per-pair DET curve.

`choose_threshold` picks the published threshold from the 1:N searches (open_set.py): the operator's
accept_threshold as given ("configured"); else "calibrated" at target_fpir when floor(target_fpir x n) >= 1
of the n non-mated searches may be accepted and there are MIN_GENUINE mated searches: the largest
distance, rounded down to THRESHOLD_DECIMALS decimals, accepting no more; else "data-bound": below the
nearest non-mated distance with a margin (_data_bound); else, with no non-mated search at all, the
per-embedder fallback ("default").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .embedding_distances import MAX_DISTANCE
from .error_bounds import smallest_supported_rate
from .open_set import SearchOutcomes

MIN_GENUINE = 10  # mated searches needed to calibrate (and so to measure what the threshold costs)
# A data-bound threshold lies at least this fraction below the nearest non-mated distance.
DATA_BOUND_FRACTION = 0.05
BIN_WIDTH = 1e-4  # impostor histogram resolution (its percentiles are accurate to this)
THRESHOLD_DECIMALS = 4
ROUND = 6  # decimals of the distances and rates written to metrics.json
MIN_THRESHOLD = 10**-THRESHOLD_DECIMALS  # rules.py refuses 0: the smallest threshold ever published


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

    def accepted_at(self, threshold: float) -> int:
        """Impostor distances <= threshold: exact at `default_threshold`, and whenever fewer than the `keep`
        smallest are accepted (every value not kept is above them); otherwise from the histogram (to
        BIN_WIDTH). The evaluation keeps enough for the calibrated and data-bound thresholds to be exact."""
        if threshold == self.default_threshold:
            return self.at_or_below_default
        kept = int(np.count_nonzero(self.smallest <= threshold))
        if kept < self.smallest.size or self.smallest.size == self.count:
            return kept
        return int(self.counts[: min(self.counts.size, int(threshold / BIN_WIDTH) + 1)].sum())


def round_below(value: float) -> float:
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


def pair_rates(
    genuine: np.ndarray, impostors: ImpostorAccumulator, threshold: float, target_far: float
) -> dict[str, object]:
    """The per-pair figures at the published threshold: impostor pairs accepted (false_accept_rate) and
    genuine distances rejected (false_reject_rate), beside target_far (reported for comparison only)."""
    pairs = impostors.count
    accepted = impostors.accepted_at(threshold)
    rejected = int(np.count_nonzero(genuine > threshold))
    return {
        "target_far": target_far,
        "false_accept_rate": round(accepted / pairs, ROUND) if pairs else None,
        "false_reject_rate": round(rejected / genuine.size, ROUND) if genuine.size else None,
        "false_accepts": accepted if pairs else None,
        "false_rejects": rejected if genuine.size else None,
    }


@dataclass(frozen=True)
class ThresholdChoice:
    """The published accept threshold, where it comes from (metrics' threshold_source) and why."""

    threshold: float
    source: str  # calibrated | data-bound | configured | default
    note: str


def _data_bound(outcomes: SearchOutcomes) -> tuple[float, str]:
    """Below the nearest non-mated distance D by the LARGER of DATA_BOUND_FRACTION x D and half the gap
    to the largest genuine (mated) distance G: min((1 - f) D, (D + G) / 2), rounded down. The larger
    margin protects strangers best (a stranger the run has not seen may come nearer than D); the
    midpoint still accepts every genuine distance when the two are apart."""
    nearest = float(outcomes.all_non_mated.min())
    below = nearest * (1.0 - DATA_BOUND_FRACTION)
    why = f"{DATA_BOUND_FRACTION:.0%} below the nearest non-mated distance {nearest:.4f}"
    if outcomes.mated.size:
        largest = float(outcomes.mated.max())
        if (largest + nearest) / 2 < below:
            below = (largest + nearest) / 2
            why = (
                f"half-way between the largest genuine distance {largest:.4f} and the nearest non-mated "
                f"distance {nearest:.4f}"
            )
    return max(round_below(below), MIN_THRESHOLD), why


def _calibratable(outcomes: SearchOutcomes, target_fpir: float) -> int:
    """How many non-mated searches the target allows to be accepted (0: too few searches to calibrate, or
    too few mated searches to measure what the threshold costs)."""
    allowed = math.floor(target_fpir * outcomes.all_non_mated.size + 1e-9)
    return allowed if outcomes.mated.size >= MIN_GENUINE else 0


def _from_data(outcomes: SearchOutcomes, target_fpir: float) -> ThresholdChoice:
    """calibrated or data-bound, from the searches alone (at least one non-mated search)."""
    n = outcomes.all_non_mated.size
    allowed = _calibratable(outcomes, target_fpir)
    if allowed >= 1:
        threshold = max(round_below(float(np.sort(outcomes.all_non_mated)[allowed])), MIN_THRESHOLD)
        return ThresholdChoice(
            threshold,
            "calibrated",
            f"calibrated on {n} non-mated searches: the largest distance (to {THRESHOLD_DECIMALS} decimals) "
            f"accepting at most {allowed} of them (target_fpir={target_fpir})",
        )
    threshold, why = _data_bound(outcomes)
    needed = math.ceil(1 / target_fpir - 1e-9)
    supported = smallest_supported_rate(n) or 1.0
    return ThresholdChoice(
        threshold,
        "data-bound",
        f"too few searches to show target_fpir={target_fpir} ({n} non-mated searches, {needed} needed; "
        f"{outcomes.mated.size} mated, {MIN_GENUINE} needed): set {why}, so that none of them is accepted. "
        f"The smallest FPIR {n} searches can support at 95 % confidence is {supported:.4f}; "
        f"add photos or known strangers (_strangers/) to show a lower one",
    )


def choose_threshold(
    outcomes: SearchOutcomes, target_fpir: float, configured: float | None, fallback: float
) -> ThresholdChoice:
    """The accept threshold to publish, in order: the operator's `configured` value as given (warned
    when looser than the data supports); calibrated at target_fpir; data-bound; the per-embedder
    `fallback` when there is no non-mated search at all (a single identity, no known strangers)."""
    n = outcomes.all_non_mated.size
    if configured is not None:
        note = f"accept_threshold={configured} set by the operator, published as given"
        if n:
            data = _from_data(outcomes, target_fpir)
            accepted = outcomes.false_positives(configured)
            allowed = math.floor(target_fpir * n + 1e-9)
            if accepted > allowed or configured > data.threshold:
                note += (
                    f". WARNING: it is looser than these searches support at target_fpir={target_fpir}: "
                    f"it accepts {accepted} of {n} non-mated searches ({allowed} allowed), and the "
                    f"{data.source} threshold would be {data.threshold}"
                )
        return ThresholdChoice(configured, "configured", note)
    if n == 0:
        return ThresholdChoice(
            fallback,
            "default",
            f"WARNING: no non-mated search (a single identity and no known strangers), so nothing to "
            f"calibrate on: using the embedder's fallback accept threshold {fallback}, which this data "
            "cannot check. Enroll a second person or add known strangers (_strangers/)",
        )
    return _from_data(outcomes, target_fpir)


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
