"""Distances between unit embeddings and identity means, computed in row chunks (numpy only).

Distances are Euclidean between unit vectors (rules.py's metric), so at most MAX_DISTANCE. `scan_photos`
compares each photo with every identity's re-normalised mean, its own recomputed without the photo (leave
one out), and streams the impostor distances to a callback; `nearest_mean_distance` gives each outside
probe's (a known stranger's) nearest mean; `nearest_means` finds each mean's closest other mean and the
closest pairs overall. All work in chunks of about `chunk_elements` distances, so
memory stays O(N + K·D + chunk), never O(N·K).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MAX_DISTANCE = 2.0  # the largest distance between unit vectors
CLOSEST_PAIRS_LISTED = 10
CHUNK_ELEMENTS = 1 << 19  # distances computed per chunk (x8 bytes: 4 MiB)


@dataclass
class PhotoDistances:
    """Per photo: distance to its own leave-one-out mean (NaN when not evaluated), nearest other mean."""

    own: np.ndarray
    nearest_other: np.ndarray
    nearest_other_index: np.ndarray


def _distances(rows: np.ndarray, means: np.ndarray, means_sq: np.ndarray) -> np.ndarray:
    """Euclidean distances (float64) between each row and each mean."""
    squared = np.einsum("ij,ij->i", rows, rows)[:, None] - 2.0 * (rows @ means.T) + means_sq[None, :]
    return np.sqrt(np.clip(squared, 0.0, MAX_DISTANCE**2))


def _chunks(rows: int, columns: int, chunk_elements: int) -> list[tuple[int, int]]:
    """(start, stop) row ranges of about chunk_elements distances each."""
    step = max(1, chunk_elements // max(1, columns))
    return [(start, min(rows, start + step)) for start in range(0, rows, step)]


def scan_photos(
    embeddings: np.ndarray,
    labels: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    add_impostors: Callable[[np.ndarray], None],
    chunk_elements: int,
) -> PhotoDistances:
    """One pass over the photos in chunks: leave-one-out own distance, nearest other mean; every
    impostor distance (photo to another identity's mean) is handed to `add_impostors`."""
    n, k = len(labels), len(sums)
    norms = np.linalg.norm(sums, axis=1)
    means = sums / norms[:, None]
    means_sq = np.einsum("ij,ij->i", means, means)
    result = PhotoDistances(np.full(n, np.nan), np.full(n, np.inf), np.full(n, -1, np.int64))
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
            add_impostors(distances[np.isfinite(distances)])
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


def nearest_mean_distance(rows: np.ndarray, means: np.ndarray, chunk_elements: int) -> np.ndarray:
    """Per row (a probe outside the enrollment: a known stranger), its distance to the nearest mean."""
    means_sq = np.einsum("ij,ij->i", means, means)
    nearest = np.full(len(rows), np.inf)
    if len(means) == 0:
        return nearest
    for start, stop in _chunks(len(rows), len(means), chunk_elements):
        nearest[start:stop] = _distances(rows[start:stop].astype(np.float64), means, means_sq).min(axis=1)
    return nearest


def nearest_means(
    means: np.ndarray, chunk_elements: int
) -> tuple[np.ndarray, np.ndarray, list[tuple[float, int, int]]]:
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
