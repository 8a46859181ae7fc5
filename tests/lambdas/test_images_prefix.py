"""validate/start tell the job the images manifest's key prefix, so that it reads the photos channel in
either layout (facetrain.channel_layout); validate refuses the one identity name that would confuse them."""

from __future__ import annotations

import json

from facetrain.contract.names import IMAGES_PREFIX_HYPERPARAMETER
from facetrain_lambdas import start
from facetrain_lambdas.dataset import ListedObject, check_photos
from facetrain_lambdas.run_request import StackDefaults, resolve_request
from facetrain_lambdas.validate import validate_run
from facetrain_offline.lambda_runtime import LambdaContext
from handler_fixtures import BUCKET
from support.testkit import upload_photos


def test_the_job_gets_the_key_prefix_of_the_manifests_prefix_entry(s3, sagemaker, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 2, "bob": 2}, prefix="teams/berlin/")
    request = resolve_request(
        {"run_id": "r1", "images_prefix": "teams/berlin"}, "exec-1", StackDefaults(bucket=BUCKET)
    )
    pointer = validate_run(s3, request, 10**6)
    start.handler(
        {"execution": "exec-1", "run": pointer.model_dump(), "poll_interval_seconds": 30},
        LambdaContext("start"),
    )

    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=pointer.manifest_key)["Body"].read())
    job = sagemaker.describe_training_job(TrainingJobName="facetrain-r1")  # moto keeps HyperParameters
    assert job["HyperParameters"][IMAGES_PREFIX_HYPERPARAMETER] == manifest[0]["prefix"].removeprefix(
        f"s3://{BUCKET}/"
    )
    assert job["HyperParameters"][IMAGES_PREFIX_HYPERPARAMETER] == "teams/berlin/"


def test_an_identity_named_like_the_prefixs_first_folder_is_refused() -> None:
    objects = [
        ListedObject(key=key, size=10, etag="e") for key in ("photos/photos/1.jpg", "photos/bob/1.jpg")
    ]
    _, problems = check_photos(objects, "b", "photos/", 1, 10**6)
    assert problems == [
        "identity folder photos/ has the name of the first folder of the images prefix "
        "'photos/': the training job could not tell its photos from photos SageMaker writes under their "
        "full key (photos/<name>/<photo>); rename the folder"
    ]
    _, fine = check_photos(objects[1:], "b", "photos/", 1, 10**6)
    assert fine == []
