"""`facetrain run`: the whole workflow offline, from template.yaml, with the real job as a local process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from facetrain.contract.enrollment_csv import parse_csv
from facetrain.contract.rules_file import load_rules
from facetrain_offline.cli import main
from facetrain_offline.run_summary import RunSummary, read_run_summary

pytestmark = pytest.mark.slow


def _photos(shared_data: Path, target: Path, dataset: str = "faces-small") -> Path:
    """Copy a data set's identity folders (not its README) to a folder of our own."""
    for identity in sorted(p for p in (shared_data / dataset).iterdir() if p.is_dir()):
        shutil.copytree(identity, target / identity.name)
    return target


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, RunSummary]:
    code = main(["run", *args])
    out = capsys.readouterr().out
    run_json = read_run_summary(Path(args[args.index("--out") + 1]) / "run.json")
    return code, out, run_json


def test_run_publishes_results_and_a_run_summary(shared_data, tmp_path, capsys):
    images = _photos(shared_data, tmp_path / "photos")
    out = tmp_path / "out"

    code, screen, summary = _run(capsys, str(images), "--out", str(out), "-p", "weights=none")

    assert code == 0, screen
    assert summary.status == "SUCCEEDED"
    assert summary.executions_started == 1
    assert summary.training_jobs_started == 1
    assert summary.training_job_name
    states = [visit.state for visit in summary.history]
    assert states[:2] == ["RouteTrigger", "Validate"] and "Publish" in states and "NotifySuccess" in states
    assert all(visit.seconds is not None and visit.seconds >= 0 for visit in summary.history)
    # The published files, as they land at the results prefix.
    rows = parse_csv((out / "final_mean_embeddings.csv").read_text(), 512)
    assert sorted(identity for identity, _, _ in rows) == sorted(p.name for p in images.iterdir())
    rules = load_rules((out / "rules.py").read_text())
    assert rules["not_for_production"] is True
    latest = json.loads((out / "latest.json").read_text())
    assert latest["training_job_name"] == summary.training_job_name
    assert (out / "runs" / latest["run_id"] / "metrics.json").is_file()
    # Progress was shown: states, the job's status and its photo count.
    assert "state  Validate" in screen and "job    " in screen and "progress: 4/4 photos" in screen
    assert "NOT FOR PRODUCTION" in screen


def test_unusable_photos_fail_with_the_containers_reason(shared_data, tmp_path, capsys):
    images = tmp_path / "photos"
    for person in ("ann", "bob"):
        (images / person).mkdir(parents=True)
        (images / person / "1.jpg").write_text("this is not a photo\n")
    out = tmp_path / "out"

    code, screen, summary = _run(capsys, str(images), "--out", str(out), "-p", "weights=none")

    assert code == 1
    assert summary.status == "FAILED"
    assert summary.training_jobs_started == 1
    assert "No identity could be enrolled" in summary.failure_reason
    assert "No identity could be enrolled" in screen
    assert not (out / "final_mean_embeddings.csv").exists()


def test_an_empty_folder_fails_at_validation_and_starts_no_job(tmp_path, capsys):
    images = tmp_path / "photos"
    images.mkdir()
    out = tmp_path / "out"

    code, screen, summary = _run(capsys, str(images), "--out", str(out), "-p", "weights=none")

    assert code == 1
    assert summary.status == "FAILED"
    assert summary.training_jobs_started == 0
    assert summary.error == "InvalidInput"
    assert [v.state for v in summary.history][:2] == ["RouteTrigger", "Validate"]
    assert "StartTrainingJob" not in [visit.state for visit in summary.history]
    assert "InvalidInput" in screen
    (notification,) = summary.notifications
    assert notification.Subject == "facetrain retraining failed" and "InvalidInput" in notification.Message
    assert "notify facetrain retraining failed" in screen


