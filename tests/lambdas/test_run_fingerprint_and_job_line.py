"""Issue 27: two values were both called "dataset fingerprint"; the Lambdas' one (photos, config files and
settings) is the *run fingerprint* everywhere (run.json, latest.json, the pointer, the notification), and
documents written before the rename still read. The notification's training-job line says what ran it:
the device from the job's metrics.json, billable seconds only where DescribeTrainingJob reported some."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from handler_fixtures import latest_document, run_record
from support.testkit import model_files

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def verified():
    from facetrain_lambdas.artifact import verify_results

    return verify_results(model_files({"alice": 2, "bob": 2}))


def test_a_run_record_of_version_2_reads_with_its_fingerprint_as_the_run_fingerprint() -> None:
    from facetrain_lambdas.run_record import parse_run_record

    written = run_record(run_fingerprint="ab" * 32).model_dump(mode="json")
    old = {**written, "version": 2, "dataset": {**written["dataset"], "fingerprint": "cd" * 32}}
    del old["run_fingerprint"]
    record = parse_run_record(old, "run.json")
    assert record.version == 3 and record.run_fingerprint == "cd" * 32
    assert record.dataset == run_record().dataset
    assert parse_run_record(written, "run.json").run_fingerprint == "ab" * 32


def test_a_latest_json_of_version_1_reads_with_its_dataset_fingerprint_as_the_run_fingerprint(s3) -> None:
    from facetrain_lambdas.layout import RunLayout
    from facetrain_lambdas.published import read_published
    from handler_fixtures import BUCKET

    old = {**latest_document(), "version": 1, "dataset_fingerprint": "ef" * 32}
    del old["run_fingerprint"]
    s3.put_object(Bucket=BUCKET, Key="results/latest.json", Body=json.dumps(old).encode())
    latest = read_published(s3, RunLayout(BUCKET, "results/", "r2"))
    assert latest is not None and latest.run_fingerprint == "ef" * 32 and latest.version == 2
    assert "dataset_fingerprint" not in latest.model_dump()


def test_the_pointer_of_an_execution_started_before_the_rename_still_reads() -> None:
    from facetrain_lambdas.run_record import RunPointer

    fields = {"run_id": "r1", "bucket": "b", "run_record_key": "k", "manifest_key": "m", "identities": 1}
    assert (
        RunPointer.model_validate({**fields, "images": 1, "dataset_fingerprint": "f"}).run_fingerprint == "f"
    )
    assert RunPointer(**fields, images=1, run_fingerprint="g").model_dump()["run_fingerprint"] == "g"


def test_the_state_machine_carries_exactly_the_pointers_fields() -> None:
    from facetrain_lambdas.run_record import RunPointer

    machine = json.loads((ROOT / "state_machine/retraining.asl.json").read_text(encoding="utf-8"))
    selector = machine["States"]["Validate"]["ResultSelector"]
    assert {key.removesuffix(".$") for key in selector} == set(RunPointer.model_fields)
    for event in ("publish.json", "start.json"):
        pointer = json.loads((ROOT / "events" / event).read_text(encoding="utf-8"))["run"]
        assert "run_fingerprint" in pointer and "dataset_fingerprint" not in pointer


def _summary(verified, billable: int, device: str) -> str:
    from facetrain_lambdas.publish import JobState, summary_text

    record = run_record(run_fingerprint="12" * 32)
    job = JobState(training_job_name="facetrain-r1", model_artifacts="s3://b/m", billable_seconds=billable)
    results = dataclasses.replace(verified, metrics=verified.metrics.model_copy(update={"device": device}))
    return summary_text(record, job, results, record.layout)


def test_the_notification_names_the_run_fingerprint_not_a_dataset_fingerprint(verified) -> None:
    text = _summary(verified, 99, "cuda")
    assert f"Run fingerprint (photos, config files and settings): {'12' * 32}" in text.splitlines()
    assert "dataset fingerprint" not in text.lower()


def test_a_sagemaker_job_is_named_with_its_instances_device_and_billable_seconds(verified) -> None:
    lines = _summary(verified, 99, "cuda").splitlines()
    expected = "Training job: facetrain-r1 on 1 x ml.g4dn.xlarge, ran on GPU (cuda): 99 billable seconds."
    assert expected in lines


def test_a_job_without_billable_time_is_not_said_to_have_run_on_the_instances_requested(verified) -> None:
    lines = _summary(verified, 0, "cpu").splitlines()
    [line] = [line for line in lines if line.startswith("Training job:")]
    assert line == (
        "Training job: facetrain-r1 ran on CPU with no billable time reported: not on SageMaker's "
        "instances (a local run, e.g. `facetrain run`); 1 x ml.g4dn.xlarge was requested."
    )
    assert "billable seconds" not in line
