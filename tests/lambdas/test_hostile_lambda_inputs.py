"""Hostile inputs against the validate and publish Lambdas (in-process, moto S3): a bounded, named
refusal every time — never an unhandled error, exhausted memory, or a published result that lets
strangers in."""

from __future__ import annotations

import io
import pickle
import time

import numpy as np
import pytest
from facetrain_lambdas import artifact
from facetrain_lambdas.artifact import read_model_archive, verify_results
from facetrain_lambdas.errors import InvalidInput, ResultsInvalid
from facetrain_lambdas.run_request import StackDefaults, resolve_request
from facetrain_lambdas.training_job import TrainingSettings, training_job_request
from facetrain_lambdas.validate import validate_run
from handler_fixtures import BUCKET
from support.hostile import HOSTILE_CONFIG_FILES, nested
from support.testkit import model_files, model_tar, upload_photos

PHOTOS = {"alice": 2, "bob": 3}


def _validate(s3, payload: dict | None = None):
    request = resolve_request({"run_id": "r1", **(payload or {})}, "exec-1", StackDefaults(bucket=BUCKET))
    return validate_run(s3, request, 10**6)


@pytest.mark.parametrize(
    ("name", "body", "words"), list(HOSTILE_CONFIG_FILES.values()), ids=list(HOSTILE_CONFIG_FILES)
)
def test_hostile_uploaded_config_is_refused_quickly_naming_the_file(s3, function_env, name, body, words):
    upload_photos(s3, BUCKET, PHOTOS)
    s3.put_object(Bucket=BUCKET, Key=f"config/{name}", Body=body)
    started = time.perf_counter()

    with pytest.raises(InvalidInput) as raised:
        _validate(s3)

    message = str(raised.value)
    assert words in message
    assert name in message or words.startswith("'")
    assert len(message) < 3000  # values are shortened, never echoed whole
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize(
    ("hyperparameters", "words"),
    [
        ({"device": "x" * 3000}, "SageMaker accepts at most 2500"),
        ({f"k{i}": 1 for i in range(101)}, "SageMaker accepts at most 100"),
        ({"batch_size": [[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]}, "nested more than 20 levels"),
        ({"batch_size": nested(1500)}, "'batch_size': the value cannot be a hyperparameter string"),
    ],
    ids=["long-value", "too-many-keys", "deep", "1500-deep"],
)
def test_hyperparameters_past_sagemakers_limits_are_refused_at_validation(
    s3, function_env, hyperparameters, words
):
    upload_photos(s3, BUCKET, PHOTOS)
    with pytest.raises(InvalidInput) as raised:
        _validate(s3, {"hyperparameters": hyperparameters})
    assert words in str(raised.value)
    assert len(str(raised.value)) < 6000


def test_the_request_builder_checks_sagemakers_limits_too(s3, function_env):
    from facetrain_lambdas.run_record import load_run_record

    upload_photos(s3, BUCKET, PHOTOS)
    record = load_run_record(s3, _validate(s3))
    request = record.request.model_copy(update={"hyperparameters": {"device": "x" * 3000}})
    tampered = record.model_copy(update={"request": request})
    with pytest.raises(InvalidInput, match="SageMaker accepts at most 2500"):
        training_job_request(tampered, TrainingSettings.from_env())


@pytest.mark.parametrize("part", ["p" * 256, "é" * 128, "名" * 86])
def test_a_key_name_over_255_bytes_is_refused_at_validation(s3, function_env, part):
    upload_photos(s3, BUCKET, PHOTOS)
    s3.put_object(Bucket=BUCKET, Key=f"face_imgs/alice/{part}.jpg", Body=b"\xff\xd8\xff\xe0 photo")
    s3.put_object(Bucket=BUCKET, Key=f"face_imgs/{part}/1.jpg", Body=b"\xff\xd8\xff\xe0 photo")
    with pytest.raises(InvalidInput) as raised:
        _validate(s3)
    problems = raised.value.problems
    assert len(problems) == 2 and all("must be at most 255 bytes" in p for p in problems)
    assert problems[0].startswith(f"alice/{part}.jpg: ")  # the key relative to the images prefix (issue 27)


# --- publish: the threshold and every record are checked before anything becomes current ------------


def _with_rules(files: dict[str, bytes], old: bytes, new: bytes) -> dict[str, bytes]:
    assert old in files["rules.py"]
    return {**files, "rules.py": files["rules.py"].replace(old, new)}


@pytest.mark.parametrize(
    ("threshold", "words"),
    [
        (b"1e999", "outside (0, 2.0]"),
        (b"'abc'", "is not a number"),
        (b"None", "is not a number"),
        (b"True", "is not a number"),
        (b"2.5", "outside (0, 2.0]"),
        (b"0.0", "outside (0, 2.0]"),
        (b"-1", "outside (0, 2.0]"),
        (b"0.9", "is not metrics.json's evaluation threshold 1.1"),
    ],
)
def test_an_unsound_accept_threshold_is_never_published(threshold, words):
    files = _with_rules(model_files(PHOTOS), b"'accept_threshold': 1.1", b"'accept_threshold': " + threshold)
    with pytest.raises(ResultsInvalid) as raised:
        verify_results(files)
    assert words in str(raised.value)


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("nan", "non-finite"),
        ("zero", "unit length"),
        ("short", "float32 array of 512"),
        ("sha", "sha256"),
        ("probability", "probability"),
        ("box", "box"),
        ("identity", "identity"),
    ],
)
def test_an_unsound_record_is_never_published(how, words):
    files = model_files(PHOTOS)
    payload = pickle.loads(files["saved_embeddings.pkl"])
    record = payload["records"][1]
    if how == "nan":
        record["embedding"] = record["embedding"].copy()
        record["embedding"][0] = np.nan
    elif how == "zero":
        record["embedding"] = np.zeros(512, np.float32)
    elif how == "short":
        record["embedding"] = record["embedding"][:10].copy()
    elif how == "sha":
        record["sha256"] = None
    elif how == "probability":
        record["probability"] = "high"
    elif how == "box":
        record["box"] = [1.0, 2.0]
    else:
        record["identity"] = 7
    files["saved_embeddings.pkl"] = pickle.dumps(payload)
    with pytest.raises(ResultsInvalid) as raised:
        verify_results(files)
    assert "record 1" in str(raised.value) and words in str(raised.value)


def test_the_archive_total_is_capped_before_reading(monkeypatch):
    """A small archive can declare members far larger than the Lambda's memory: the total of the known
    files is capped from the headers, before their data is read (here with a small cap)."""
    files = model_files(PHOTOS)
    monkeypatch.setattr(artifact, "MAX_TOTAL_BYTES", sum(len(b) for b in files.values()) - 1)
    archive = model_tar(files)
    with pytest.raises(ResultsInvalid, match="add up to more than"):
        read_model_archive(io.BytesIO(archive))
    monkeypatch.setattr(artifact, "MAX_TOTAL_BYTES", sum(len(b) for b in files.values()))
    assert set(read_model_archive(io.BytesIO(archive))) == set(files)
