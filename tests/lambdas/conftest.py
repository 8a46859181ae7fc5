"""Fixtures of the handler tests: a moto account with the data bucket, and the functions' environment."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from handler_fixtures import BUCKET, IMAGE, ROLE
from moto import mock_aws
from support.handler_env import set_default_handler_env

set_default_handler_env()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh moto account; botocore does not retry (so throttling reaches our code at once)."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with mock_aws():
        yield


@pytest.fixture
def s3(aws: None):
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def sagemaker(aws: None):
    return boto3.client("sagemaker", region_name="us-east-1")


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment template.yaml gives the functions (defaults), for the data bucket BUCKET."""
    env = {
        "DATA_BUCKET": BUCKET,
        "IMAGES_PREFIX": "face_imgs/",
        "CONFIG_PREFIX": "config/",
        "RESULTS_PREFIX": "results/",
        "TRAINING_INSTANCE_TYPE": "ml.g4dn.xlarge",
        "TRAINING_INSTANCE_COUNT": "1",
        "TRAINING_IMAGE_URI": IMAGE,
        "SAGEMAKER_ROLE_ARN": ROLE,
        "TRAINING_VOLUME_SIZE_GB": "50",
        "MAX_RUNTIME_SECONDS": "21600",
        "USE_SPOT_INSTANCES": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
