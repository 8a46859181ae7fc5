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
    assert (record["format"], record["version"]) == ("facetrain.run", 3)
    assert record["request"]["hyperparameters"] == {"batch_size": 8, "detection_thresholds": [0.5, 0.6, 0.7]}
    assert parse_run_record(record, "run.json").sagemaker_hyperparameters() == {
        "batch_size": "8",
        "detection_thresholds": "[0.5, 0.6, 0.7]",
    }
    assert record["settings"]["batch_size"] == 8 and record["settings"]["image_size"] == 160
    assert record["cfg_manifest_key"] is None
    assert record["run_fingerprint"] == pointer["run_fingerprint"]


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
    # Each named by its key relative to the images prefix; README.md is no photo: skipped as one (issue 27).
    assert first.startswith("README.md: not a photo (a text or document file, .md): skipped")
    assert second.startswith("_archive/ (1 object) is skipped")


def test_a_long_refusal_points_at_the_runs_problems_json_never_at_the_bucket(s3, function_env) -> None:
    """Over MAX_LISTED_WARNINGS warnings (an iPhone export's .AAE sidecars, say) the refusal ends with where
    the whole list is: the run's folder, as the person finds it on AWS and in OUT_DIR offline."""
    upload_photos(s3, BUCKET, {"alice": 2})
    for index in range(12):
        s3.put_object(Bucket=BUCKET, Key=f"face_imgs/alice/IMG_{index:04}.AAE", Body=b"<plist/>")
    s3.put_object(Bucket=BUCKET, Key="face_imgs/alice/empty.jpg", Body=b"")

    with pytest.raises(InvalidInput) as raised:
        _run("exec-1", {})

    message = str(raised.value)
    assert "Warnings, not errors (12):" in message and "s3://" not in message
    assert message.endswith(
        "- … and 2 more (all listed in runs/exec-1/problems.json under the results prefix; offline, in "
        "OUT_DIR)"
    )
    assert len(_read(s3, "results/runs/exec-1/problems.json")["warnings"]) == 12


def test_stray_files_without_any_identity_folder_are_refused(s3, function_env) -> None:
    s3.put_object(Bucket=BUCKET, Key="face_imgs/README.md", Body=b"# photos of the team")
    s3.put_object(Bucket=BUCKET, Key="face_imgs/alice.jpg", Body=b"x")

    with pytest.raises(InvalidInput) as raised:
        _run("exec-1", {})

    message = str(raised.value)
    assert "no photos in the photos folder" in message and "s3://" not in message
    assert "Warnings, not errors (2):" in message
    assert "- alice.jpg lies at the top of the photos folder, in no person's folder" in message
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


@pytest.mark.parametrize(
    ("photos", "minimum", "below"),
    [({"alice": 3, "bob": 2}, 3, 1), ({"alice": 5, "bob": 1, "carol": 2, "dave": 4}, 3, 2)],
)
def test_people_with_too_few_photos_are_left_to_the_job_with_a_counted_warning(
    s3, function_env, caplog, photos, minimum, below
) -> None:
    # behaviour changed (issue 25): the README promises such people are excluded and reported and the run
    # goes on; validate used to refuse the whole run ("identity 'bob' has 2 photo(s) …").
    upload_photos(s3, BUCKET, photos)
    s3.put_object(
        Bucket=BUCKET, Key="config/constants.py", Body=f"MIN_IMAGES_PER_IDENTITY = {minimum}\n".encode()
    )
    pointer = _run("exec-1", {})
    assert pointer["identities"] == len(photos)  # all go to the job, which excludes the few
    record = _read(s3, pointer["run_record_key"])
    assert record["settings"]["min_images_per_identity"] == minimum
    (warning,) = record["warnings"]
    assert warning.startswith(f"{below} identit")
    assert f"fewer than min_images_per_identity={minimum} photos in the photos folder" in warning
    assert "the training job excludes them and enrolls the others" in warning
    logged = " ".join(str(entry.__dict__) for entry in caplog.records)  # messages and their extra keys
    assert "fewer than min_images_per_identity" in logged  # the warning is logged (WARNING), …
    for name in (name for name, count in photos.items() if count < minimum):
        assert name not in warning and name not in logged  # … as a count, never names


