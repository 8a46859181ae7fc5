"""The one decision rule of a search, shared by the evaluation, `identify` and rules.py's `accept`.

A probe's embedding is compared with every enrolled identity's mean (Euclidean distance between unit
vectors); the search returns the nearest identity when its distance is within the accept threshold
(`distance <= threshold`, as rules.py's `accept(dist)` reads it), else nobody. The margin is how much
nearer the best identity is than the second best: small margins are the answers to doubt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SearchResult:
    """What one search returns: the nearest identity's index and distance, whether it is accepted, and
    the margin to the second nearest (None with a single identity)."""

    nearest: int | None  # index into the gallery; None for an empty gallery
    distance: float | None
    accepted: bool
    margin: float | None


def accepts(distance: float, threshold: float) -> bool:
    """The accept rule: within the threshold, bounds included (rules.py's `accept`)."""
    return distance <= threshold


def search(distances: Sequence[float], threshold: float) -> SearchResult:
    """The decision over one probe's distances to every identity's mean (NaN: that identity is left out,
    as the evaluation leaves a probe's own identity out of a non-mated search)."""
    ranked = sorted((d, i) for i, d in enumerate(distances) if not math.isnan(d))
    if not ranked:
        return SearchResult(None, None, False, None)
    best, index = ranked[0]
    margin = ranked[1][0] - best if len(ranked) > 1 else None
    return SearchResult(index, best, accepts(best, threshold), margin)
