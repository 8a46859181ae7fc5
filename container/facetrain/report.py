"""`report.html`: one self-contained page about an enrollment run (plots embedded as PNG data URIs).

Every text that comes from the data (identity names, photo keys, messages) goes through html.escape; the
page loads nothing from anywhere. Plots are drawn with matplotlib's Agg canvas (no pyplot, no display).
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .evaluation import BIN_WIDTH, Evaluation, error_rate_curve

PROJECTED_POINTS = 4000  # photos drawn in the 2-D projection (a fixed random subset beyond that)
REJECTED_LISTED = 200
LEGEND_IDENTITIES = 20
PLOT_BINS = 60
GENUINE_COLOUR, IMPOSTOR_COLOUR, CURVE_COLOUR = "#1f8a70", "#d1495b", "#2b59c3"
MARKERS = ("o", "s", "^", "D", "v", "P")


class RejectedPhoto(Protocol):
    """A rejected.csv row (enrollment.RejectedRow)."""

    identity: str
    photo: str
    reason: str
    message: str


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: object, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _pct(value: object) -> str:
    return "—" if value is None else f"{float(value) * 100:.4g} %"  # type: ignore[arg-type]


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    with matplotlib.rc_context({"text.parse_math": False}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing")  # names in scripts DejaVu lacks
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(figure: Figure, alt: str) -> str:
    return f'<img src="{_png(figure)}" alt="{_e(alt)}">'


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
            f"FAR {_pct(point[0])}, FRR {_pct(point[1])}"
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


def _projection(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, the first two principal axes (signs fixed) and their shares of the variance."""
    rows = embeddings.astype(np.float64)
    centre = rows.mean(axis=0)
    _, singular, axes = np.linalg.svd(rows - centre, full_matrices=False)
    axes = axes[:2] * np.sign(axes[:2, [0]] + (axes[:2, [0]] == 0))
    variance = singular**2
    share = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    return centre, axes, share


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
    centre, axes, share = _projection(embeddings[chosen])
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


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; cells are already-escaped HTML, `numeric` columns are right-aligned."""

    def cell(index: int, value: str, tag: str) -> str:
        return f'<{tag} class="num">{value}</{tag}>' if index in numeric else f"<{tag}>{value}</{tag}>"

    header = "".join(cell(i, _e(name), "th") for i, name in enumerate(head))
    body = "".join(
        "<tr>" + "".join(cell(i, value, "td") for i, value in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _cards(metrics: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    cards = [
        (
            "identities enrolled",
            _e(metrics.get("identities")),
            f"{len(metrics.get('identities_excluded', {}))} excluded",
        ),
        (
            "photos used",
            _e(metrics.get("images_accepted")),
            f"of {_e(metrics.get('images_total'))}; {_e(metrics.get('images_rejected'))} rejected",
        ),
        (
            "identification accuracy",
            _pct(summary.get("identification_accuracy")),
            f"leave-one-out, {_e(summary.get('photos_evaluated'))} photos",
        ),
        ("accept threshold", _num(summary.get("threshold")), _e(summary.get("threshold_source"))),
        (
            "false accepts",
            _pct(summary.get("false_accept_rate")),
            f"target {_pct(summary.get('target_far'))}",
        ),
        ("false rejects", _pct(summary.get("false_reject_rate")), "at this threshold"),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="label">{label}</div><div class="value">{value}</div>'
            f'<div class="sub">{sub}</div></div>'
            for label, value, sub in cards
        )
        + "</div>"
    )


def _summary_section(metrics: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    facts = [
        ("status", metrics.get("status")),
        ("created at", metrics.get("created_at")),
        ("embedder", f"{metrics.get('embedder', 'facenet')} ({metrics.get('embedding_dim', 512)}-D)"),
        ("weights", f"{metrics.get('weights')} (sha256 {metrics.get('weights_sha256') or '—'})"),
        ("device", metrics.get("device")),
        ("photos/s", metrics.get("images_per_second")),
        ("dataset fingerprint", metrics.get("dataset_fingerprint")),
        ("threshold", summary.get("threshold_note")),
        ("false accepts", f"{summary.get('false_accepts')} of {summary['impostor']['count']} impostor pairs"),
        ("false rejects", f"{summary.get('false_rejects')} of {summary['genuine']['count']} genuine pairs"),
        ("method", summary.get("method")),
    ]
    rows = [(f"<th>{_e(name)}</th>", _e("—" if value is None else value)) for name, value in facts]
    table = "<table class='facts'>" + "".join(f"<tr>{h}<td>{v}</td></tr>" for h, v in rows) + "</table>"
    return f"<section><h2>Run summary</h2>{_cards(metrics, summary)}{table}</section>"


def _distance_section(evaluation: Evaluation) -> str:
    summary = evaluation.summary
    names = ("count", "min", "p50", "p95", "max", "mean")
    rows = [
        [_e(kind), *(_num(summary[kind].get(name)) for name in names)]  # type: ignore[union-attr]
        for kind in ("genuine", "impostor")
    ]
    return (
        "<section><h2>Genuine and impostor distances</h2>"
        f"{_img(distance_plot(evaluation), 'histograms of genuine and impostor distances')}"
        f"{_table(['', *names], rows, numeric=range(1, 7))}"
        f"<p class='note'>{_e(summary['threshold_note'])}. A photo is accepted as an identity when its "
        "distance to that identity's mean is at or below the threshold.</p></section>"
    )


def _det_section(evaluation: Evaluation) -> str:
    summary = evaluation.summary
    return (
        "<section><h2>Error rates over all thresholds (DET)</h2>"
        f"{_img(det_plot(evaluation), 'false-reject rate against false-accept rate over all thresholds')}"
        "<p class='note'>Each point of the curve is one accept threshold: to the left, fewer strangers "
        "accepted; lower, fewer of the person's own photos refused. The marked point is the published "
        f"threshold {_e(summary.get('threshold'))}: {_e(summary.get('false_accepts'))} of "
        f"{_e(summary['impostor']['count'])} impostor pairs accepted, {_e(summary.get('false_rejects'))} of "
        f"{_e(summary['genuine']['count'])} genuine photos rejected (leave-one-out).</p></section>"
    )


def _identity_section(summary: Mapping[str, Any], excluded: Mapping[str, str]) -> str:
    rows = []
    for row in summary["per_identity"]:
        reasons = ", ".join(f"{_e(reason)}: {count}" for reason, count in row["rejections"].items())
        name = _e(row["identity"])
        if not row["enrolled"]:
            name += f"<div class='why'>excluded: {_e(excluded.get(row['identity'], 'no usable photo'))}</div>"
        flag = ""
        if row["margin"] is not None and row["margin"] < 0:
            flag = " class='bad'"
        elif row["loo_accuracy"] is not None and row["loo_accuracy"] < 1:
            flag = " class='warn'"
        rows.append(
            [
                name,
                _e(row["photos_used"]),
                f"{_e(row['photos_rejected'])}"
                + (f" <span class='why'>({reasons})</span>" if reasons else ""),
                f"<span{flag}>{_pct(row['loo_accuracy'])}</span>",
                _num(row["mean_genuine_distance"]),
                _e(row["nearest_identity"] or "—"),
                _num(row["nearest_distance"]),
                f"<span{flag}>{_num(row['margin'])}</span>",
                _e(row["suspected_mislabels"]),
            ]
        )
    head = [
        "identity",
        "used",
        "rejected (reasons)",
        "LOO accuracy",
        "genuine distance",
        "nearest identity",
        "distance between means",
        "margin",
        "suspected mislabels",
    ]
    return (
        "<section><h2>Photos per identity</h2>"
        "<p class='note'>LOO accuracy: share of the identity's photos whose nearest mean is their own, "
        "their own mean recomputed without them. Margin: for its worst photo, distance to the closest other "
        "mean minus distance to its own; negative means a photo sits nearer someone else.</p>"
        f"{_table(head, rows, numeric=(1, 3, 4, 6, 7, 8))}</section>"
    )


def _projection_section(embeddings: np.ndarray, labels: np.ndarray, identities: Sequence[str]) -> str:
    caption = (
        f"Each dot is a photo (at most {PROJECTED_POINTS} shown); large outlined markers are the centres."
    )
    if len(identities) > LEGEND_IDENTITIES:
        caption += f" Colours repeat beyond 20 identities; no legend for {len(identities)} identities."
    return (
        "<section><h2>Embeddings in 2-D (PCA)</h2>"
        f"{_img(projection_plot(embeddings, labels, identities), 'embeddings projected on two axes')}"
        f"<p class='note'>{_e(caption)}</p></section>"
    )


def _pairs_section(summary: Mapping[str, Any]) -> str:
    rows = [
        [_e(pair["identities"][0]), _e(pair["identities"][1]), _num(pair["distance"])]
        for pair in summary["closest_pairs"]
    ]
    body = (
        _table(["identity", "identity", "distance between means"], rows, numeric=(2,))
        if rows
        else "<p>Only one identity.</p>"
    )
    return f"<section><h2>Closest identity pairs</h2>{body}</section>"


def _mislabel_section(summary: Mapping[str, Any]) -> str:
    suspects = summary["suspected_mislabels"]
    rows = [
        [
            _e(item["photo"]),
            _e(item["identity"]),
            _num(item["distance_to_own_mean"]),
            _e(item["closest_identity"]),
            _num(item["distance_to_closest"]),
        ]
        for item in suspects
    ]
    intro = (
        "<p class='note'>Photos closer to another identity's mean than to their own (leave-one-out) and "
        "within the threshold of it: check that they are filed under the right person.</p>"
    )
    if not rows:
        return f"<section><h2>Suspected mislabels</h2>{intro}<p>None found.</p></section>"
    more = summary["suspected_mislabels_total"] - len(rows)
    tail = (
        f"<p class='note'>… and {more} more (metrics.json lists the first {len(rows)}).</p>"
        if more > 0
        else ""
    )
    head = ["photo", "filed under", "distance to own mean", "closest identity", "distance to it"]
    return f"<section><h2>Suspected mislabels</h2>{intro}{_table(head, rows, numeric=(2, 4))}{tail}</section>"


def _rejected_section(rejected: Sequence[RejectedPhoto]) -> str:
    if not rejected:
        return "<section><h2>Rejected files</h2><p>None.</p></section>"
    rows = [[_e(r.photo), _e(r.reason), _e(r.message)] for r in rejected[:REJECTED_LISTED]]
    more = len(rejected) - len(rows)
    tail = f"<p class='note'>… and {more} more in rejected.csv.</p>" if more > 0 else ""
    return f"<section><h2>Rejected files</h2>{_table(['file', 'reason', 'what to do'], rows)}{tail}</section>"


def _settings_section(metrics: Mapping[str, Any]) -> str:
    def pairs(mapping: Mapping[str, Any]) -> str:
        return "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in mapping.items())

    return (
        "<section><h2>Settings, timings and versions</h2><div class='columns'>"
        f"<table class='facts'><caption>settings</caption>{pairs(metrics.get('hyperparameters', {}))}</table>"
        f"<table class='facts'><caption>seconds</caption>{pairs(metrics.get('timings', {}))}</table>"
        f"<table class='facts'><caption>versions</caption>{pairs(metrics.get('versions', {}))}</table>"
        "</div></section>"
    )


STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;
  background:#f4f5f7}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:0 0 12px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:18px 22px;margin:18px 0}
.meta{color:#5b6473;margin:0}.note{color:#5b6473;font-size:13px}
.banner{background:#b3261e;color:#fff;font-weight:700;padding:12px 18px;border-radius:8px;margin-top:16px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin-bottom:14px}
.card{border:1px solid #dde1e7;border-radius:8px;padding:10px 14px;background:#fafbfc}
.card .label{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#5b6473}
.card .value{font-size:24px;font-weight:650;margin:2px 0}.card .sub{font-size:12px;color:#5b6473}
table{border-collapse:collapse;width:100%;font-size:13.5px;margin:6px 0}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6e9ee;vertical-align:top;
  overflow-wrap:break-word}
thead th{background:#f0f2f5;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.facts th{width:200px;color:#5b6473;font-weight:500}table.facts td{overflow-wrap:anywhere}
caption{text-align:left;font-weight:600;padding:4px 0}
.columns{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:16px;align-items:start}
.why{color:#5b6473;font-size:12px}.bad{color:#b3261e;font-weight:600}.warn{color:#a15c00;font-weight:600}
img{max-width:100%;height:auto;display:block;margin:6px auto}
"""


