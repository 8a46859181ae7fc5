"""The report's 2-D projection of the embeddings: their first two principal axes (numpy only)."""

from __future__ import annotations

import numpy as np


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
