"""facetrain.report: the page renders with its pictures, embeds everything, and keeps names as text."""

from __future__ import annotations

import base64
import io
import time
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pytest
from facetrain.evaluation import evaluate
from facetrain.report import render_report
from PIL import Image

HOSTILE = '<script>alert("pwned")</script>'
NAMES = [HOSTILE, '"><img src=x onerror=alert(1)>', "$\\frac{1}{", "名前 Zoë", "plain"]
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "p", "div", "section",
    "table", "thead", "tbody", "tr", "th", "td", "img", "span", "caption",
}  # fmt: skip


class Page(HTMLParser):
    """Collects tags, img sources, attribute values and visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.images: list[str] = []
        self.attributes: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes += [f"{name}={value}" for name, value in attrs]
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def synthetic(sizes, names, seed=0, spread=0.5):
    rng = np.random.default_rng(seed)
    centres = np.eye(max(32, len(sizes)))[: len(sizes)]
    rows = np.concatenate(
        [centres[i] + spread * rng.normal(size=(n, centres.shape[1])) for i, n in enumerate(sizes)]
    )
    embeddings = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    keys = [f"{names[label]}/{i}.jpg" for i, label in enumerate(labels)]
    return embeddings, labels, keys


def render(names, sizes, warning=None, rejected=(), target_far=0.01, default=1.1, target_fpir=0.05, **extra):
    embeddings, labels, keys = synthetic(sizes, names)
    rejections: dict[str, dict[str, int]] = {}
    for row in rejected:
        rejections.setdefault(row.identity, {}).setdefault(row.reason, 0)
        rejections[row.identity][row.reason] += 1
    evaluation = evaluate(
        embeddings, labels, names, keys, target_far, default, rejections, target_fpir=target_fpir
    )
    metrics = {
        "status": "succeeded",
        "created_at": "2026-01-02T03:04:05+00:00",
        "warning": warning,
        "identities": len(names),
        "identities_excluded": {"gone": "0 usable photos, fewer than min_images_per_identity=1"},
        "images_total": int(sum(sizes)) + len(rejected),
        "images_accepted": int(sum(sizes)),
        "images_rejected": len(rejected),
        "weights": "none",
        "hyperparameters": {"weights": "none", "target_far": target_far, "target_fpir": target_fpir},
        "timings": {"total": 1.5},
        "versions": {"facetrain": "0.1.0"},
        "evaluation": evaluation.summary,
        **extra,
    }
    text = render_report(metrics, evaluation, embeddings, labels, names, list(rejected))
    page = Page()
    page.feed(text)
    return text, page, evaluation


def decoded_png(source: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert source.startswith(prefix)
    data = base64.b64decode(source[len(prefix) :], validate=True)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def rejected_row(identity, photo, reason, message):
    return SimpleNamespace(identity=identity, photo=photo, reason=reason, message=message)


def test_report_has_its_sections_and_decodable_plots():
    rejected = [
        rejected_row("plain", "plain/blurry.jpg", "no_face", "no face found; use a photo …"),
        rejected_row("gone", "gone/x.png", "identity_excluded", "fewer than min_images_per_identity"),
    ]
    text, page, evaluation = render(["a", "b", "c", "plain"], [40, 40, 40, 40], rejected=rejected)
    assert evaluation.summary["threshold_source"] == "calibrated"
    for heading in (
        "Run summary",
        "Genuine and impostor distances",
        "Photos per identity",
        "Embeddings in 2-D (PCA)",
        "Closest identity pairs",
        "Suspected mislabels",
        "Rejected files",
    ):
        assert f"<h2>{heading}</h2>" in text
    assert len(page.images) == 3  # distance histograms, DET curve, projection
    for source in page.images:
        image = decoded_png(source)
        assert image.width > 600 and image.height > 300
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 20  # a drawing, not a blank canvas
    visible = " ".join(page.text)
    assert f"{evaluation.threshold:.4f}" in visible  # the calibrated threshold, with how it was found
    assert evaluation.summary["threshold_note"] in visible
    assert "plain/blurry.jpg" in visible and "no_face: 1" in visible
    assert "excluded: 0 usable photos" in visible


def test_page_is_self_contained():
    text, page, _ = render(["a", "b"], [5, 5])
    assert page.tags <= ALLOWED_TAGS, page.tags - ALLOWED_TAGS
    for attribute in page.attributes:
        name, _, value = attribute.partition("=")
        assert not value.lower().startswith(("http:", "https:", "//", "file:")), attribute
        assert not name.startswith("on"), attribute
    assert "url(" not in text


def test_hostile_identity_names_stay_text():
    rejected = [rejected_row(HOSTILE, f"{HOSTILE}/<b>x</b>.jpg", "no_face", "<i>no face</i>")]
    text, page, _ = render(NAMES, [6, 6, 6, 6, 6], rejected=rejected)
    assert "<script" not in text.lower()
    assert "<img src=x" not in text and "<b>" not in text and "<i>" not in text
    assert page.tags <= ALLOWED_TAGS
    assert not [a for a in page.attributes if a.split("=")[0].startswith("on")]
    visible = " ".join(page.text)
    for name in NAMES:
        assert name in visible  # shown, as text
    assert f"{HOSTILE}/<b>x</b>.jpg" in visible
    assert len(page.images) == 3  # matplotlib drew the names in the legend without choking on '$'


def test_not_for_production_banner():
    text = render(["a", "b"], [4, 4], warning="NOT FOR PRODUCTION: random weights")[0]
    assert "<div class='banner'>NOT FOR PRODUCTION: random weights</div>" in text
    assert "banner'>" not in render(["a", "b"], [4, 4])[0]


def test_suspected_mislabels_are_listed():
    embeddings, labels, keys = synthetic([8, 8], ["a", "b"], spread=0.1)
    embeddings[0] = embeddings[-1]  # a photo of b filed under a
    evaluation = evaluate(embeddings, labels, ["a", "b"], keys, 0.01, 1.1)
    metrics = {"evaluation": evaluation.summary, "identities_excluded": {}}
    page = Page()
    page.feed(render_report(metrics, evaluation, embeddings, labels, ["a", "b"], []))
    visible = " ".join(page.text)
    assert "a/0.jpg" in visible
    assert "None found." not in visible


@pytest.mark.parametrize(("sizes", "what"), [([1], "one photo"), ([3], "one identity"), ([1, 1], "singles")])
def test_degenerate_enrollments_still_render(sizes, what):
    names = [f"p{i}" for i in range(len(sizes))]
    _, page, _ = render(names, sizes)
    assert len(page.images) == 3, what
    for source in page.images:
        decoded_png(source)


def test_many_identities_render_quickly():
    names = [f"person {i:03d}" for i in range(60)]
    # CPU time, not wall-clock: a guard against a render that grows out of bounds with the identities,
    # which must not fail because other processes share the cores (it did under CI's two workers)
    started = time.process_time()
    text, page, evaluation = render(names, [60] * 60, target_far=0.001, target_fpir=0.001)
    seconds = time.process_time() - started
    assert evaluation.summary["per_identity"][59]["identity"] == "person 059"
    assert "no legend for 60 identities" in text
    assert len(page.images) == 3
    assert seconds < 5, seconds


# --- The 1:N search (open set): Evaluation objects built directly from their arrays -----------------------


def open_set_evaluation(non_mated, mated, mated_hit, strangers=(), threshold=0.39, source="data-bound"):
    """An Evaluation whose searches are these arrays, its open_set summary measured on them at `threshold`
    (as the job writes it, checked against the contract); the tables come from a small synthetic run."""
    from facetrain.contract.metrics import EvaluationSummary
    from facetrain.evaluation import Evaluation
    from facetrain.open_set import SearchOutcomes, open_set_summary

    names = ["a", "b", "c", "d"]
    embeddings, labels, keys = synthetic([6, 6, 6, 6], names)
    base = evaluate(embeddings, labels, names, keys, 0.01, 1.1)
    arrays = {
        "non_mated": np.asarray(non_mated, float),
        "stranger_non_mated": np.asarray(strangers, float),
        "mated": np.asarray(mated, float),
        "mated_hit": np.asarray(mated_hit, bool),
    }
    outcomes = SearchOutcomes(gallery_size=4, **arrays)
    summary = {
        **base.summary,
        "threshold": threshold,
        "threshold_source": source,
        "threshold_note": f"set below the nearest non-mated distance ({source})",
        "open_set": open_set_summary(outcomes, threshold, 0.001),
    }
    EvaluationSummary.model_validate(summary)
    evaluation = Evaluation(summary, base.genuine, base.impostor_counts, **arrays)
    page = Page()
    page.feed(
        render_report(
            {"evaluation": summary, "identities_excluded": {}}, evaluation, embeddings, labels, names, []
        )
    )
    return evaluation, page, " ".join(" ".join(page.text).split())


def det_legend(evaluation):
    from facetrain.report_figures import det_plot

    ax = det_plot(evaluation).axes[0]
    return ax, [text.get_text() for text in ax.get_legend().get_texts()]


def test_summary_shows_fpir_and_fnir_with_counts_and_bounds():
    rng = np.random.default_rng(1)
    non_mated = rng.uniform(0.42, 0.64, 72)
    mated = rng.uniform(0.16, 0.30, 24)
    _, page, visible = open_set_evaluation(non_mated, mated, np.ones(24, bool))
    assert "0 % — 0 of 72 non-mated searches returned someone (95 % upper bound 4.995 %)" in visible
    assert "0 % — 0 of 24 mated searches missed their own identity (95 % upper bound 14.25 %)" in visible
    assert "4 enrolled identities" in visible
    assert "0.1 % (target_fpir)" in visible
    assert "0.3900 (data-bound): set below the nearest non-mated distance (data-bound)" in visible
    # The smallest FPIR 72 searches support: 1 - 0.025 ** (1 / 72) = 4.995 %, the upper bound of 0 in 72.
    assert "4.995 %: 72 non-mated searches without a false positive vouch for nothing lower" in visible
    assert "target_fpir 0.1 % needs more searches" in visible
    assert "no known strangers: add photos under _strangers/ to test strangers explicitly" in visible
    assert f"{non_mated.min():.4f} (the threshold is 0.3900)" in visible
    # The cards: FPIR and FNIR, with their counts and upper bounds.
    assert (
        "FPIR: strangers accepted" in visible
        and "0 of 72 non-mated searches; 95 % upper bound 4.995 %" in visible
    )
    assert (
        "FNIR: own people missed" in visible and "0 of 24 mated searches; 95 % upper bound 14.25 %" in visible
    )
    # The DET caption names its floors: 1/(2 x 72) and 1/(2 x 24).
    assert "FPIR at 0.0069 (n = 72 non-mated searches) and FNIR at 0.021 (n = 24 mated searches)" in visible
    assert len(page.images) == 3


def test_known_strangers_are_counted_with_the_errors_they_cause():
    non_mated = np.linspace(0.45, 0.6, 20)
    strangers = [0.30, 0.41, 0.47, 0.52, 0.55]  # the first within the threshold 0.39
    mated, hit = np.linspace(0.15, 0.45, 12), np.array([True] * 11 + [False])
    _, _, visible = open_set_evaluation(non_mated, mated, hit, strangers, source="calibrated")
    assert (
        "5 known stranger photos searched, 1 accepted at the threshold (20 %; 95 % upper bound 71.64 %)"
        in visible
    )
    # FPIR counts every non-mated search, strangers included: 1 of 25; FNIR: 1 missed + 2 beyond 0.39.
    assert "4 % — 1 of 25 non-mated searches returned someone (95 % upper bound" in visible
    assert "25 % — 3 of 12 mated searches missed their own identity" in visible and "lower bound" in visible


def test_det_curve_is_fnir_against_fpir_with_zeros_on_a_floor():
    from facetrain.report_figures import rate_floor

    mated = np.linspace(0.16, 0.30, 24)
    evaluation, _, _ = open_set_evaluation(np.linspace(0.42, 0.64, 72), mated, np.ones(24, bool))
    ax, legend = det_legend(evaluation)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "FPIR" in ax.get_xlabel() and "72 searches" in ax.get_xlabel() and "FNIR" in ax.get_ylabel()
    x_floor, y_floor = rate_floor(72), rate_floor(24)
    assert (x_floor, y_floor) == (1 / 144, 1 / 48)
    (curve,) = [line for line in ax.get_lines() if line.get_label() == "all thresholds"]
    xs, ys = curve.get_xdata(), curve.get_ydata()
    assert xs.min() == pytest.approx(x_floor) and ys.min() == pytest.approx(y_floor)  # the zeros, clipped
    assert xs.max() == 1.0 and ys.max() == 1.0  # nothing accepted / everything accepted
    assert np.all(np.diff(xs) >= 0) and np.all(np.diff(ys) <= 0)
    assert ax.get_xlim()[0] < 0.001  # target_fpir 0.1 % is on the chart
    assert "threshold 0.39 (data-bound): FPIR 0 % (95 % ≤ 4.995 %), FNIR 0 % (95 % ≤ 14.25 %)" in legend
    assert "target_fpir 0.1 %" in legend
    assert "FPIR below 4.995 %: needs more than 72 non-mated searches to show" in legend
    assert "a rate of 0 is drawn at 1/(2n): FPIR 0.0069, FNIR 0.021" in legend


def test_det_curve_marks_the_operating_point_where_the_threshold_puts_it():
    non_mated = np.linspace(0.30, 0.60, 40)  # 4 of them at or below 0.33
    mated = np.linspace(0.10, 0.40, 16)
    evaluation, _, _ = open_set_evaluation(non_mated, mated, np.ones(16, bool), threshold=0.33)
    ax, legend = det_legend(evaluation)
    (point,) = [bars for bars in ax.containers if bars.get_label().startswith("threshold 0.33")]
    open_set = evaluation.summary["open_set"]
    x, y = point.lines[0].get_xdata()[0], point.lines[0].get_ydata()[0]
    assert x == pytest.approx(open_set["fpir"]["rate"]) == pytest.approx(4 / 40)
    assert y == pytest.approx(open_set["fnir"]["rate"]) == pytest.approx(4 / 16)  # 0.34, 0.36, 0.38, 0.40
    assert point.get_label() in legend
    # The bars span the 95 % intervals.
    (x_bar,) = [segments for segments in point.lines[2] if segments.get_segments()[0][0][1] == y]
    (low, _), (high, _) = x_bar.get_segments()[0]
    assert (low, high) == pytest.approx((open_set["fpir"]["lower_95"], open_set["fpir"]["upper_95"]))


def test_det_curve_without_mated_searches_says_why():
    from facetrain.report_figures import det_plot

    evaluation, page, _ = open_set_evaluation([0.5, 0.6], [], [])

    texts = [text.get_text() for text in det_plot(evaluation).axes[0].texts]
    assert texts and "no curve" in texts[0]
    assert len(page.images) == 3


def test_a_summary_without_open_set_still_renders():
    """metrics.json written before open-set evaluation has no open_set: the page says so and still draws."""
    from facetrain.evaluation import Evaluation

    evaluation, _, _ = open_set_evaluation(
        np.linspace(0.42, 0.64, 8), np.linspace(0.1, 0.3, 8), np.ones(8, bool)
    )
    summary = {**evaluation.summary, "open_set": None}
    old = Evaluation(
        summary,
        evaluation.genuine,
        evaluation.impostor_counts,
        evaluation.non_mated,
        evaluation.stranger_non_mated,
        evaluation.mated,
        evaluation.mated_hit,
    )
    embeddings, labels, _ = synthetic([6, 6, 6, 6], ["a", "b", "c", "d"])
    page = Page()
    page.feed(render_report({"evaluation": summary}, old, embeddings, labels, ["a", "b", "c", "d"], []))
    visible = " ".join(page.text)
    assert "not measured: this evaluation predates open-set evaluation" in visible
    assert len(page.images) == 3


def _visible(page: Page) -> str:
    return " ".join(" ".join(page.text).split())


def test_the_run_id_heads_the_page_and_its_run_facts():
    """metrics.json's run_id (the facetrain_run_id hyperparameter start passes): in the title, the line
    under the heading and the run facts; escaped like every value from the data."""
    text, page, _ = render(["a", "b"], [3, 3], run_id="weekly-7")
    assert "<title>facetrain enrollment report — run weekly-7 — 2026-01-02T03:04:05+00:00</title>" in text
    assert '<p class="meta">run weekly-7 · 2 identities' in text
    assert "<tr><th>run id</th><td>weekly-7</td></tr>" in text
    hostile, page, _ = render(["a", "b"], [3, 3], run_id=HOSTILE)
    assert HOSTILE not in hostile and "script" not in page.tags


@pytest.mark.parametrize("absent", [{}, {"run_id": None}], ids=["older-metrics", "job-without-run-id"])
def test_a_job_without_a_run_id_shows_none(absent):
    text, _, _ = render(["a", "b"], [3, 3], **absent)
    assert "run id" not in text and "— run " not in text and '<p class="meta">2 identities' in text


def test_the_files_skipped_as_no_photos_are_noted_apart_from_the_photos():
    for skipped, note in ((2, "; 2 files skipped, not photos"), (1, "; 1 file skipped, not photos")):
        _, page, _ = render(["a", "b"], [3, 3], files_skipped=skipped)
        assert f"of 6; 0 rejected{note}" in _visible(page)
    _, page, _ = render(["a", "b"], [3, 3])
    assert "skipped" not in _visible(page)
