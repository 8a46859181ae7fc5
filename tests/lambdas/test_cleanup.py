"""The custom resource that empties the data bucket on stack deletion (answers sent by crhelper)."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from facetrain_lambdas import cleanup
from facetrain_offline.lambda_runtime import LambdaContext
from handler_fixtures import BUCKET

EVENT = json.loads((Path(__file__).resolve().parents[2] / "events" / "cleanup.json").read_text())


def _event(request_type: str) -> dict:
    event = {**EVENT, "RequestType": request_type, "ResourceProperties": {"BucketName": BUCKET}}
    if request_type != "Create":
        event["PhysicalResourceId"] = f"empty-on-delete-{BUCKET}"
    return event


def _responses(connection: mock.MagicMock) -> list[dict]:
    """The answers PUT to CloudFormation's response URL (crhelper's HTTPS connection, mocked)."""
    calls = connection.return_value.request.call_args_list
    assert all(call.kwargs["method"] == "PUT" for call in calls)
    return [json.loads(call.kwargs["body"]) for call in calls]


ANSWERS = "crhelper.utils.HTTPSConnection"


class ShortOfTime(LambdaContext):
    """An invocation with only the given time left."""

    def __init__(self, remaining_ms: int) -> None:
        super().__init__("cleanup")
        object.__setattr__(self, "remaining_ms", remaining_ms)

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def versioned(s3):
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for i in range(5):
        s3.put_object(Bucket=BUCKET, Key=f"face_imgs/a/{i}.jpg", Body=b"1")
        s3.put_object(Bucket=BUCKET, Key=f"face_imgs/a/{i}.jpg", Body=b"2")
    s3.delete_object(Bucket=BUCKET, Key="face_imgs/a/0.jpg")
    return s3


def test_delete_removes_every_version_and_marker(versioned) -> None:
    with mock.patch(ANSWERS) as urlopen:
        cleanup.handler(_event("Delete"), LambdaContext("cleanup"))
    (response,) = _responses(urlopen)
    assert response["Status"] == "SUCCESS"
    assert response["PhysicalResourceId"] == f"empty-on-delete-{BUCKET}"
    listing = versioned.list_object_versions(Bucket=BUCKET)
    assert not listing.get("Versions") and not listing.get("DeleteMarkers")
    versioned.delete_bucket(Bucket=BUCKET)


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_keep_the_data(versioned, request_type: str) -> None:
    with mock.patch(ANSWERS) as urlopen:
        cleanup.handler(_event(request_type), LambdaContext("cleanup"))
    assert _responses(urlopen)[0]["Status"] == "SUCCESS"
    assert len(versioned.list_object_versions(Bucket=BUCKET)["Versions"]) == 10


def test_errors_are_reported_as_failed(s3) -> None:
    event = {**_event("Delete"), "ResourceProperties": {"BucketName": "no-such-bucket"}}
    with mock.patch(ANSWERS) as urlopen:
        cleanup.handler(event, LambdaContext("cleanup"))
    (response,) = _responses(urlopen)
    assert response["Status"] == "FAILED" and "NoSuchBucket" in response["Reason"]


def test_a_bucket_that_cannot_be_emptied_in_time_gets_a_failed_answer_that_says_what_to_do(versioned) -> None:
    # Only the safety margin is left: emptying stops at once and CloudFormation hears why, long before
    # the Lambda's timeout, instead of waiting an hour for an answer.
    with mock.patch(ANSWERS) as connection:
        cleanup.handler(_event("Delete"), ShortOfTime(int(cleanup.TIME_MARGIN_SECONDS * 1000)))
    (response,) = _responses(connection)
    assert response["Status"] == "FAILED"
    assert "was not emptied in time (0 deleted)" in response["Reason"]
    assert "then delete the stack again" in response["Reason"]
    assert len(versioned.list_object_versions(Bucket=BUCKET)["Versions"]) == 10  # nothing half-done hidden
