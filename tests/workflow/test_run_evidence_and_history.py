"""A run that did not publish leaves its evidence in the output folder, and `facetrain runs` lists the runs
a saved bucket holds (issue 27, items 4 and 5): the stack deployed by facetrain_offline, the fake job."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from facetrain_offline.bucket_state import save_state
from facetrain_offline.cli import main
from facetrain_offline.folder_scrub import scrub_folder
from facetrain_offline.results_copy import FinishedExecution, copy_results, copy_run_evidence, evidence_lines
from support.testkit import FakeSageMaker, model_files, model_tar, upload_photos
from support.workflow import WorkflowStack

PHOTOS = {"alice": 3, "bob": 2, "carol": 2}
PREFIX = "results/"
GATE = {"quality_gate": {"min_identification_accuracy": 0.9}}


def _evidence(stack: WorkflowStack, execution: dict, out: Path) -> list[str]:
    return copy_run_evidence(stack.s3, stack.bucket, PREFIX, FinishedExecution.described(execution), out)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_each_kind_of_unpublished_run_leaves_its_own_evidence_beside_the_published_files(
    stack: WorkflowStack, fake_sagemaker: FakeSageMaker, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    good = stack.run({"run_id": "good"}, name="exec-good")
    assert good["status"] == "SUCCEEDED"
    copy_results(stack.s3, stack.bucket, PREFIX, out)
    published = _files(out)

    # Refused by validate: problems.json, as the bucket holds it.
    typo = stack.run({"run_id": "typo", "hyperparameters": {"learning_rate": "0.1"}}, name="exec-typo")
    assert typo["status"] == "FAILED"
    assert _evidence(stack, typo, out) == ["runs/typo/problems.json"]
    assert (out / "runs/typo/problems.json").read_bytes() == stack.read("results/runs/typo/problems.json")
    # Refused again under that id before validate wrote anything (an input that does not parse): the
    # problems.json there is the earlier run's, written before this execution started. S3's LastModified
    # has whole seconds: the next second starts first.
    time.sleep(1.05)
    retry = stack.run({"run_id": "typo", "quality_gate": {"min_accuracy": 0.9}}, name="exec-typo-again")
    assert retry["status"] == "FAILED" and "min_accuracy" in retry["cause"]
    assert _evidence(stack, retry, tmp_path / "retry") == []

    # Below the quality gate: the report, rejected.csv, the decision and metrics.json publish stored, and
    # not the unpublished enrollment (it could be taken for results).
    upload_photos(stack.s3, stack.bucket, {"dave": 2})
    fake_sagemaker.identification_accuracy = 0.5
    weak = stack.run({"run_id": "weak", **GATE}, name="exec-weak")
    assert weak["status"] == "FAILED" and weak["error"] == "QualityGateFailed"
    copied = _evidence(stack, weak, out)
    names = ["report.html", "rejected.csv", "quality_gate.json", "metrics.json"]
    assert copied == [f"runs/weak/{name}" for name in names]
    for name in names:
        assert (out / "runs/weak" / name).read_bytes() == stack.read(f"results/runs/weak/{name}"), name
    assert sorted(p.name for p in (out / "runs/weak").iterdir()) == sorted(names)

    # Failed in the job: SageMaker uploads model/ whether the job succeeded or failed, and the job writes
    # rejected.csv and metrics.json even when it enrolls no one: taken out of that model.tar.gz.
    fake_sagemaker.fail_with = "AlgorithmError: No identity could be enrolled"
    broken = stack.run({"run_id": "broken", "force": True}, name="exec-broken")
    assert broken["status"] == "FAILED"
    job = stack.sagemaker.describe_training_job(TrainingJobName="facetrain-broken")
    failed_files = model_files({"alice": 1})
    archive_key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix(f"s3://{stack.bucket}/")
    assert archive_key.startswith("results/runs/broken/training/")
    written = {name: failed_files[name] for name in ("rejected.csv", "metrics.json")}
    stack.s3.put_object(Bucket=stack.bucket, Key=archive_key, Body=model_tar(written))
    assert _evidence(stack, broken, out) == ["runs/broken/rejected.csv", "runs/broken/metrics.json"]
    assert (out / "runs/broken/rejected.csv").read_bytes() == written["rejected.csv"]

    # A reused run id names another execution's folder: nothing of it is this run's evidence.
    fake_sagemaker.fail_with = None
    again = stack.run({"run_id": "good"}, name="exec-again")
    assert again["status"] == "FAILED" and "already used" in again["cause"]
    before = _files(out / "runs/good")
    assert _evidence(stack, again, out) == []
    assert _files(out / "runs/good") == before
    # Even within the second the earlier run's files were written: its run.json names another execution.
    same_second = FinishedExecution(name="exec-again", run_id="good", started=good["startDate"])
    assert copy_run_evidence(stack.s3, stack.bucket, PREFIX, same_second, out) == []

    # The published files at the top of the output folder are untouched by every copy.
    assert {name: body for name, body in _files(out).items() if "/" not in name} == {
        name: body for name, body in published.items() if "/" not in name
    }
    # The terminal's last lines point at the report and the rejected list, in the output folder.
    assert evidence_lines(out, copied) == [
        f"see    {out}/runs/weak/report.html: the run's report",
        f"see    {out}/runs/weak/rejected.csv: each photo not used, and why",
        f"see    {out}/runs/weak/quality_gate.json: the quality gate's decision",
    ]
    assert evidence_lines(out, ["runs/typo/problems.json"]) == [
        f"see    {out}/runs/typo/problems.json: every problem that refused the run"
    ]
    # The copies name people as the bucket's do: a forget's scan of the output folder erases them too.
    assert any(b"alice" in body for name, body in _files(out).items() if name.startswith("runs/weak/"))
    scrub_folder(out, ["alice"], "face_imgs/")
    assert not any(b"alice" in body for body in _files(out).values())


def _listing(capsys: pytest.CaptureFixture[str], state: Path) -> tuple[dict[str, list[str]], list[str]]:
    capsys.readouterr()  # the Lambdas' logs so far
    assert main(["runs", "--state", str(state)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, *rest = lines
    assert re.split(r"\s{2,}", header) == [
        "RUN ID",
        "WHEN (UTC)",
        "STATUS",
        "IDENTITIES",
        "PHOTOS",
        "THRESHOLD",
        "ACCURACY",
    ]
    rows = {
        cells[0]: cells[1:]
        for cells in (
            re.split(r"\s{2,}", line)
            for line in rest[: rest.index(next(line for line in rest if line.startswith("published:")))]
        )
    }
    return rows, lines


def test_runs_lists_published_refused_failed_and_no_change_runs(
    stack: WorkflowStack, fake_sagemaker: FakeSageMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    fake_sagemaker.identification_accuracy = 0.97
    assert stack.run({"run_id": "first"}, name="exec-first")["status"] == "SUCCEEDED"
    upload_photos(stack.s3, stack.bucket, {"dave": 2})
    assert stack.run({"run_id": "second"}, name="exec-second")["status"] == "SUCCEEDED"
    typo = stack.run({"run_id": "typo", "hyperparameters": {"learning_rate": "0.1"}}, name="exec-typo")
    assert typo["status"] == "FAILED"
    assert stack.run({"run_id": "same"}, name="exec-same")["status"] == "SUCCEEDED"  # nothing changed
    fake_sagemaker.identification_accuracy = 0.5
    weak = stack.run({"run_id": "weak", "force": True, **GATE}, name="exec-weak")
    assert weak["error"] == "QualityGateFailed"
    save_state(stack.s3, stack.bucket, state)

    rows, lines = _listing(capsys, state)

    record = json.loads(stack.read("results/runs/second/run.json"))
    when = record["created_at"][:19].replace("T", " ")
    # metrics.json (testkit.model_files): every photo accepted and one rejected; threshold 1.1.
    assert rows["second"] == [when, "current", "4", "9/10", "1.1000", "0.9700"]
    assert rows["first"][1:] == ["published", "3", "7/8", "1.1000", "0.9700"]
    assert rows["same"][1:] == ["no change", "4", "9", "-", "-"]  # what validate counted; nothing trained
    assert rows["weak"][1:] == ["failed (quality gate)", "4", "9/10", "1.1000", "0.5000"]
    assert rows["typo"][1:] == ["refused", "-", "-", "-", "-"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows["typo"][0])  # problems.json's LastModified
    assert sorted(rows) == ["first", "same", "second", "typo", "weak"]
    assert [row[0] for row in rows.values()] == sorted(row[0] for row in rows.values())  # oldest first
    published_line = next(line for line in lines if line.startswith("published:"))
    assert published_line.startswith("published: second (latest.json; published 20")
    assert any(re.fullmatch(r"note   typo: 1 problem in results/runs/typo/problems\.json", x) for x in lines)
    assert not any(name in "\n".join(lines) for name in (*PHOTOS, "dave"))  # run ids and figures only


def test_runs_says_what_to_do_without_a_saved_bucket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "--state", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"facetrain runs: --state {tmp_path} holds no saved bucket ({tmp_path}/bucket is missing): give the "
        "--state folder of `facetrain run`\n"
    )