def test_state_keeps_published_results_between_runs(shared_data, tmp_path, capsys):
    images = _photos(shared_data, tmp_path / "photos")
    state = tmp_path / "state"

    first_code, _, first = _run(capsys, str(images), "--out", str(tmp_path / "out1"), "--state", str(state))
    assert first_code == 0
    first_latest = json.loads((tmp_path / "out1" / "latest.json").read_text())

    # A failing second run (empty folder) changes nothing that was published.
    empty = tmp_path / "empty"
    empty.mkdir()
    failed_code, _, failed = _run(capsys, str(empty), "--out", str(tmp_path / "out2"), "--state", str(state))
    assert failed_code == 1 and failed.training_jobs_started == 0
    saved_latest = state / "bucket" / "results" / "latest.json"
    assert json.loads(saved_latest.read_text())["run_id"] == first_latest["run_id"]

    # A third run on fewer photos sees the first run's files and publishes its own beside them.
    shutil.rmtree(images / sorted(p.name for p in images.iterdir())[0])
    third_code, _, third = _run(capsys, str(images), "--out", str(tmp_path / "out3"), "--state", str(state))
    assert third_code == 0
    runs = sorted(p.name for p in (state / "bucket" / "results" / "runs").iterdir())
    third_latest = json.loads((tmp_path / "out3" / "latest.json").read_text())
    assert first_latest["run_id"] in runs and third_latest["run_id"] in runs
    assert third_latest["identities"] == first_latest["identities"] - 1
    assert first.executions_started == third.executions_started == 1


def test_upload_trigger_trains_once_then_only_on_change(shared_data, tmp_path, capsys):
    images = _photos(shared_data, tmp_path / "photos")
    state = tmp_path / "state"
    common = ["--state", str(state), "--trigger", "upload", "-p", "weights=none"]

    first_code, screen, first = _run(capsys, str(images), "--out", str(tmp_path / "out1"), *common)
    same_code, _, same = _run(capsys, str(images), "--out", str(tmp_path / "out2"), *common)
    extra = images / "newcomer"
    extra.mkdir()
    (extra / "1.jpg").write_bytes((shared_data / "faces-dev" / "person_02" / "img12.jpg").read_bytes())
    more_code, _, more = _run(capsys, str(images), "--out", str(tmp_path / "out3"), *common)

    assert (first_code, same_code, more_code) == (0, 0, 0)
    assert "started by the upload trigger" in screen
    assert (first.executions_started, first.training_jobs_started) == (1, 1)
    assert (same.executions_started, same.training_jobs_started) == (1, 0)
    assert same.executions[0].outcome == "no_change"
    assert (more.executions_started, more.training_jobs_started) == (1, 1)
    rows = parse_csv((tmp_path / "out3" / "final_mean_embeddings.csv").read_text(), 512)
    assert "newcomer" in [identity for identity, _, _ in rows]


def _metrics(out: Path) -> dict:
    latest = json.loads((out / "latest.json").read_text())
    return json.loads((out / "runs" / latest["run_id"] / "metrics.json").read_text())


def test_force_on_unchanged_photos_computes_no_embedding(shared_data, tmp_path, capsys):
    images = _photos(shared_data, tmp_path / "photos")
    state = ["--state", str(tmp_path / "state"), "-p", "weights=none"]

    assert _run(capsys, str(images), "--out", str(tmp_path / "out1"), *state)[0] == 0
    code, _, forced = _run(capsys, str(images), "--out", str(tmp_path / "out2"), *state, "--force")

    assert code == 0 and forced.training_jobs_started == 1
    metrics = _metrics(tmp_path / "out2")
    assert (metrics["embeddings_computed"], metrics["embeddings_reused"]) == (0, 4)


def test_two_instances_publish_the_same_enrollment_as_one(shared_data, tmp_path, capsys):
    images = tmp_path / "photos"
    shutil.copytree(shared_data / "faces-dev", images)

    one = _run(capsys, str(images), "--out", str(tmp_path / "one"), "-p", "weights=none")
    two = _run(
        capsys, str(images), "--out", str(tmp_path / "two"), "-p", "weights=none", "--instance-count", "2"
    )

    assert one[0] == 0 and two[0] == 0, two[1]
    assert _metrics(tmp_path / "two")["hosts"] == 2
    first = parse_csv((tmp_path / "one" / "final_mean_embeddings.csv").read_text(), 512)
    second = parse_csv((tmp_path / "two" / "final_mean_embeddings.csv").read_text(), 512)
    assert [(i, n) for i, n, _ in first] == [(i, n) for i, n, _ in second]
    for (_, _, a), (_, _, b) in zip(first, second, strict=True):
        assert float(abs(a - b).max()) <= 1e-5
