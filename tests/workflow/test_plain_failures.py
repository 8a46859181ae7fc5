"""Every kind of refusal reaches the execution's failure and the notification as the plain message that
says what is wrong and what to do: no Lambda error document, no stack trace (issue 27). The real ASL runs
in moto with the real handlers (support/workflow.py); the offline runner copies the same cause into
run.json and its last line (tests/offline/test_plain_failure_lines.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from facetrain.contract.hyperparameters import VALID_KEYS
from support.testkit import FakeSageMaker, model_files, upload_photos
from support.workflow import WorkflowStack, deployed_workflow

PHOTOS = {"alice": 3, "bob": 2, "carol": 2}
# What a Lambda's error document or a Python traceback would bring along.
NOT_PLAIN = ("Traceback", "stackTrace", "errorMessage", "errorType", '{"', 'File "')


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[WorkflowStack, FakeSageMaker]]:
    """One stack for the module (a deploy takes seconds); each test starts from an empty photos folder
    (an earlier test may have published: runs that must train pass force)."""
    fake = FakeSageMaker()
    with deployed_workflow(fake) as running:
        yield running, fake


@pytest.fixture
def fake_sagemaker(deployed: tuple[WorkflowStack, FakeSageMaker]) -> FakeSageMaker:
    fake = deployed[1]
    fake.fail_with, fake.identification_accuracy, fake.files_override = None, 0.95, None
    return fake


@pytest.fixture
def stack(deployed: tuple[WorkflowStack, FakeSageMaker], fake_sagemaker: FakeSageMaker) -> WorkflowStack:
    running = deployed[0]
    listed = running.s3.list_objects_v2(Bucket=running.bucket, Prefix="face_imgs/")  # a few photos: 1 page
    for obj in listed.get("Contents", []):
        running.s3.delete_object(Bucket=running.bucket, Key=obj["Key"])
    running.notifications()  # those of earlier tests
    return running


def assert_refused_plainly(stack: WorkflowStack, result: dict[str, Any], error: str, cause: str) -> None:
    """The execution FAILED with `error` and exactly `cause`, and the one failure notification says so."""
    assert (result["status"], result.get("error")) == ("FAILED", error), result.get("cause")
    assert result["cause"] == cause
    (notification,) = stack.notifications()
    assert notification == {
        "Subject": "facetrain retraining failed",
        "Message": f"facetrain execution {result['name']} failed ({error}): {cause}",
    }
    for text in (result["cause"], notification["Message"]):
        assert not [marker for marker in NOT_PLAIN if marker in text], text


def test_an_unknown_setting_is_one_problem_that_lists_the_valid_keys(stack: WorkflowStack) -> None:
    upload_photos(stack.s3, stack.bucket, PHOTOS)

    result = stack.run({"hyperparameters": {"learning_rate": 0.1}}, name="exec-unknown")

    assert_refused_plainly(
        stack,
        result,
        "InvalidInput",
        "The retraining input has 1 problem to fix:\n"
        f"- unknown key 'learning_rate' (from hyperparameters); valid setting keys: {', '.join(VALID_KEYS)}",
    )


def test_two_unknown_settings_are_two_problems(stack: WorkflowStack) -> None:
    upload_photos(stack.s3, stack.bucket, PHOTOS)

    result = stack.run({"hyperparameters": {"learning_rate": 0.1, "epochs": 3}}, name="exec-two-unknown")

    valid = f"; valid setting keys: {', '.join(VALID_KEYS)}"
    assert_refused_plainly(
        stack,
        result,
        "InvalidInput",
        "The retraining input has 2 problems to fix:\n"
        f"- unknown key 'learning_rate' (from hyperparameters){valid}\n"
        f"- unknown key 'epochs' (from hyperparameters){valid}",
    )


def test_a_bad_setting_value_is_one_problem(stack: WorkflowStack) -> None:
    upload_photos(stack.s3, stack.bucket, PHOTOS)

    result = stack.run({"hyperparameters": {"min_images_per_identity": "many"}}, name="exec-bad-value")

    assert_refused_plainly(
        stack,
        result,
        "InvalidInput",
        "The retraining input has 1 problem to fix:\n"
        "- 'min_images_per_identity' (from hyperparameters): Input should be a valid integer, unable to "
        "parse string as an integer (got 'many')",
    )


def test_an_empty_images_folder(stack: WorkflowStack) -> None:
    result = stack.run({}, name="exec-empty")

    assert_refused_plainly(
        stack,
        result,
        "InvalidInput",
        "The retraining input has 1 problem to fix:\n"
        "- no photos in the photos folder: put them in one folder per person, <name>/<photo>.jpg (on AWS "
        "under face_imgs/ in the data bucket)",
    )


def test_a_refused_file(stack: WorkflowStack) -> None:
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    stack.s3.put_object(Bucket=stack.bucket, Key="face_imgs/bob/empty.jpg", Body=b"")

    result = stack.run({}, name="exec-empty-photo")

    assert_refused_plainly(
        stack,
        result,
        "InvalidInput",
        "The retraining input has 1 problem to fix:\n"
        "- bob/empty.jpg is empty (0 bytes): upload the photo again",
    )


def test_a_reused_run_id(stack: WorkflowStack) -> None:
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    assert stack.run({"run_id": "monday"}, name="exec-monday")["status"] == "SUCCEEDED"
    stack.notifications()

    result = stack.run({"run_id": "monday", "force": True}, name="exec-again")

    assert_refused_plainly(
        stack,
        result,
        "InvalidInput",
        "The retraining input has 1 problem to fix:\n"
        "- run_id 'monday' was already used by execution 'exec-monday': pass a new run_id or leave it out",
    )


def test_a_run_below_the_quality_gate(stack: WorkflowStack, fake_sagemaker: FakeSageMaker) -> None:
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    fake_sagemaker.identification_accuracy = 0.5

    gate = {"min_identification_accuracy": 0.9}
    result = stack.run({"run_id": "weak", "quality_gate": gate, "force": True}, name="exec-weak")

    assert_refused_plainly(
        stack,
        result,
        "QualityGateFailed",
        "run weak was not published: identification accuracy 0.5000 is below min_identification_accuracy "
        f"0.9000. Its files, report included, are under s3://{stack.bucket}/results/runs/weak/; the "
        "published results are unchanged.",
    )


def test_a_failed_training_job(stack: WorkflowStack, fake_sagemaker: FakeSageMaker) -> None:
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    fake_sagemaker.fail_with = "AlgorithmError: No identity could be enrolled: see rejected.csv"

    result = stack.run({"run_id": "no-faces", "force": True}, name="exec-no-faces")

    assert_refused_plainly(
        stack,
        result,
        "TrainingJobFailed",
        "Training job facetrain-no-faces Failed: AlgorithmError: No identity could be enrolled: see "
        "rejected.csv",
    )


def test_a_forget_whose_republish_failed(stack: WorkflowStack, fake_sagemaker: FakeSageMaker) -> None:
    """The failure goes through PurgeForgotten (the people erased all the same) into the forget's
    notification and the execution's cause, plain in both."""
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    assert stack.run({"run_id": "before-forget", "force": True}, name="exec-before-forget")["status"] == (
        "SUCCEEDED"
    )
    stack.notifications()
    files = model_files({"alice": 3, "carol": 2})
    files["rules.py"] = b"not rules"  # Publish refuses the retrain's results: ResultsInvalid
    fake_sagemaker.files_override = files

    result = stack.run({"forget": ["bob"]}, name="exec-forget")

    assert (result["status"], result["error"]) == ("FAILED", "ResultsInvalid")
    assert result["cause"] == (
        "rules.py must start with `RULES = {...}`. rules.py is generated data: never edit it by hand; use "
        "the rules.py the training job published (the results prefix, or `facetrain run`'s OUT_DIR), or "
        "retrain to make a new one"
    )
    (notification,) = stack.notifications()
    assert notification["Subject"] == "facetrain forget: erased, but the republish failed"
    assert (
        f"The retrain that republishes the enrollment without them failed (ResultsInvalid: {result['cause']})"
        in notification["Message"]
    )
    for text in (result["cause"], notification["Message"]):
        assert not [marker for marker in NOT_PLAIN if marker in text], text


def test_the_stack_trace_stays_in_the_history_and_the_log(stack: WorkflowStack) -> None:
    """Lambda's error document, stack trace included, is what the task failed with (the execution history
    and the function's log keep it); the state machine's failure keeps only its message."""
    upload_photos(stack.s3, stack.bucket, PHOTOS)

    result = stack.run({"hyperparameters": {"learning_rate": 0.1}}, name="exec-document")

    failed = [
        details["cause"]
        for event in stack.history(result["executionArn"])
        for key, details in event.items()
        if key.endswith("FailedEventDetails") and "cause" in details
    ]
    # moto's runtime writes '{"errorMessage":"', AWS's Python runtime '{"errorMessage": "': both match
    assert failed and re.match(r'\{"errorMessage": ?"', failed[0]) and '"stackTrace":' in failed[0]
    assert result["cause"].startswith("The retraining input has 1 problem to fix:\n- unknown key")