# (stray objects under the prefix, photos per person, min_images_per_identity): left out, then too few
LEFT_OUT_AND_TOO_FEW = [
    ([], {"alice": 3, "bob": 1}, 2),  # too few only: nothing is left out
    (["stray.jpg", "alice/_draft.jpg"], {"alice": 3, "bob": 1}, 2),  # both
    (["bob/.DS_Store"], {"alice": 3, "bob": 2}, 1),  # left out only
    (["_archive/1.jpg", "_archive/2.jpg", "top.png"], {"alice": 2, "bob": 1, "carol": 1}, 2),
]


@pytest.mark.parametrize(("strays", "photos", "minimum"), LEFT_OUT_AND_TOO_FEW)
def test_the_left_out_count_counts_only_what_was_left_out(
    s3, function_env, caplog, strays, photos, minimum
) -> None:
    """The too-few warning leaves nothing out (the job excludes those people): it is a warning of its own,
    never counted as a file or folder left out, in the log or in run.json's dataset.skipped."""
    upload_photos(s3, BUCKET, photos)
    for stray in strays:
        s3.put_object(Bucket=BUCKET, Key=f"face_imgs/{stray}", Body=b"x")
    s3.put_object(
        Bucket=BUCKET, Key="config/constants.py", Body=f"MIN_IMAGES_PER_IDENTITY = {minimum}\n".encode()
    )
    too_few = sum(count < minimum for count in photos.values())
    left_out_roots = {stray.split("/")[0] if stray.startswith("_") else stray for stray in strays}

    record = _read(s3, _run("exec-1", {})["run_record_key"])

    assert record["dataset"]["skipped"] == len(strays)
    assert len(record["warnings"]) == len(left_out_roots) + (1 if too_few else 0)
    messages = [entry.getMessage() for entry in caplog.records]
    left_out = [message for message in messages if "left out of the run" in message]
    if strays:
        warnings = f"{len(left_out_roots)} warning" + ("s" if len(left_out_roots) > 1 else "")
        objects = f"{len(strays)} object" + ("s" if len(strays) > 1 else "")
        assert left_out == [
            f"validation: {warnings} about files or folders under the images prefix ({objects} left out of "
            "the run)"
        ]
    else:
        assert left_out == []
    fewer = [message for message in messages if "fewer than min_images_per_identity" in message]
    assert len(fewer) == (1 if too_few else 0)
    if too_few:
        assert fewer[0].startswith(f"{too_few} identit")
        for name in (name for name, count in photos.items() if count < minimum):
            assert name not in fewer[0]


@pytest.mark.parametrize(("photos", "minimum"), [({"alice": 3, "bob": 2}, 4), ({"alice": 1}, 2)])
def test_a_run_where_no_identity_has_enough_photos_is_refused(s3, function_env, photos, minimum) -> None:
    upload_photos(s3, BUCKET, photos)
    s3.put_object(
        Bucket=BUCKET, Key="config/constants.py", Body=f"MIN_IMAGES_PER_IDENTITY = {minimum}\n".encode()
    )
    with pytest.raises(InvalidInput, match=rf"every identity \({len(photos)}\) has fewer than "):
        _run("exec-1", {})
    problems = ValidationProblems.model_validate(_read(s3, "results/runs/exec-1/problems.json"))
    assert problems.run_id == "exec-1" and len(problems.problems) == 1
    assert (problems.format, problems.version) == ("facetrain.problems", 1)
    assert f"min_images_per_identity={minimum}" in problems.problems[0]


@pytest.mark.parametrize("value", ["true", "yes", "on", "True"])
def test_a_boolean_for_a_number_is_refused_at_validation(s3, function_env, value) -> None:
    upload_photos(s3, BUCKET, {"alice": 2})
    s3.put_object(Bucket=BUCKET, Key="config/settings.yaml", Body=f"batch_size: {value}\n".encode())
    with pytest.raises(InvalidInput) as raised:
        _run("exec-1", {})
    assert "'batch_size' (from cfg/settings.yaml): must be a number, not a boolean" in str(raised.value)
    with pytest.raises(InvalidInput) as raised:
        _run("exec-2", {"hyperparameters": {"seed": True}})
    assert "'seed' (from hyperparameters): must be a number, not a boolean" in str(raised.value)


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
