"""1:N searches of the enrollment's own photos (and known strangers), in NIST's open-set terms (numpy only).

A search compares a probe with every enrolled identity's mean and returns the nearest within the accept
threshold (facetrain.contract.decision). Non-mated searches: each enrolled photo with its own identity
left out, and each known stranger's photo against every identity; one that returns anyone is a false
positive. Mated searches: each photo of an identity with at least two photos against every mean, its own
recomputed without it; one that does not return its own identity is a false negative. At threshold t:

    FPIR(t) = share of non-mated searches with nearest distance <= t
    FNIR(t) = 1 - share of mated searches whose own identity is the nearest and within t
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract.decision import accepts
from .error_bounds import error_rate

ROUND = 6


@dataclass(frozen=True)
class SearchOutcomes:
    """The nearest distances of every search of an evaluation (the Evaluation's arrays)."""

    gallery_size: int  # enrolled identities
    non_mated: np.ndarray  # per enrolled photo with another identity to search: its nearest other mean
    stranger_non_mated: np.ndarray  # per known stranger's photo: its nearest mean
    mated: np.ndarray  # per mated search: distance to its own leave-one-out mean
    mated_hit: np.ndarray  # per mated search: its own identity is strictly the nearest of all means

    @property
    def all_non_mated(self) -> np.ndarray:
        return np.concatenate([self.non_mated, self.stranger_non_mated])

    def false_positives(self, threshold: float) -> int:
        return int(np.count_nonzero(accepts(self.all_non_mated, threshold)))

    def false_negatives(self, threshold: float) -> int:
        return int(np.count_nonzero(~(self.mated_hit & accepts(self.mated, threshold))))


def open_set_summary(outcomes: SearchOutcomes, threshold: float, target_fpir: float) -> dict[str, object]:
    """metrics.json's OpenSetEvaluation at the published threshold: FPIR and FNIR with their counts and 95 %
    Clopper-Pearson bounds, the known strangers alone, and what FPIR the searches can support."""
    non_mated = outcomes.all_non_mated
    strangers = outcomes.stranger_non_mated
    return {
        "gallery_size": outcomes.gallery_size,
        "target_fpir": target_fpir,
        "fpir": error_rate(outcomes.false_positives(threshold), non_mated.size),
        "fnir": error_rate(outcomes.false_negatives(threshold), outcomes.mated.size),
        "known_strangers": (
            error_rate(int(np.count_nonzero(accepts(strangers, threshold))), strangers.size)
            if strangers.size
            else None
        ),
        # The upper bound of 0 errors in these searches, rounded outward as every upper_95 is.
        "smallest_supported_fpir": error_rate(0, non_mated.size)["upper_95"],
        "nearest_non_mated_distance": round(float(non_mated.min()), ROUND) if non_mated.size else None,
    }


def search_error_curve(outcomes: SearchOutcomes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The open-set DET curve: (thresholds, FPIR, FNIR) at every distance where either changes, thresholds
    increasing; each rate holds from its threshold up to the next. Empty arrays without non-mated or mated
    searches."""
    non_mated = np.sort(outcomes.all_non_mated)
    if non_mated.size == 0 or outcomes.mated.size == 0:
        empty = np.empty(0)
        return empty, empty, empty
    hits = np.sort(outcomes.mated[outcomes.mated_hit])
    thresholds = np.unique(np.concatenate([non_mated, hits]))
    fpir = np.searchsorted(non_mated, thresholds, side="right") / non_mated.size
    fnir = 1.0 - np.searchsorted(hits, thresholds, side="right") / outcomes.mated.size
    return thresholds, fpir, fnir
