"""The terminal's last lines name each identity the published run left out, with its photos' reasons, read
from the run's metrics.json as copied into the output folder (facetrain_offline.left_out). The whole
`facetrain run` is in tests/offline/test_left_out_run.py."""

from __future__ import annotations

import json
from pathlib import Path

from facetrain_offline.left_out import left_out_lines
from support.testkit import model_files

WHY = "0 usable photos of 2 (no_face: 1, not_an_image: 1), fewer than min_images_per_identity=1; add photos"
COPIED = ["final_mean_embeddings.csv", "runs/r1/metrics.json", "runs/r1/rejected.csv", "latest.json"]


def _copied_metrics(out: Path, excluded: dict[str, str]) -> None:
    metrics = json.loads(model_files({"alice": 2, "bob": 2})["metrics.json"])
    metrics["identities_excluded"] = excluded
    (out / "runs" / "r1").mkdir(parents=True)
    (out / "runs" / "r1" / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")


def test_one_line_per_left_out_identity_with_its_photos_reasons(tmp_path) -> None:
    _copied_metrics(tmp_path, {"new_hire": WHY, "zoe": WHY})
    assert left_out_lines(tmp_path, COPIED) == [
        f"left   new_hire not enrolled: {WHY}",
        f"left   zoe not enrolled: {WHY}",
    ]


def test_nothing_when_nobody_was_left_out_or_nothing_was_copied(tmp_path) -> None:
    _copied_metrics(tmp_path, {})
    assert left_out_lines(tmp_path, COPIED) == []
    assert left_out_lines(tmp_path, []) == []


def test_a_metrics_file_that_cannot_be_read_is_said_not_skipped(tmp_path) -> None:
    _copied_metrics(tmp_path, {"new_hire": WHY})
    (tmp_path / "runs" / "r1" / "metrics.json").write_text("{not json", encoding="utf-8")
    (line,) = left_out_lines(tmp_path, COPIED)
    assert line.startswith(f"left   cannot say who was left out: {tmp_path / 'runs/r1/metrics.json'} cannot")
    assert "not JSON" in line
