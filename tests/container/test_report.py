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


def render(names, sizes, warning=None, rejected=(), target_far=0.01, default=1.1):
    embeddings, labels, keys = synthetic(sizes, names)
    rejections: dict[str, dict[str, int]] = {}
    for row in rejected:
        rejections.setdefault(row.identity, {}).setdefault(row.reason, 0)
        rejections[row.identity][row.reason] += 1
    evaluation = evaluate(embeddings, labels, names, keys, target_far, default, rejections)
    metrics = {
        "status": "succeeded",
        "created_at": "2026-01-02T03:04:05+00:00",
        "warning": warning,
        "identities": len(names),
        "identities_excluded": {"gone": "0 usable photo(s), fewer than min_images_per_identity=1"},
        "images_total": int(sum(sizes)) + len(rejected),
        "images_accepted": int(sum(sizes)),
        "images_rejected": len(rejected),
        "weights": "none",
        "hyperparameters": {"weights": "none", "target_far": target_far},
        "timings": {"total": 1.5},
        "versions": {"facetrain": "0.1.0"},
        "evaluation": evaluation.summary,
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
    assert "excluded: 0 usable photo(s)" in visible


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
    started = time.perf_counter()
    text, page, evaluation = render(names, [60] * 60, target_far=0.001)
    seconds = time.perf_counter() - started
    assert evaluation.summary["per_identity"][59]["identity"] == "person 059"
    assert "no legend for 60 identities" in text
    assert len(page.images) == 3
    assert seconds < 5, seconds
