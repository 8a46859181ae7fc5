"""The retention sweep on a versioned bucket (moto): old runs go with every version and delete marker;
the published run, the runs kept runs reuse, recent runs and everything outside runs/ stay; a second
sweep changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from facetrain_lambdas import retention_sweep
from facetrain_lambdas.function_settings import StackConfigurationError
from facetrain_lambdas.retention_sweep import (
    RetentionSettings,
    RunAge,
    RunsNotSwept,
    SweepRefused,
    plan_sweep,
    sweep_runs,
)
from facetrain_offline.lambda_runtime import LambdaContext
from handler_fixtures import BUCKET, latest_document, run_record

EVENT = json.loads((Path(__file__).resolve().parents[2] / "events" / "retention-sweep.json").read_text())
# moto stamps every object with the real time: sweeping "200 days from now" makes every LastModified
# 200 days old, while run.json's created_at places each run where the test wants it.
NOW = datetime.now(UTC) + timedelta(days=200)
DAYS = 90
# Everything outside the runs: the current results, photos, settings, receipts, a stray object
# (latest.json: the fixture `history`).
OUTSIDE_RUNS = (
    "results/final_mean_embeddings.csv",
    "results/rules.py",
    "results/saved_embeddings.pkl",
    "results/report.html",
    "results/runs-notes.txt",
    "results/runs/stray.txt",
    "face_imgs/alice/000.jpg",
    "face_imgs/bob/000.jpg",
    "config/constants.py",
    "erasures/2025-06-01-abc.json",
)


def _days_ago(days: int) -> str:
    return (NOW - timedelta(days=days)).isoformat(timespec="seconds")


def _put(s3, key: str, body: bytes = b"x") -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def _run(s3, run_id: str, created_days_ago: int, previous_run_id: str | None = None) -> None:
    """A run folder as validate, SageMaker and publish leave it, with noncurrent versions and a marker."""
    prefix = f"results/runs/{run_id}/"
    record = run_record(
        run_id=run_id, created_at=_days_ago(created_days_ago), previous_run_id=previous_run_id
    )
    _put(s3, f"{prefix}run.json", record.model_dump_json().encode())
    for name in (
        "manifest.json",
        "saved_embeddings.pkl",
        "report.html",
        "checkpoints/photo-outcomes-1-0.pkl",
    ):
        _put(s3, prefix + name, b"first")
    _put(s3, f"{prefix}saved_embeddings.pkl", b"rewritten")  # a noncurrent version
    _put(s3, f"{prefix}training/facetrain-{run_id}/output/model.tar.gz", b"tar")
    s3.delete_object(Bucket=BUCKET, Key=f"{prefix}report.html")  # a delete marker


def _versions(s3, prefix: str = "") -> set[tuple[str, str]]:
    """(key, version id) of every version and delete marker under prefix."""
    found = set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix):
        for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            found.add((entry["Key"], entry["VersionId"]))
    return found


@pytest.fixture
def versioned(s3):
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for key in OUTSIDE_RUNS:
        _put(s3, key, b"old")
        _put(s3, key, b"current")
    s3.delete_object(Bucket=BUCKET, Key="face_imgs/bob/000.jpg")
    return s3


@pytest.fixture
def history(versioned):
    """Runs of every kind; latest.json publishes old-published."""
    s3 = versioned
    _run(s3, "old-published", 300)
    _run(s3, "old-1", 120)
    _run(s3, "old-2", DAYS + 1)
    _run(s3, "old-reused", 150)
    _run(s3, "old-reused-by-old", 160)
    _run(s3, "old-reusing", 140, previous_run_id="old-reused-by-old")  # goes: so does what it reused
    _run(s3, "recent-1", 10, previous_run_id="old-reused")
    _run(s3, "recent-edge", DAYS - 1)
    _put(s3, "results/runs/refused-old/problems.json", b"{}")  # no run.json: LastModified (200 days)
    s3.put_object(
        Bucket=BUCKET,
        Key="results/latest.json",
        Body=json.dumps(latest_document(run_id="old-published")).encode(),
    )
    return s3


def test_old_runs_go_with_every_version_the_rest_stays_and_a_second_sweep_changes_nothing(history) -> None:
    s3 = history
    outside = _versions(s3) - _versions(s3, "results/runs/") | _versions(s3, "results/runs/stray.txt")
    kept = {"old-published", "old-reused", "recent-1", "recent-edge"}
    kept_versions = {v for run in kept for v in _versions(s3, f"results/runs/{run}/")}
    swept = {"old-1", "old-2", "old-reused-by-old", "old-reusing", "refused-old"}
    expected_deleted = sum(len(_versions(s3, f"results/runs/{run}/")) for run in swept)

    result = sweep_runs(s3, BUCKET, "results/", DAYS, now=NOW)

    assert sorted(result.swept) == sorted(swept)
    assert result.versions_deleted == expected_deleted == 4 * 8 + 1
    for run in swept:
        assert _versions(s3, f"results/runs/{run}/") == set(), run
    assert {v for run in kept for v in _versions(s3, f"results/runs/{run}/")} == kept_versions
    assert _versions(s3) == outside | kept_versions  # nothing outside the old runs was touched
    assert (result.published_run_id, result.kept_published, result.kept_reused) == (
        "old-published",
        ["old-published"],
        ["old-reused"],
    )
    assert (result.runs, result.kept_recent, result.left_for_next_sweep) == (9, 2, [])

    again = sweep_runs(s3, BUCKET, "results/", DAYS, now=NOW)
    assert (again.swept, again.versions_deleted, again.runs) == ([], 0, 4)
    assert _versions(s3) == outside | kept_versions


def test_a_run_without_a_run_record_ages_from_its_newest_change(versioned) -> None:
    s3 = versioned
    _put(s3, "results/runs/refused/problems.json", b"{}")
    _put(s3, "results/runs/unreadable/run.json", b"not json")
    now = datetime.now(UTC)
    assert sweep_runs(s3, BUCKET, "results/", 3, now=now).swept == []  # just written: recent
    result = sweep_runs(s3, BUCKET, "results/", 3, now=now + timedelta(days=4))
    assert result.swept == ["refused", "unreadable"]


def test_a_run_record_of_another_version_still_ages_by_created_at(versioned) -> None:
    _put(
        versioned,
        "results/runs/v1/run.json",
        json.dumps({"version": 1, "created_at": _days_ago(100)}).encode(),
    )
    _put(
        versioned,
        "results/runs/v1-new/run.json",
        json.dumps({"version": 1, "created_at": _days_ago(1)}).encode(),
    )
    assert sweep_runs(versioned, BUCKET, "results/", DAYS, now=NOW).swept == ["v1"]


def test_nothing_published_every_old_run_goes(versioned) -> None:
    _run(versioned, "old-1", 120)
    _run(versioned, "recent-1", 1, previous_run_id="old-1")
    result = sweep_runs(versioned, BUCKET, "results/", DAYS, now=NOW)
    assert result.published_run_id is None
    # kept runs' reuse is honoured with nothing published too
    assert (result.swept, result.kept_reused) == ([], ["old-1"])
    _run(versioned, "old-2", 120)
    assert sweep_runs(versioned, BUCKET, "results/", DAYS, now=NOW).swept == ["old-2"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "is not JSON, so the published run is unknown"),
        (json.dumps({"format": "other", "version": 1}).encode(), "latest.json"),
    ],
)
def test_a_latest_json_that_cannot_be_read_stops_the_sweep_before_any_deletion(
    history, body: bytes, message: str
) -> None:
    _put(history, "results/latest.json", body)
    before = _versions(history)
    with pytest.raises(SweepRefused, match=message) as refused:
        sweep_runs(history, BUCKET, "results/", DAYS, now=NOW)
    assert "deletes nothing until a retraining publishes a run" in str(refused.value)
    assert _versions(history) == before


def test_a_sweep_out_of_time_deletes_nothing_more_and_names_the_runs_left(history) -> None:
    before = _versions(history)
    result = sweep_runs(history, BUCKET, "results/", DAYS, now=NOW, deadline=0.0)
    assert result.swept == [] and result.versions_deleted == 0
    assert len(result.left_for_next_sweep) == 5
    assert _versions(history) == before


def test_versions_s3_refuses_to_delete_are_named_after_the_other_runs_are_swept(aws: None) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)  # versioned, with object lock
    _run(s3, "old-1", 120)
    _run(s3, "old-locked", 120)
    s3.put_object(
        Bucket=BUCKET,
        Key="results/runs/old-locked/manifest.json",
        Body=b"held",
        ObjectLockLegalHoldStatus="ON",
    )
    with pytest.raises(RunsNotSwept) as failed:
        sweep_runs(s3, BUCKET, "results/", DAYS, now=NOW)
    message = str(failed.value)
    assert message.startswith("1 old run not deleted (1 other was, ")
    assert "run old-locked: S3 did not delete 1 object version in s3://" in message
    assert "results/runs/old-locked/manifest.json" in message
    assert _versions(s3, "results/runs/old-1/") == set()


def test_the_reuse_rule_is_not_transitive() -> None:
    cutoff = NOW - timedelta(days=DAYS)
    ages = [
        RunAge("recent", NOW, "old-a"),
        RunAge("old-a", NOW - timedelta(days=200), "old-b"),
        RunAge("old-b", NOW - timedelta(days=300), None),
    ]
    plan = plan_sweep(ages, None, cutoff)
    assert (plan.expired, plan.kept_reused, plan.kept_recent) == (["old-b"], ["old-a"], ["recent"])


def test_run_history_days_below_three_is_refused(versioned) -> None:
    with pytest.raises(StackConfigurationError, match="RUN_HISTORY_DAYS"):
        RetentionSettings.from_env({"DATA_BUCKET": BUCKET, "RUN_HISTORY_DAYS": "2"})
    with pytest.raises(ValueError, match="run_history_days is 2, at least 3"):
        sweep_runs(versioned, BUCKET, "results/", 2, now=NOW)


def test_handler_sweeps_with_the_stack_settings_and_logs_run_ids_and_counts_only(
    versioned, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DATA_BUCKET", BUCKET)
    monkeypatch.setenv("RESULTS_PREFIX", "results/")
    monkeypatch.setenv("RUN_HISTORY_DAYS", "90")
    real_now = datetime.now(UTC)
    for run_id, created in (("2024-old", real_now - timedelta(days=91)), ("new", real_now)):
        record = run_record(run_id=run_id, created_at=created.isoformat())
        _put(versioned, f"results/runs/{run_id}/run.json", record.model_dump_json().encode())
        _put(versioned, f"results/runs/{run_id}/manifest.json", b'{"face_imgs/alice/000.jpg": 1}')

    result = retention_sweep.handler(EVENT, LambdaContext("retention-sweep"))

    assert (result["swept"], result["versions_deleted"], result["kept_recent"]) == (["2024-old"], 2, 1)
    (summary,) = [entry.__dict__ for entry in caplog.records if entry.getMessage() == "retention sweep"]
    assert summary["swept"] == ["2024-old"] and summary["scheduled_time"] == EVENT["scheduled_time"]
    logged = " ".join(str(entry.__dict__) for entry in caplog.records)  # messages and their extra keys
    assert "2024-old" in logged and "face_imgs" not in logged and "alice" not in logged
