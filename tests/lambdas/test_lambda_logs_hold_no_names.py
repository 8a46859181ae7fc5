"""The Lambdas' logs hold no identity name and no photo key at the stack's default level, INFO (issue 26).

What a handler logs is captured as Powertools writes it to the function's log stream (JSON, with every
`extra` key), at INFO and then at DEBUG: validate, on photos that leave files out (named after people),
with people below min_images_per_identity, and with a problem that refuses the run; poll, on a job whose
FailureReason names a photo. At INFO the logs carry counts and the S3 URI of the run's file that lists the
details (run.json or problems.json); at DEBUG the details appear (the switch works).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator

import pytest
from facetrain_lambdas import validate
from facetrain_lambdas.errors import InvalidInput
from facetrain_lambdas.observability import logger
from facetrain_lambdas.poll import PollResult, log_status
from facetrain_offline.lambda_runtime import LambdaContext
from handler_fixtures import BUCKET
from support.testkit import upload_photos

PEOPLE = {"alice": 3, "bob": 1}  # bob has too few photos for min_images_per_identity=2
LEFT_OUT = {  # object key → a word of it that names a person or a photo
    "face_imgs/alice/_draft.jpg": "_draft",  # skipped (a name starting with '_'), under alice's folder
    "face_imgs/_carol/001.jpg": "carol",  # a skipped folder named after a person
    "face_imgs/dave-portrait.jpg": "dave",  # directly under the images prefix
}
NAMES = ("alice", "bob", "carol", "dave", "_draft", "portrait", ".jpg")


@pytest.fixture
def log_output() -> Iterator[Callable[[str], io.StringIO]]:
    """`capture(level)`: from then on, the handlers' log stream goes to the returned buffer, at `level`."""
    handler = logger.registered_handler
    stream, level = handler.stream, logger.log_level

    def capture(at: str) -> io.StringIO:
        buffer = io.StringIO()
        handler.setStream(buffer)
        logger.setLevel(at)
        return buffer

    yield capture
    handler.setStream(stream)
    logger.setLevel(level)


def records(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def named_in(text: str) -> list[str]:
    return [name for name in NAMES if name in text]


def _bucket_with_left_out_files(s3) -> None:
    upload_photos(s3, BUCKET, PEOPLE)
    for key in LEFT_OUT:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="config/constants.py", Body=b"MIN_IMAGES_PER_IDENTITY = 2\n")


def _validate(execution: str) -> dict:
    return validate.handler({"execution": execution, "input": {}}, LambdaContext("validate"))


def test_validate_logs_counts_and_where_the_details_are_at_info(s3, function_env, log_output) -> None:
    _bucket_with_left_out_files(s3)
    buffer = log_output("INFO")

    pointer = _validate("exec-1")

    run_json = json.loads(s3.get_object(Bucket=BUCKET, Key=pointer["run_record_key"])["Body"].read())
    assert all(any(word in warning for warning in run_json["warnings"]) for word in LEFT_OUT.values())
    logged = records(buffer)
    (left_out,) = [r for r in logged if "left out of the run" in r["message"]]
    assert left_out["level"] == "WARNING"
    assert left_out["message"] == (
        "validation: 3 warnings about files or folders under the images prefix "
        "(3 objects left out of the run)"
    )
    assert left_out["listed_in"] == f"s3://{BUCKET}/{pointer['run_record_key']}"
    assert any(r["message"].startswith("1 identity has fewer than") for r in logged)
    assert named_in(buffer.getvalue()) == []


def test_validate_names_the_left_out_files_at_debug(s3, function_env, log_output) -> None:
    _bucket_with_left_out_files(s3)
    buffer = log_output("DEBUG")

    _validate("exec-1")

    (detail,) = [r for r in records(buffer) if r["message"] == "the warnings"]
    assert detail["level"] == "DEBUG"
    for key in LEFT_OUT:
        folder_or_file = key if not key.startswith("face_imgs/_carol/") else "face_imgs/_carol/"
        # named by the key relative to the images prefix, the person's own path (issue 27)
        relative = folder_or_file.removeprefix("face_imgs/")
        assert any(line.startswith(f"{relative} ") for line in detail["warnings"])


def test_a_refused_run_names_the_photo_in_problems_json_not_in_the_log(s3, function_env, log_output) -> None:
    _bucket_with_left_out_files(s3)
    s3.put_object(Bucket=BUCKET, Key="face_imgs/alice/notes.txt", Body=b"not a photo")  # skipped (issue 27)
    s3.put_object(Bucket=BUCKET, Key="face_imgs/alice/empty.jpg", Body=b"")
    buffer = log_output("INFO")

    with pytest.raises(InvalidInput) as refused:
        _validate("exec-1")

    assert "alice/empty.jpg is empty (0 bytes)" in str(refused.value)
    problems_key = "results/runs/exec-1/problems.json"
    problems = json.loads(s3.get_object(Bucket=BUCKET, Key=problems_key)["Body"].read())
    assert any("alice/empty.jpg" in problem for problem in problems["problems"])
    assert any(warning.startswith("alice/notes.txt: not a photo") for warning in problems["warnings"])
    (left_out,) = [r for r in records(buffer) if "left out of the run" in r["message"]]
    assert left_out["listed_in"] == f"s3://{BUCKET}/{problems_key}"
    assert named_in(buffer.getvalue()) == []


FAILED_JOB = PollResult(
    training_job_name="facetrain-exec-1",
    status="Failed",
    secondary_status="Failed",
    failure_reason="No identity could be enrolled: 1 file, 0 usable (no_face: 1). See rejected.csv. "
    "First problems: alice/000.jpg: no face found",
    billable_seconds=60,
    model_artifacts="",
    wait_seconds=60,
)


def test_poll_keeps_a_failure_reason_that_names_a_photo_out_of_the_info_log(log_output) -> None:
    buffer = log_output("INFO")
    log_status(FAILED_JOB)
    logged = records(buffer)
    assert [(r["level"], r["status"]) for r in logged] == [("INFO", "Failed"), ("WARNING", "Failed")]
    assert all(r["job"] == "facetrain-exec-1" for r in logged)
    assert named_in(buffer.getvalue()) == []


def test_poll_logs_the_failure_reason_at_debug(log_output) -> None:
    buffer = log_output("DEBUG")
    log_status(FAILED_JOB)
    (reason,) = [r for r in records(buffer) if r["level"] == "DEBUG"]
    assert reason["reason"] == FAILED_JOB.failure_reason
