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
from .open_set import SearchOutcomes, search_error_curve
from .threshold_calibration import BIN_WIDTH

PROJECTED_POINTS = 4000  # photos drawn in the 2-D projection (a fixed random subset beyond that)
LEGEND_IDENTITIES = 20
PLOT_BINS = 60
GENUINE_COLOUR, IMPOSTOR_COLOUR, CURVE_COLOUR = "#1f8a70", "#d1495b", "#2b59c3"
NON_MATED_COLOUR = "#7b2cbf"
MARKERS = ("o", "s", "^", "D", "v", "P")


def searches(evaluation: Evaluation) -> SearchOutcomes:
    """The evaluation's 1:N searches, also for a summary without open_set (the figures need only the
    arrays, not the gallery size)."""
    open_set = evaluation.summary.get("open_set") or {}
    return SearchOutcomes(
        int(open_set.get("gallery_size", 0)),  # type: ignore[union-attr]
        evaluation.non_mated,
        evaluation.stranger_non_mated,
        evaluation.mated,
        evaluation.mated_hit,
    )


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


def _plot_edges(genuine: np.ndarray, counts: np.ndarray, others: np.ndarray) -> tuple[int, int, np.ndarray]:
    """First fine bin, fine bins per plot bin, and plot bin edges covering every distribution (fewer
    bins when there are few distances). `others`: distances drawn beside them (the non-mated searches)."""
    occupied = np.flatnonzero(counts)
    bounds = [int(occupied[0]), int(occupied[-1]) + 1] if occupied.size else []
    for values in (genuine, others):
        if values.size:
            bounds += [int(values.min() / BIN_WIDTH), int(values.max() / BIN_WIDTH) + 1]
    low, high = min(bounds), max(bounds)
    fewest = min(size for size in (genuine.size, int(counts.sum()), others.size) if size)
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
    """Genuine and impostor distance densities, and the nearest distance of each non-mated search (what
    FPIR counts), with the accept threshold marked."""
    figure = Figure(figsize=(9, 3.8))
    ax = figure.subplots()
    genuine, counts = evaluation.genuine, evaluation.impostor_counts
    non_mated = searches(evaluation).all_non_mated
    occupied = np.flatnonzero(counts)
    if genuine.size == 0 and occupied.size == 0 and non_mated.size == 0:
        _empty_plot(ax, "no distances: one photo per identity and a single identity")
        return figure
    low, group, edges = _plot_edges(genuine, counts, non_mated)
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
    if non_mated.size:
        density = np.histogram(non_mated, bins=edges)[0] / (non_mated.size * width)
        strangers = evaluation.stranger_non_mated.size
        label = f"non-mated search: nearest identity's mean ({non_mated.size}" + (
            f", {strangers} of them known strangers)" if strangers else ")"
        )
        ax.stairs(density, edges, color=NON_MATED_COLOUR, linewidth=1.5, linestyle="--", label=label)
    source = evaluation.summary["threshold_source"]
    _mark_threshold(ax, evaluation.threshold, f"threshold {evaluation.threshold:g} ({source})", edges)
    ax.set_xlabel("Euclidean distance between unit embeddings")
    ax.set_ylabel("density")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncol=2, fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return figure


def rate_floor(trials: int) -> float:
    """Where a rate of 0 is drawn on a log axis: half the smallest non-zero rate `trials` can give."""
    return 0.5 / max(trials, 1)


def _error_bar(rate: dict[str, Any], floor: float) -> tuple[float, list[list[float]]] | None:
    """The point (clipped to the floor) and its 95 % interval as matplotlib's asymmetric error bar."""
    if rate.get("rate") is None:
        return None
    value = max(float(rate["rate"]), floor)
    lower = max(float(rate["lower_95"]), floor)
    upper = max(float(rate["upper_95"]), floor)
    return value, [[value - min(lower, value)], [max(upper, value) - value]]


def det_plot(evaluation: Evaluation) -> Figure:
    """The open-set DET curve: FNIR (mated searches that miss their own identity) against FPIR (non-mated
    searches that return anyone) over every threshold, log axes, with the published threshold's operating
    point and its 95 % intervals, target_fpir, and the FPIRs too small for these searches to show shaded.
    Log axes cannot show 0: a rate of 0 is drawn at 1/(2n) of its own n (rate_floor), said in the legend."""
    figure = Figure(figsize=(7.2, 5.6))
    ax = figure.subplots()
    outcomes = searches(evaluation)
    _, fpir, fnir = search_error_curve(outcomes)
    if fpir.size == 0:
        _empty_plot(ax, "no curve: it needs mated searches (an identity with 2 photos) and non-mated ones")
        return figure
    n_non_mated, n_mated = outcomes.all_non_mated.size, outcomes.mated.size
    x_floor, y_floor = rate_floor(n_non_mated), rate_floor(n_mated)
    # Below every distance nothing is accepted: FPIR 0, FNIR 1; then each threshold where a rate changes.
    x = np.maximum(np.concatenate([[0.0], fpir]), x_floor)
    y = np.maximum(np.concatenate([[1.0], fnir]), y_floor)
    ax.step(x, y, where="post", color=CURVE_COLOUR, linewidth=1.8, label="all thresholds")
    summary = evaluation.summary
    open_set: dict[str, Any] = summary.get("open_set") or {}  # type: ignore[assignment]
    x_low = x_floor
    smallest = open_set.get("smallest_supported_fpir")
    if smallest is not None:
        ax.axvspan(
            1e-12,  # from beyond the left edge (the limits are set below)
            smallest,
            color="#8a94a6",
            alpha=0.15,
            linewidth=0,
            label=f"FPIR below {percent(smallest)}: needs more than {n_non_mated} non-mated searches to show",
        )
    target = open_set.get("target_fpir")
    if target is not None:
        ax.axvline(
            target, color="#a15c00", linestyle=":", linewidth=1.5, label=f"target_fpir {percent(target)}"
        )
        x_low = min(x_low, float(target))
    point_x = _error_bar(open_set.get("fpir") or {}, x_floor)
    point_y = _error_bar(open_set.get("fnir") or {}, y_floor)
    if point_x and point_y:
        label = (
            f"threshold {evaluation.threshold:g} ({summary['threshold_source']}): "
            f"FPIR {percent(open_set['fpir']['rate'])} (95 % ≤ {percent(open_set['fpir']['upper_95'])}), "
            f"FNIR {percent(open_set['fnir']['rate'])} (95 % ≤ {percent(open_set['fnir']['upper_95'])})"
        )
        ax.errorbar(
            point_x[0],
            point_y[0],
            xerr=point_x[1],
            yerr=point_y[1],
            fmt="o",
            markersize=9,
            color="#222",
            markerfacecolor="#ffd166",
            ecolor="#222",
            elinewidth=1.2,
            capsize=4,
            label=label,
            zorder=3,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain labels: the page renders text without mathtext
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlim(x_low * 0.6, 1.05)
    ax.set_ylim(y_floor * 0.6, 1.05)
    ax.set_xlabel(f"FPIR: non-mated searches returning someone ({n_non_mated} searches)")
    ax.set_ylabel(f"FNIR: mated searches missing their own identity ({n_mated})")
    ax.grid(True, which="major", color="#e6e9ee")
    ax.plot([], [], " ", label=f"a rate of 0 is drawn at 1/(2n): FPIR {x_floor:.2g}, FNIR {y_floor:.2g}")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), fontsize=8, frameon=False)
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
