"""Console input and S3 events resolved against the stack defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from facetrain_lambdas.errors import InvalidInput
from facetrain_lambdas.run_request import VALID_FIELDS, StackDefaults, resolve_request

DEFAULTS = StackDefaults(bucket="data-bucket")
EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_empty_input_takes_every_default() -> None:
    request = resolve_request({}, "exec-1", DEFAULTS)
    assert (request.run_id, request.bucket, request.images_prefix, request.config_prefix) == (
        "exec-1",
        "data-bucket",
        "face_imgs/",
        "config/",
    )
    assert (request.results_prefix, request.instance_type, request.instance_count) == (
        "results/",
        "ml.g4dn.xlarge",
        1,
    )
    assert request.source == "console" and request.hyperparameters == {}


def test_fields_override_defaults_and_prefixes_get_a_slash() -> None:
    request = resolve_request(
        {
            "images_prefix": "photos/2025",
            "instance_type": "ml.m5.xlarge",
            "instance_count": 2,
            "run_id": "r-1",
        },
        "exec-1",
        DEFAULTS,
    )
    assert request.images_prefix == "photos/2025/"
    assert (request.instance_type, request.instance_count, request.run_id) == ("ml.m5.xlarge", 2, "r-1")


def test_environment_defaults() -> None:
    defaults = StackDefaults.from_env(
        {"DATA_BUCKET": "b", "IMAGES_PREFIX": "imgs/", "TRAINING_INSTANCE_COUNT": "3"}
    )
    assert (defaults.bucket, defaults.images_prefix, defaults.instance_count) == ("b", "imgs/", 3)


def test_unknown_fields_are_refused_by_name_with_the_valid_ones() -> None:
    with pytest.raises(InvalidInput) as raised:
        resolve_request({"instance_typ": "ml.m5.large", "prefix": "x"}, "exec-1", DEFAULTS)
    message = str(raised.value)
    assert "unknown field 'instance_typ'" in message and "unknown field 'prefix'" in message
    assert ", ".join(VALID_FIELDS) in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("bucket", "someone-elses-bucket", "is not this stack's data bucket 'data-bucket'"),
        ("run_id", "has space", "run_id cannot name a run"),
        ("images_prefix", "/abs/", "images_prefix '/abs/' is not a usable S3 prefix"),
        ("images_prefix", "a/../b/", "is not a usable S3 prefix"),
        ("results_prefix", "face_imgs/results/", "overlap"),
        ("instance_type", "g4dn.xlarge", "is not a SageMaker instance type"),
        ("instance_count", 0, "field 'instance_count'"),
        ("hyperparameters", "batch_size=3", "field 'hyperparameters'"),
    ],
)
def test_bad_values_name_the_field_and_the_fix(field: str, value: object, expected: str) -> None:
    with pytest.raises(InvalidInput, match="problem"):
        resolve_request({field: value}, "exec-1", DEFAULTS)
    with pytest.raises(InvalidInput) as raised:
        resolve_request({field: value}, "exec-1", DEFAULTS)
    assert expected in str(raised.value)


def test_an_execution_name_that_cannot_be_a_run_id_asks_for_one() -> None:
    with pytest.raises(InvalidInput, match="pass a run_id"):
        resolve_request({}, "exécution", DEFAULTS)


def test_input_must_be_an_object() -> None:
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        resolve_request(["face_imgs/"], "exec-1", DEFAULTS)


def test_s3_object_created_event() -> None:
    event = json.loads((EVENTS / "s3-object-created.json").read_text())
    defaults = StackDefaults(bucket=event["detail"]["bucket"]["name"])
    request = resolve_request(event, "exec-9", defaults)
    assert request.source == "s3-event"
    assert request.trigger_key == "face_imgs/alice/004.jpg"
    assert request.run_id == "exec-9"


def test_s3_event_from_another_bucket_is_refused() -> None:
    event = json.loads((EVENTS / "s3-object-created.json").read_text())
    with pytest.raises(InvalidInput, match="is not this stack's data bucket"):
        resolve_request(event, "exec-9", DEFAULTS)


def test_many_problems_are_capped_in_the_message() -> None:
    error = InvalidInput([f"problem {i}" for i in range(120)], where="s3://b/problems.json")
    text = str(error)
    assert "120 problems" in text and "problem 49" in text and "problem 50" not in text
    assert "70 more (all listed in s3://b/problems.json)" in text