def render_report(
    metrics: Mapping[str, Any],
    evaluation: Evaluation,
    embeddings: np.ndarray,
    labels: np.ndarray,
    identities: Sequence[str],
    rejected: Sequence[RejectedPhoto],
) -> str:
    """The whole page: summary, distance histograms, DET curve, per-identity table, projection, pairs,
    mislabels."""
    summary = evaluation.summary
    banner = f"<div class='banner'>{_e(metrics['warning'])}</div>" if metrics.get("warning") else ""
    title = f"facetrain enrollment report — {metrics.get('created_at', '')}"
    meta = (
        f"{_e(metrics.get('identities'))} identities · {_e(metrics.get('images_accepted'))} photos · "
        f"{_e(metrics.get('embedder', 'facenet'))} · weights {_e(metrics.get('weights'))} · "
        f"{_e(metrics.get('created_at'))}"
    )
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body><main>"
        f"<h1>facetrain enrollment report</h1><p class='meta'>{meta}</p>{banner}"
        + _summary_section(metrics, summary)
        + _distance_section(evaluation)
        + _det_section(evaluation)
        + _identity_section(summary, metrics.get("identities_excluded", {}))
        + _projection_section(embeddings, labels, identities)
        + _pairs_section(summary)
        + _mislabel_section(summary)
        + _rejected_section(rejected)
        + _settings_section(metrics)
        + "</main></body></html>\n"
    )
