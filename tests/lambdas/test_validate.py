"""validate against moto S3: manifests, run record, config prefix, and refusals."""

from __future__ import annotations

import json

import pytest
from facetrain_lambdas import validate
from facetrain_lambdas.errors import InvalidInput, TransientError
from facetrain_lambdas.run_record import ValidationProblems, parse_run_record
from facetrain_lambdas.run_request import StackDefaults, resolve_request
from facetrain_offline.lambda_runtime import LambdaContext
from handler_fixtures import BUCKET
from support.testkit import upload_photos


def _read(s3, key: str) -> object:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _run(execution: str, payload: dict) -> dict:
    return validate.handler({"execution": execution, "input": payload}, LambdaContext("validate"))


def test_writes_manifest_and_run_record(s3, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 2, "bob": 3})
    pointer = _run("exec-1", {"hyperparameters": {"batch_size": 8, "detection_thresholds": [0.5, 0.6, 0.7]}})

    assert pointer["run_id"] == "exec-1" and pointer["identities"] == 2 and pointer["images"] == 5
    assert pointer["run_record_key"] == "results/runs/exec-1/run.json"
    manifest = _read(s3, pointer["manifest_key"])
    assert manifest[0] == {"prefix": f"s3://{BUCKET}/face_imgs/"}
    assert manifest[1:] == [f"alice/{i:03d}.jpg" for i in range(2)] + [f"bob/{i:03d}.jpg" for i in range(3)]
    record = _read(s3, pointer["run_record_key"])
    assert (record["format"], record["version"]) == ("facetrain.run", 2)
    assert record["request"]["hyperparameters"] == {"batch_size": 8, "detection_thresholds": [0.5, 0.6, 0.7]}
    assert parse_run_record(record, "run.json").sagemaker_hyperparameters() == {
        "batch_size": "8",
        "detection_thresholds": "[0.5, 0.6, 0.7]",
    }
    assert record["settings"]["batch_size"] == 8 and record["settings"]["image_size"] == 160
    assert record["cfg_manifest_key"] is None
    assert record["dataset"]["fingerprint"] == pointer["dataset_fingerprint"]


def test_stray_files_are_left_out_with_warnings_not_refused(s3, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 2, "bob": 1})
    s3.put_object(Bucket=BUCKET, Key="face_imgs/README.md", Body=b"# photos of the team")
    s3.put_object(Bucket=BUCKET, Key="face_imgs/_archive/old.jpg", Body=b"x")

    pointer = _run("exec-1", {})

    assert pointer["identities"] == 2 and pointer["images"] == 3
    assert _read(s3, pointer["manifest_key"])[1:] == ["alice/000.jpg", "alice/001.jpg", "bob/000.jpg"]
    record = _read(s3, pointer["run_record_key"])
    assert record["dataset"]["skipped"] == 2
    first, second = record["warnings"]
    assert first.startswith(f"s3://{BUCKET}/face_imgs/README.md lies directly under s3://{BUCKET}/face_imgs/")
    assert second.startswith(f"s3://{BUCKET}/face_imgs/_archive/ (1 object(s)) is skipped")


def test_stray_files_without_any_identity_folder_are_refused(s3, function_env) -> None:
    s3.put_object(Bucket=BUCKET, Key="face_imgs/README.md", Body=b"# photos of the team")
    s3.put_object(Bucket=BUCKET, Key="face_imgs/alice.jpg", Body=b"x")

    with pytest.raises(InvalidInput) as raised:
        _run("exec-1", {})

    message = str(raised.value)
    assert f"no photos under s3://{BUCKET}/face_imgs/" in message
    assert "Left out of the run (2, not errors):" in message
    assert "face_imgs/alice.jpg lies directly under" in message
    problems = _read(s3, "results/runs/exec-1/problems.json")
    assert len(problems["problems"]) == 1 and len(problems["warnings"]) == 2
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="results/runs/exec-1/manifest.json").get("Contents")


def test_photos_uploaded_later_do_not_enter_the_snapshot(s3, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 2})
    pointer = _run("exec-1", {})
    upload_photos(s3, BUCKET, {"zoe": 2})
    assert not any("zoe" in key for key in _read(s3, pointer["manifest_key"])[1:])


