"""`report.html`: one self-contained page about an enrollment run (plots embedded as PNG data URIs).

The page is templates/report.html.j2 (its CSS: templates/report.css), rendered by jinja2 with autoescape
on, so every text that comes from the data (identity names, photo keys, messages) is escaped; the page
loads nothing from anywhere. The figures are report_figures'. This module turns the metrics and the
evaluation into the template's rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import jinja2
import numpy as np

from .contract.counting import counted
from .evaluation import Evaluation
from .report_figures import (
    LEGEND_IDENTITIES,
    PROJECTED_POINTS,
    det_plot,
    distance_plot,
    percent,
    png_data_uri,
    projection_plot,
    rate_floor,
    searches,
)

TEMPLATES = Path(__file__).with_name("templates")
REJECTED_LISTED = 200
DISTANCE_FIGURES = ("count", "min", "p50", "p95", "max", "mean")


class RejectedPhoto(Protocol):
    """A rejected.csv row (enrollment.RejectedRow)."""

    identity: str
    photo: str
    reason: str
    message: str


def number(value: object, digits: int = 4) -> str:
    """A figure as the page shows it: floats to `digits` decimals, "—" for none."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    environment.filters.update(num=number, pct=percent)
    return environment


def _rate_card(label: str, rate: Mapping[str, Any] | None, trials: str) -> tuple[str, str, str]:
    if not rate or rate.get("rate") is None:
        return (label, "—", f"no {trials}")
    return (
        label,
        percent(rate["rate"]),
        f"{rate['errors']} of {rate['trials']} {trials}; 95 % upper bound {percent(rate['upper_95'])}",
    )


