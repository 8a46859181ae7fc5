"""Job names, the CreateTrainingJob request, and idempotent start against moto SageMaker."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError
from facetrain_lambdas import start
from facetrain_lambdas.errors import TrainingQuotaExceeded
from facetrain_lambdas.run_request import StackDefaults, resolve_request
from facetrain_lambdas.training_job import (
    TrainingSettings,
    job_name,
    start_training_job,
    training_job_request,
)
from facetrain_lambdas.validate import validate_run
from facetrain_offline.lambda_runtime import LambdaContext
from handler_fixtures import BUCKET, IMAGE, ROLE, run_record
from support.testkit import upload_photos

JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # CreateTrainingJob's pattern


@pytest.mark.parametrize(
    "run_id",
    [
        "weekly-1",
        "exec_with_underscores",
        "a.b.c",
        "x" * 80,
        "7f3c2e9a-0a4b-4c55-9d8e-1c2b3a4d5e6f",
        "-_-",
        "A" * 53,
    ],
)
def test_job_names_are_valid_and_stable(run_id: str) -> None:
    name = job_name(run_id)
    assert JOB_NAME.fullmatch(name) and len(name) <= 63 and name.startswith("facetrain-")
    assert job_name(run_id) == name


def test_simple_run_ids_are_kept_and_others_differ() -> None:
    assert job_name("weekly-1") == "facetrain-weekly-1"
    assert job_name("a_b") != job_name("a-b")
    assert job_name("x" * 80) != job_name("x" * 79)


_record = run_record


def test_request_has_manifest_channels_isolation_and_tags() -> None:
    request = training_job_request(_record(), TrainingSettings(training_image=IMAGE, role_arn=ROLE))
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in request["InputDataConfig"]}
    assert channels["face_imgs"] == {
        "S3DataType": "ManifestFile",
        "S3Uri": f"s3://{BUCKET}/results/runs/r1/manifest.json",
        "S3DataDistributionType": "FullyReplicated",
    }
    assert channels["cfg"]["S3Uri"].endswith("/cfg-manifest.json")
    assert request["OutputDataConfig"] == {"S3OutputPath": f"s3://{BUCKET}/results/runs/r1/training/"}
    assert request["EnableNetworkIsolation"] is True
    # The settings, the key prefix of each manifest's "prefix" entry for the job (channel_layout.py), and
    # the run id for its metrics.json and report.html.
    assert request["HyperParameters"] == {
        "batch_size": "8",
        "facetrain_images_prefix": "face_imgs/",
        "facetrain_cfg_prefix": "config/",
        "facetrain_run_id": "r1",
    }
    assert {"Key": "project", "Value": "facetrain"} in request["Tags"]
    assert {"Key": "facetrain:run-id", "Value": "r1"} in request["Tags"]
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 21600}
    assert "EnableManagedSpotTraining" not in request


def test_the_job_is_told_its_run_id_and_reads_it_as_no_setting(tmp_path) -> None:
    """CreateTrainingJob carries the run id (RUN_ID_HYPERPARAMETER); the job, given those hyperparameters as
    SageMaker writes them, has the run id for its outputs and the same settings as without it: the run id
    enters no settings or embedding fingerprint (a run with another id reuses the previous embeddings)."""
    from facetrain.contract.names import RUN_ID_HYPERPARAMETER
    from facetrain.job import job_run_id, resolve_settings
    from facetrain.sagemaker_env import load_environment, write_tree

    settings = TrainingSettings(training_image=IMAGE, role_arn=ROLE)
    request = training_job_request(_record(run_id="weekly_7.b"), settings)
    assert request["HyperParameters"][RUN_ID_HYPERPARAMETER] == "weekly_7.b"
    write_tree(tmp_path / "told", request["HyperParameters"], {})
    told = load_environment(tmp_path / "told")
    untold = {k: v for k, v in request["HyperParameters"].items() if k != RUN_ID_HYPERPARAMETER}
    write_tree(tmp_path / "untold", untold, {})
    older = load_environment(tmp_path / "untold")  # a request from before the run id was passed
    assert (job_run_id(told.hyperparameters), job_run_id(older.hyperparameters)) == ("weekly_7.b", None)
    assert resolve_settings(told) == resolve_settings(older)
    assert resolve_settings(told).batch_size == 8


def test_request_without_config_and_with_spot() -> None:
    settings = TrainingSettings.from_env(
        {
            "TRAINING_IMAGE_URI": IMAGE,
            "SAGEMAKER_ROLE_ARN": ROLE,
            "USE_SPOT_INSTANCES": "true",
            "MAX_RUNTIME_SECONDS": "3600",
            "TRAINING_VOLUME_SIZE_GB": "100",
        }
    )
    request = training_job_request(_record(cfg_manifest_key=None, instance_count=2), settings)
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["face_imgs"]
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert request["EnableManagedSpotTraining"] is True
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/results/runs/r1/checkpoints/"
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.g4dn.xlarge",
        "InstanceCount": 2,
        "VolumeSizeInGB": 100,
    }


def test_start_handler_creates_the_job_once(s3, sagemaker, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 2})
    pointer = validate_run(
        s3, resolve_request({"run_id": "r1"}, "exec-1", StackDefaults(bucket=BUCKET)), 10**6
    )
    event = {"execution": "exec-1", "run": pointer.model_dump(), "poll_interval_seconds": 30}

    first = start.handler(event, LambdaContext("start"))
    second = start.handler(event, LambdaContext("start"))

    assert first == {"training_job_name": "facetrain-r1", "created": True, "wait_seconds": 30}
    assert second == {"training_job_name": "facetrain-r1", "created": False, "wait_seconds": 30}
    job = sagemaker.describe_training_job(TrainingJobName="facetrain-r1")
    assert job["RoleArn"] == ROLE and job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["EnableNetworkIsolation"] is True


def test_a_create_race_that_finds_the_name_taken_is_success() -> None:
    class Racing:
        def describe_training_job(self, **kwargs: object) -> None:
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "Could not find"}}, "Describe"
            )

        def create_training_job(self, **kwargs: object) -> None:
            message = (
                "Training job names must be unique ... a training job with this name already exists (arn)"
            )
            raise ClientError({"Error": {"Code": "ValidationException", "Message": message}}, "Create")

    assert start_training_job(Racing(), {"TrainingJobName": "facetrain-r1"}) is False


def test_other_create_errors_propagate() -> None:
    class Denied:
        def describe_training_job(self, **kwargs: object) -> None:
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "Could not find"}}, "Describe"
            )

        def create_training_job(self, **kwargs: object) -> None:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Create")

    with pytest.raises(ClientError, match="AccessDenied"):
        start_training_job(Denied(), {"TrainingJobName": "facetrain-r1"})


def test_a_quota_refusal_names_the_quota_and_the_fix() -> None:
    quota = "The account-level service limit 'ml.g4dn.xlarge for training job usage' is 0 Instances."

    class NoQuota:
        def describe_training_job(self, **kwargs: object) -> None:
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "Could not find"}}, "Describe"
            )

        def create_training_job(self, **kwargs: object) -> None:
            raise ClientError({"Error": {"Code": "ResourceLimitExceeded", "Message": quota}}, "Create")

    with pytest.raises(TrainingQuotaExceeded) as refused:
        start_training_job(NoQuota(), {"TrainingJobName": "facetrain-r1"})
    assert quota in str(refused.value) and "facetrain-r1" in str(refused.value)
    assert "Service Quotas console" in str(refused.value)


def test_several_instances_shard_the_photos_and_reuse_the_previous_embeddings() -> None:
    record = _record(instance_count=3, previous_manifest_key="results/runs/r0/previous-manifest.json")
    request = training_job_request(record, TrainingSettings(training_image=IMAGE, role_arn=ROLE))
    sources = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in request["InputDataConfig"]}
    assert sources["face_imgs"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert sources["previous"]["S3DataDistributionType"] == "FullyReplicated"
    assert sources["previous"]["S3Uri"].endswith("results/runs/r0/previous-manifest.json")


def test_every_client_follows_the_attempts_of_the_environment_it_is_made_in(monkeypatch) -> None:
    from facetrain_lambdas.clients import client

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    assert client("sagemaker").meta.config.retries["total_max_attempts"] == 3
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore once kept the first client's 3 here
    assert client("sagemaker").meta.config.retries["total_max_attempts"] == 1