def test_config_files_are_read_as_the_container_reads_them(s3, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 2})
    s3.put_object(
        Bucket=BUCKET, Key="config/constants.py", Body=b'"""Settings."""\nBATCH_SIZE = 16\nMARGIN = 4\n'
    )
    s3.put_object(Bucket=BUCKET, Key="config/extra/more.yaml", Body=b"min_face_size: 30\n")
    s3.put_object(Bucket=BUCKET, Key="config/README.md", Body=b"ignored")

    pointer = _run("exec-1", {"hyperparameters": {"margin": 10}})

    record = _read(s3, pointer["run_record_key"])
    assert (
        record["settings"]["batch_size"],
        record["settings"]["margin"],
        record["settings"]["min_face_size"],
    ) == (
        16,
        10,
        30,
    )
    assert _read(s3, record["cfg_manifest_key"]) == [
        {"prefix": f"s3://{BUCKET}/config/"},
        "constants.py",
        "extra/more.yaml",
    ]


@pytest.mark.parametrize(
    ("key", "body", "expected"),
    [
        ("config/constants.py", b"import os\n", "only `NAME = value` lines"),
        ("config/settings.json", b"{not json", "not valid JSON"),
        ("config/settings.yaml", b"batch_sise: 3\n", "unknown key 'batch_sise' (from cfg/settings.yaml)"),
        ("config/settings.yaml", b"image_size: 10\n", "'image_size' (from cfg/settings.yaml)"),
    ],
)
def test_bad_config_is_refused(s3, function_env, key: str, body: bytes, expected: str) -> None:
    upload_photos(s3, BUCKET, {"alice": 2})
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    with pytest.raises(InvalidInput) as raised:
        _run("exec-1", {})
    assert expected in str(raised.value)
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="results/runs/exec-1/run.json").get("Contents")


def test_bad_hyperparameters_list_valid_keys(s3, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 2})
    with pytest.raises(InvalidInput) as raised:
        _run("exec-1", {"hyperparameters": {"batch_sise": 8, "device": "tpu"}})
    message = str(raised.value)
    assert "unknown key 'batch_sise' (from hyperparameters)" in message
    assert "'device' (from hyperparameters)" in message
    assert "valid setting keys: embedder, weights, image_size" in message


def test_min_images_per_identity_comes_from_the_settings(s3, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 3, "bob": 2})
    s3.put_object(Bucket=BUCKET, Key="config/constants.py", Body=b"MIN_IMAGES_PER_IDENTITY = 3\n")
    with pytest.raises(InvalidInput, match="identity 'bob' has 2 photo"):
        _run("exec-1", {})
    problems = ValidationProblems.model_validate(_read(s3, "results/runs/exec-1/problems.json"))
    assert problems.run_id == "exec-1" and len(problems.problems) == 1
    assert (problems.format, problems.version) == ("facetrain.problems", 1)


def test_a_run_id_belongs_to_one_execution(s3, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 2})
    _run("exec-1", {"run_id": "weekly"})
    _run("exec-1", {"run_id": "weekly"})  # a retry of the same execution
    with pytest.raises(InvalidInput, match="run_id 'weekly' was already used by execution 'exec-1'"):
        _run("exec-2", {"run_id": "weekly"})


def test_pagination_with_small_pages(s3) -> None:
    upload_photos(s3, BUCKET, {f"p{i}": 3 for i in range(40)})
    request = resolve_request({}, "exec-1", StackDefaults(bucket=BUCKET))
    pointer = validate.validate_run(s3, request, max_photo_bytes=1000, page_size=7)
    assert pointer.images == 120 and pointer.identities == 40


def test_throttling_becomes_a_transient_error(s3, function_env, monkeypatch) -> None:
    from botocore.exceptions import ClientError

    def throttled(*args, **kwargs):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "ListObjectsV2")

    monkeypatch.setattr(validate, "list_objects", throttled)
    with pytest.raises(TransientError, match="SlowDown"):
        _run("exec-1", {})
