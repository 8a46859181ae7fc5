"""run.json of `facetrain run`: the writer's document reads back; another format, or a damaged file, is
refused naming the file and the field."""

from __future__ import annotations

import json

import pytest
from facetrain.contract.documents import DocumentError
from facetrain_offline.run_summary import (
    Notification,
    RunSummary,
    StateVisitRecord,
    read_run_summary,
    write_run_summary,
)


def _summary() -> RunSummary:
    return RunSummary(
        status="FAILED",
        trigger="console",
        executions_started=1,
        training_jobs_started=0,
        training_job_name=None,
        training_job_status=None,
        training_job_exit_code=None,
        input={"hyperparameters": {"weights": "none"}},
        bucket="facetrain-data",
        results_prefix="results/",
        executions=[],
        history=[
            StateVisitRecord(state="Validate", entered="2026-12-03T10:00:00+00:00", exited=None, seconds=None)
        ],
        lambda_invocations=2,
        notifications=[Notification(Subject="facetrain retraining failed", Message="InvalidInput: …")],
        error="InvalidInput",
        failure_reason="no photos",
        wall_seconds=1.5,
    )


def test_the_writers_document_reads_back_the_same(tmp_path) -> None:
    path = write_run_summary(_summary(), tmp_path)
    data = json.loads(path.read_text())
    assert path.name == "run.json" and list(data)[:3] == ["format", "version", "status"]
    assert data["format"] == "facetrain.offline-run" and data["version"] == 1
    assert read_run_summary(path) == _summary()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, r"format 'facetrain.offline-run' version 2, not facetrain.offline-run version 1"),
        ({"status": "DONE"}, r"does not fit facetrain.offline-run version 1: status: Input should be"),
        ({"surprise": 1}, r"surprise: Extra inputs are not permitted"),
    ],
)
def test_another_version_or_a_field_that_does_not_fit_is_named(tmp_path, change, message) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({**_summary().model_dump(mode="json"), **change}))
    with pytest.raises(DocumentError, match=message) as caught:
        read_run_summary(path)
    assert str(path) in str(caught.value)


def test_a_file_that_is_not_json_is_named(tmp_path) -> None:
    path = tmp_path / "run.json"
    path.write_text("{cut short")
    with pytest.raises(DocumentError, match=r"run\.json is not JSON"):
        read_run_summary(path)