def _cards(metrics: Mapping[str, Any], summary: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    open_set = summary.get("open_set") or {}
    return [
        (
            "identities enrolled",
            str(metrics.get("identities")),
            f"{len(metrics.get('identities_excluded', {}))} excluded",
        ),
        (
            "photos used",
            str(metrics.get("images_accepted")),
            f"of {metrics.get('images_total')}; {metrics.get('images_rejected')} rejected"
            + _skipped_note(metrics),
        ),
        (
            "identification accuracy",
            percent(summary.get("identification_accuracy")),
            f"leave-one-out, {summary.get('photos_evaluated')} photos",
        ),
        ("accept threshold", number(summary.get("threshold")), str(summary.get("threshold_source"))),
        _rate_card("FPIR: strangers accepted", open_set.get("fpir"), "non-mated searches"),
        _rate_card("FNIR: own people missed", open_set.get("fnir"), "mated searches"),
    ]


def _skipped_note(metrics: Mapping[str, Any]) -> str:
    """The photos card's note on the files skipped as no photos (files_skipped; '' when none): not among
    the photos it counts, listed with the rejected files."""
    skipped = metrics.get("files_skipped") or 0
    return f"; {counted(skipped, 'file')} skipped, not photos" if skipped else ""


def left_out_summary(metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """The identities not enrolled, for the run summary: a caption saying what it meant for the run, and
    one (identity, why, with its photos' reasons) row each; None when everyone was enrolled."""
    excluded = metrics.get("identities_excluded") or {}
    if not excluded:
        return None
    count = len(excluded)
    required = (metrics.get("hyperparameters") or {}).get("require_all_identities")
    outcome = (
        "require_all_identities=true failed the run: nothing is published"
        if required
        else "the others were enrolled (require_all_identities=true would fail the run instead)"
    )
    return {
        "caption": f"{counted(count, 'identity', 'identities')} left out, not enrolled: {outcome}",
        "rows": sorted(excluded.items()),
    }


def rate_sentence(rate: Mapping[str, Any] | None, trials: str, outcome: str) -> str:
    """A rate as a sentence, e.g. '0 % — 0 of 24 non-mated searches returned someone (95 % upper bound
    14.25 %)'."""
    if not rate or not rate.get("trials"):
        return f"not measured: no {trials}"
    lower = f", lower bound {percent(rate['lower_95'])}" if rate["errors"] else ""
    return (
        f"{percent(rate['rate'])} — {rate['errors']} of {rate['trials']} {trials} {outcome} "
        f"(95 % upper bound {percent(rate['upper_95'])}{lower})"
    )


def strangers_sentence(open_set: Mapping[str, Any]) -> str:
    """The known strangers' line: how many were searched and how many the threshold let in."""
    strangers = open_set.get("known_strangers")
    if not strangers or not strangers.get("trials"):
        return "no known strangers: add photos under _strangers/ to test strangers explicitly"
    return (
        f"{counted(strangers['trials'], 'known stranger photo')} searched, {strangers['errors']} accepted at "
        f"the threshold ({percent(strangers['rate'])}; 95 % upper bound {percent(strangers['upper_95'])})"
    )


def _open_set_facts(summary: Mapping[str, Any]) -> list[tuple[str, object]]:
    """The 1:N search at the published threshold, line by line (metrics.json evaluation.open_set)."""
    open_set = summary.get("open_set")
    if not open_set:
        return [("1:N search", "not measured: this evaluation predates open-set evaluation")]
    fpir = open_set["fpir"]
    smallest = open_set.get("smallest_supported_fpir")
    target = open_set["target_fpir"]
    if smallest is None:
        supported = "none: there was no non-mated search"
    else:
        supported = (
            f"{percent(smallest)}: {fpir['trials']} non-mated searches without a false positive vouch for "
            "nothing lower (their 95 % upper bound)"
        )
        if target < smallest:
            supported += f"; target_fpir {percent(target)} needs more searches (more people or strangers)"
    nearest = open_set.get("nearest_non_mated_distance")
    threshold = summary.get("threshold")
    closest = "—" if nearest is None else f"{number(nearest)} (the threshold is {number(threshold)})"
    return [
        (
            "gallery size",
            f"{open_set['gallery_size']} enrolled identities: each search compares a photo with all",
        ),
        ("FPIR", rate_sentence(fpir, "non-mated searches", "returned someone")),
        ("FNIR", rate_sentence(open_set["fnir"], "mated searches", "missed their own identity")),
        (
            "threshold",
            f"{number(threshold)} ({summary.get('threshold_source')}): {summary.get('threshold_note')}",
        ),
        ("target FPIR", f"{percent(target)} (target_fpir)"),
        ("smallest FPIR supported", supported),
        ("known strangers", strangers_sentence(open_set)),
        ("nearest non-mated search", closest),
    ]


def _run_facts(metrics: Mapping[str, Any], summary: Mapping[str, Any]) -> list[tuple[str, object]]:
    run_id = metrics.get("run_id")  # None: a job started without it, which the page does not mention
    return [
        *([("run id", run_id)] if run_id else []),
        ("status", metrics.get("status")),
        ("created at", metrics.get("created_at")),
        ("embedder", f"{metrics.get('embedder', 'facenet')} ({metrics.get('embedding_dim', 512)}-D)"),
        ("weights", f"{metrics.get('weights')} (sha256 {metrics.get('weights_sha256') or '—'})"),
        ("device", metrics.get("device")),
        (
            "photos/s",
            metrics.get("images_per_second")
            if metrics.get("images_per_second") is not None
            else "— (no photo examined: every embedding reused)",
        ),
        ("dataset fingerprint", metrics.get("dataset_fingerprint")),
        (
            "false accepts (per pair)",
            f"{summary.get('false_accepts')} of {summary['impostor']['count']} impostor pairs "
            f"({percent(summary.get('false_accept_rate'))}; target_far {percent(summary.get('target_far'))})",
        ),
        (
            "false rejects (per pair)",
            f"{summary.get('false_rejects')} of {summary['genuine']['count']} genuine pairs",
        ),
        ("method", summary.get("method")),
    ]


def _identity_rows(summary: Mapping[str, Any], excluded: Mapping[str, str]) -> list[dict[str, Any]]:
    """The per-identity table: flag `bad` when a photo sits nearer someone else (negative margin), `warn`
    when some photo is not identified as its own."""
    rows = []
    for row in summary["per_identity"]:
        flag = ""
        if row["margin"] is not None and row["margin"] < 0:
            flag = "bad"
        elif row["loo_accuracy"] is not None and row["loo_accuracy"] < 1:
            flag = "warn"
        reasons = ", ".join(f"{reason}: {count}" for reason, count in row["rejections"].items())
        excluded_why = None if row["enrolled"] else excluded.get(row["identity"], "no usable photo")
        rows.append({**row, "flag": flag, "reasons": reasons, "excluded": excluded_why})
    return rows


def _floors(evaluation: Evaluation) -> dict[str, Any]:
    """What the DET curve's caption says about its axes: the searches' counts and where 0 is drawn."""
    outcomes = searches(evaluation)
    non_mated, mated = outcomes.all_non_mated.size, outcomes.mated.size
    return {
        "non_mated": non_mated,
        "mated": mated,
        "fpir": f"{rate_floor(non_mated):.2g}",
        "fnir": f"{rate_floor(mated):.2g}",
    }


def render_report(
    metrics: Mapping[str, Any],
    evaluation: Evaluation,
    embeddings: np.ndarray,
    labels: np.ndarray,
    identities: Sequence[str],
    rejected: Sequence[RejectedPhoto],
) -> str:
    """The whole page: summary, distance histograms, DET curve, per-identity table, projection, pairs,
    mislabels, rejected files, settings."""
    summary = evaluation.summary
    listed = rejected[:REJECTED_LISTED]
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            metrics=metrics,
            summary=summary,
            cards=_cards(metrics, summary),
            left_out=left_out_summary(metrics),
            open_set_facts=_open_set_facts(summary),
            floors=_floors(evaluation),
            run_facts=_run_facts(metrics, summary),
            figures={
                "distances": png_data_uri(distance_plot(evaluation)),
                "det": png_data_uri(det_plot(evaluation)),
                "projection": png_data_uri(projection_plot(embeddings, labels, identities)),
            },
            distance_rows=[
                [kind, *(number(summary[kind].get(name)) for name in DISTANCE_FIGURES)]  # type: ignore[union-attr]
                for kind in ("genuine", "impostor")
            ],
            identity_rows=_identity_rows(summary, metrics.get("identities_excluded", {})),
            identities=len(identities),
            projected_points=PROJECTED_POINTS,
            legend_identities=LEGEND_IDENTITIES,
            pair_rows=[
                [pair["identities"][0], pair["identities"][1], number(pair["distance"])]
                for pair in summary["closest_pairs"]
            ],
            mislabel_rows=[
                [
                    item["photo"],
                    item["identity"],
                    number(item["distance_to_own_mean"]),
                    item["closest_identity"],
                    number(item["distance_to_closest"]),
                ]
                for item in summary["suspected_mislabels"]
            ],
            rejected_rows=[[r.photo, r.reason, r.message] for r in listed],
            rejected_more=len(rejected) - len(listed),
        )
    )
