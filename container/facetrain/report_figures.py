"""The report's figures: matplotlib on its Agg canvas (no pyplot, no display), each returned as a Figure
and embedded in the page as a PNG data URI (`png_data_uri`)."""

from __future__ import annotations

import base64
import io
import math
import warnings
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .embedding_projection import principal_axes
from .evaluation import Evaluation
from .threshold_calibration import BIN_WIDTH, error_rate_curve

PROJECTED_POINTS = 4000  # photos drawn in the 2-D projection (a fixed random subset beyond that)
LEGEND_IDENTITIES = 20
PLOT_BINS = 60
GENUINE_COLOUR, IMPOSTOR_COLOUR, CURVE_COLOUR = "#1f8a70", "#d1495b", "#2b59c3"
MARKERS = ("o", "s", "^", "D", "v", "P")


def percent(value: object) -> str:
    """A rate as the page shows it ("—" when there is none)."""
    return "—" if value is None else f"{float(value) * 100:.4g} %"  # type: ignore[arg-type]


def png_data_uri(figure: Figure) -> str:
    """The figure as a self-contained data:image/png URI."""
    buffer = io.BytesIO()
    with matplotlib.rc_context({"text.parse_math": False}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing")  # names in scripts DejaVu lacks
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _empty_plot(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def _plot_edges(genuine: np.ndarray, counts: np.ndarray) -> tuple[int, int, np.ndarray]:
    """First fine bin, fine bins per plot bin, and plot bin edges covering both distributions (fewer
    bins when there are few distances)."""
    occupied = np.flatnonzero(counts)
    bounds = [int(occupied[0]), int(occupied[-1]) + 1] if occupied.size else []
    if genuine.size:
        bounds += [int(genuine.min() / BIN_WIDTH), int(genuine.max() / BIN_WIDTH) + 1]
    low, high = min(bounds), max(bounds)
    fewest = min(size for size in (genuine.size, int(counts.sum())) if size)
    group = max(1, math.ceil((high - low) / np.clip(2 * math.sqrt(fewest), 12, PLOT_BINS)))
    starts = np.arange(low, high, group)
    return low, group, np.append(starts, starts[-1] + group) * BIN_WIDTH


def _mark_threshold(ax: Any, threshold: float, label: str, edges: np.ndarray) -> None:
    """A dashed line at the threshold, or a note at the edge when it is far outside the distances."""
    span = edges[-1] - edges[0]
    if edges[0] - span <= threshold <= edges[-1] + span:
        ax.axvline(threshold, color="#222", linestyle="--", linewidth=1.5, label=label)
        return
    right = threshold > edges[-1]
    ax.annotate(
        f"{label}: off the chart {'→' if right else '←'}",
        xy=(0.99 if right else 0.01, 0.97),
        xycoords="axes fraction",
        ha="right" if right else "left",
        va="top",
        fontsize=9,
        bbox={"boxstyle": "round", "facecolor": "#fff4e5", "edgecolor": "#a15c00"},
    )


def distance_plot(evaluation: Evaluation) -> Figure:
    """Genuine and impostor distance densities with the accept threshold marked."""
    figure = Figure(figsize=(9, 3.8))
    ax = figure.subplots()
    genuine, counts = evaluation.genuine, evaluation.impostor_counts
    occupied = np.flatnonzero(counts)
    if genuine.size == 0 and occupied.size == 0:
        _empty_plot(ax, "no distances: one photo per identity and a single identity")
        return figure
    low, group, edges = _plot_edges(genuine, counts)
    width = group * BIN_WIDTH
    if occupied.size:
        padded = np.concatenate([counts, np.zeros(group + 1, counts.dtype)])[
            low : low + group * (len(edges) - 1)
        ]
        density = np.add.reduceat(padded, np.arange(0, padded.size, group)) / (counts.sum() * width)
        ax.stairs(density, edges, fill=True, alpha=0.3, color=IMPOSTOR_COLOUR)
        label = f"impostor: photo to another identity's mean ({int(counts.sum())})"
        ax.stairs(density, edges, color=IMPOSTOR_COLOUR, linewidth=1.5, label=label)
    if genuine.size:
        density = np.histogram(genuine, bins=edges)[0] / (genuine.size * width)
        ax.stairs(density, edges, fill=True, alpha=0.3, color=GENUINE_COLOUR)
        label = f"genuine: photo to its own mean, leave-one-out ({genuine.size})"
        ax.stairs(density, edges, color=GENUINE_COLOUR, linewidth=1.5, label=label)
    source = evaluation.summary["threshold_source"]
    _mark_threshold(ax, evaluation.threshold, f"threshold {evaluation.threshold:g} ({source})", edges)
    ax.set_xlabel("Euclidean distance between unit embeddings")
    ax.set_ylabel("density")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncol=3, fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return figure


def det_plot(evaluation: Evaluation) -> Figure:
    """False-reject against false-accept rate over every threshold (log axes), with the operating point
    of the published threshold marked. Rates of 0 sit on the axes' floor (half the smallest possible
    non-zero rate), said in the legend."""
    figure = Figure(figsize=(6.4, 5.2))
    ax = figure.subplots()
    genuine, counts = evaluation.genuine, evaluation.impostor_counts
    _, far, frr = error_rate_curve(genuine, counts)
    if far.size == 0:
        _empty_plot(ax, "no curve: it needs genuine and impostor distances")
        return figure
    floor = 0.5 / max(int(counts.sum()), genuine.size)
    ax.step(
        np.maximum(far, floor),
        np.maximum(frr, floor),
        where="post",
        color=CURVE_COLOUR,
        linewidth=1.8,
        label="all thresholds",
    )
    summary = evaluation.summary
    point = (summary.get("false_accept_rate"), summary.get("false_reject_rate"))
    if None not in point:
        x, y = (max(float(v), floor) for v in point)  # type: ignore[arg-type]
        label = (
            f"threshold {evaluation.threshold:g} ({summary['threshold_source']}): "
            f"FAR {percent(point[0])}, FRR {percent(point[1])}"
        )
        ax.plot(x, y, "o", markersize=9, color="#222", markerfacecolor="#ffd166", label=label, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain labels: the page renders text without mathtext
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlim(floor * 0.8, 1.05)
    ax.set_ylim(floor * 0.8, 1.05)
    ax.set_xlabel("false-accept rate (impostor pairs accepted)")
    ax.set_ylabel("false-reject rate (genuine photos rejected)")
    ax.grid(True, which="major", color="#e6e9ee")
    ax.plot([], [], " ", label=f"a rate of 0 is drawn at {floor:.2g}")
    ax.legend(loc="upper right", fontsize=8, frameon=True)
    ax.spines[["top", "right"]].set_visible(False)
    return figure


def projection_plot(embeddings: np.ndarray, labels: np.ndarray, identities: Sequence[str]) -> Figure:
    """The photos' embeddings on their first two principal components, coloured by identity."""
    figure = Figure(figsize=(9, 6.2))
    ax = figure.subplots()
    if len(embeddings) < 3:
        _empty_plot(ax, "too few photos for a projection")
        return figure
    chosen = np.arange(len(embeddings))
    if chosen.size > PROJECTED_POINTS:
        chosen = np.sort(np.random.default_rng(0).choice(chosen, PROJECTED_POINTS, replace=False))
    centre, axes, share = principal_axes(embeddings[chosen])
    points = (embeddings[chosen].astype(np.float64) - centre) @ axes.T
    tab20 = matplotlib.colormaps["tab20"].colors
    palette = tab20[0::2] + tab20[1::2]  # the ten strong colours first, then their light pairs
    for index, name in enumerate(identities):
        mine = points[labels[chosen] == index]
        if mine.size == 0:
            continue
        style = {"color": palette[index % 20], "marker": MARKERS[(index // 20) % len(MARKERS)]}
        label = name if len(name) <= 32 else name[:31] + "…"
        ax.scatter(mine[:, 0], mine[:, 1], s=22, alpha=0.75, linewidths=0, label=label, **style)
        centroid = mine.mean(axis=0)
        ax.scatter(*centroid, s=140, edgecolors="black", linewidths=1.2, **style)
    ax.set_xlabel(f"PC1 ({share[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({share[1]:.0%} of variance)")
    ax.spines[["top", "right"]].set_visible(False)
    if len(identities) <= LEGEND_IDENTITIES:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False, markerscale=1.3)
    return figure
