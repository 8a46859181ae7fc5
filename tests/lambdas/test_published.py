"""latest.json (facetrain_lambdas.published): one model for publish, validate and the offline runner."""

from __future__ import annotations

import json

import pytest
from facetrain_lambdas.errors import InvalidInput
from facetrain_lambdas.layout import RunLayout
from facetrain_lambdas.published import parse_latest, read_published
from handler_fixtures import BUCKET
from handler_fixtures import latest_document as _latest

LAYOUT = RunLayout(bucket=BUCKET, results_prefix="results/", run_id="r2")


def _put(s3, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key="results/latest.json", Body=body)


def test_the_writers_document_reads_back_the_same(s3) -> None:
    document = _latest()
    assert list(document)[:3] == ["format", "version", "run_id"]
    assert document["format"] == "facetrain.latest" and document["version"] == 2
    _put(s3, json.dumps(document).encode())
    latest = read_published(s3, LAYOUT)
    assert latest is not None and latest.model_dump(mode="json") == document


def test_nothing_published_and_not_json_read_as_none(s3) -> None:
    assert read_published(s3, LAYOUT) is None
    _put(s3, b"{not json")
    assert read_published(s3, LAYOUT) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other.tool"}, "format 'other.tool' version 2, not facetrain.latest version 2"),
        ({"version": 3}, "format 'facetrain.latest' version 3, not facetrain.latest version 2"),
    ],
)
def test_another_format_or_version_is_refused_with_what_to_do(s3, change, message) -> None:
    _put(s3, json.dumps(_latest(**change)).encode())
    with pytest.raises(InvalidInput) as caught:
        read_published(s3, LAYOUT)
    [problem] = caught.value.problems
    assert f"s3://{BUCKET}/results/latest.json is {message}" in problem and "move it aside" in problem


def test_a_document_missing_fields_names_them() -> None:
    document = _latest()
    del document["run_files"]
    with pytest.raises(
        InvalidInput,
        match=r"latest.json does not fit facetrain.latest version 2: run_files: Field required: .*aside",
    ):
        parse_latest(document, "latest.json")
    with pytest.raises(InvalidInput, match="format None version None"):
        parse_latest(["a", "list"], "latest.json")
