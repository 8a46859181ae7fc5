"""facetrain.contract.metrics: metrics.json's one model, for the job (writer) and publish (reader)."""

from __future__ import annotations

import json

import pytest
from facetrain.contract.metrics import MetricsError, parse_metrics, read_metrics
from support.testkit import model_files

PHOTOS = {"alice": 3, "bob": 2}


def _document() -> dict:
    return json.loads(model_files(PHOTOS)["metrics.json"])


def test_a_written_document_reads_back() -> None:
    document = _document()
    metrics = parse_metrics(document)
    assert metrics.model_dump(mode="json") == document
    assert metrics.evaluation is not None and metrics.evaluation.threshold == 1.1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "format 'facetrain.metrics' version 2, not facetrain.metrics version 1"),
        ({"format": None}, "format None version 1"),
    ],
)
def test_another_format_or_version_is_refused_with_what_to_do(change: dict, message: str) -> None:
    with pytest.raises(MetricsError, match=message) as caught:
        parse_metrics({**_document(), **change})
    assert "rebuild and redeploy" in str(caught.value)


def test_fields_that_do_not_fit_are_named() -> None:
    bad = {**_document(), "images_total": "many", "surprise": 1}
    with pytest.raises(MetricsError, match=r"images_total: .*surprise: Extra inputs are not permitted"):
        parse_metrics(bad)
    with pytest.raises(MetricsError, match="not JSON"):
        read_metrics("{")
