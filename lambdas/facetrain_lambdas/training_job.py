"""The SageMaker training job of a run: its name, its CreateTrainingJob request, and starting it once."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError
from facetrain.contract.hyperparameters import sagemaker_limit_problems
from facetrain.contract.names import (
    CONFIG_CHANNEL,
    IMAGES_CHANNEL,
    MANIFEST_PREFIX_HYPERPARAMETERS,
    PREVIOUS_CHANNEL,
    RUN_ID_HYPERPARAMETER,
)
from pydantic import Field

from .errors import InvalidInput, TrainingQuotaExceeded, transient_aws_errors
from .function_settings import FunctionSettings
from .layout import RunLayout, s3_uri
from .run_record import RunRecord

JOB_NAME_PREFIX = "facetrain-"  # the IAM policies allow training-job/facetrain-*
MAX_JOB_NAME = 63
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
PROJECT_TAG = "facetrain"


class TrainingSettings(FunctionSettings):
    """The stack's training settings (template.yaml Environment of the start function)."""

    training_image: str = Field(validation_alias="TRAINING_IMAGE_URI")
    role_arn: str = Field(validation_alias="SAGEMAKER_ROLE_ARN")
    volume_size_gb: int = Field(50, ge=1, le=16384, validation_alias="TRAINING_VOLUME_SIZE_GB")
    max_runtime_seconds: int = Field(21600, ge=60, le=2419200, validation_alias="MAX_RUNTIME_SECONDS")
    use_spot: bool = Field(False, validation_alias="USE_SPOT_INSTANCES")


def job_name(run_id: str) -> str:
    """`facetrain-<run id>`, or a sanitised, shortened form with a hash of the run id: ≤ 63 chars of
    [A-Za-z0-9-], the same for the same run id."""
    plain = JOB_NAME_PREFIX + run_id
    if len(plain) <= MAX_JOB_NAME and re.fullmatch(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*", run_id):
        return plain
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", run_id).strip("-")
    room = MAX_JOB_NAME - len(JOB_NAME_PREFIX) - len(digest) - 1
    stem = cleaned[:room].rstrip("-")
    return f"{JOB_NAME_PREFIX}{stem}-{digest}" if stem else f"{JOB_NAME_PREFIX}{digest}"


def _manifest_channel(name: str, bucket: str, key: str, sharded: bool = False) -> dict[str, Any]:
    """A File-mode channel of the manifest's objects; sharded: each host gets only its share."""
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "ManifestFile",
                "S3Uri": s3_uri(bucket, key),
                "S3DataDistributionType": "ShardedByS3Key" if sharded else "FullyReplicated",
            }
        },
        "InputMode": "File",
    }


def manifest_prefixes(record: RunRecord) -> dict[str, str]:
    """Each ManifestFile channel of the run's job → the key prefix validate wrote in its manifest's "prefix"
    entry: the images prefix, the config prefix (cfg-manifest.json), the published run's folder
    (previous-manifest.json, validate.previous_embeddings_key)."""
    run = record.request
    prefixes = {IMAGES_CHANNEL: run.images_prefix}
    if record.cfg_manifest_key:
        prefixes[CONFIG_CHANNEL] = run.config_prefix
    if record.previous_manifest_key and record.previous_run_id:
        previous = RunLayout(run.bucket, run.results_prefix, record.previous_run_id)
        prefixes[PREVIOUS_CHANNEL] = previous.run_prefix
    return prefixes


def prefix_hyperparameters(record: RunRecord) -> dict[str, str]:
    """The manifest prefixes as the hyperparameters the job reads them from (contract.names): with them
    it finds each channel's files whether SageMaker wrote them at their suffix or under their full key
    (facetrain.channel_layout)."""
    prefixes = manifest_prefixes(record)
    return {MANIFEST_PREFIX_HYPERPARAMETERS[channel]: prefix for channel, prefix in prefixes.items()}


def fact_hyperparameters(record: RunRecord) -> dict[str, str]:
    """What the job is told besides its settings (contract.names.NOT_SETTING_HYPERPARAMETERS, which it
    leaves out of its settings and so of every fingerprint): each manifest channel's key prefix and the
    run id (for metrics.json and report.html)."""
    return {**prefix_hyperparameters(record), RUN_ID_HYPERPARAMETER: record.request.run_id}


def job_hyperparameters(record: RunRecord) -> dict[str, str]:
    """The run's settings as CreateTrainingJob strings, plus what the job is told besides them
    (fact_hyperparameters)."""
    return {**record.sagemaker_hyperparameters(), **fact_hyperparameters(record)}


def training_job_request(record: RunRecord, training: TrainingSettings) -> dict[str, Any]:
    """The CreateTrainingJob request of a run."""
    layout = record.layout
    # Several instances: each downloads and embeds only its share of the photos (the job gathers them).
    run = record.request
    sharded = run.instance_count > 1
    channels = [_manifest_channel(IMAGES_CHANNEL, run.bucket, record.manifest_key, sharded=sharded)]
    if record.cfg_manifest_key:
        channels.append(_manifest_channel(CONFIG_CHANNEL, run.bucket, record.cfg_manifest_key))
    if record.previous_manifest_key:
        channels.append(_manifest_channel(PREVIOUS_CHANNEL, run.bucket, record.previous_manifest_key))
    problems = sagemaker_limit_problems({**run.hyperparameters, **fact_hyperparameters(record)})
    if problems:  # validate refuses these first; a run record from elsewhere is checked here too
        raise InvalidInput(problems)
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": training.max_runtime_seconds}
    request: dict[str, Any] = {
        "TrainingJobName": job_name(run.run_id),
        "AlgorithmSpecification": {"TrainingImage": training.training_image, "TrainingInputMode": "File"},
        "RoleArn": training.role_arn,
        "HyperParameters": job_hyperparameters(record),
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": layout.training_output_uri},
        "ResourceConfig": {
            "InstanceType": run.instance_type,
            "InstanceCount": run.instance_count,
            "VolumeSizeInGB": training.volume_size_gb,
        },
        "StoppingCondition": stopping,
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "Tags": [
            {"Key": "project", "Value": PROJECT_TAG},
            {"Key": "facetrain:run-id", "Value": run.run_id},
        ],
    }
    if training.use_spot:
        # Spot capacity may take a while; interrupted jobs resume from checkpoints: allow 2x the runtime.
        stopping["MaxWaitTimeInSeconds"] = 2 * training.max_runtime_seconds
        request["EnableManagedSpotTraining"] = True
        request["CheckpointConfig"] = {"S3Uri": layout.checkpoint_uri, "LocalPath": CHECKPOINT_LOCAL_PATH}
    return request


def describe_job(sagemaker: Any, name: str) -> dict[str, Any] | None:
    """DescribeTrainingJob, or None when no job has that name."""
    try:
        with transient_aws_errors(f"describing training job {name}"):
            return dict(sagemaker.describe_training_job(TrainingJobName=name))
    except ClientError as exc:
        if (
            exc.response.get("Error", {}).get("Code") == "ValidationException"
        ):  # "Could not find training job"
            return None
        raise


def _already_exists(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    return code == "ResourceInUse" or (code == "ValidationException" and "already exists" in message)


def start_training_job(sagemaker: Any, request: Mapping[str, Any]) -> bool:
    """Create the job unless a job of that name exists already (a retried start); True when created here."""
    name = request["TrainingJobName"]
    if describe_job(sagemaker, name) is not None:
        return False
    try:
        with transient_aws_errors(f"creating training job {name}"):
            sagemaker.create_training_job(**request)
    except ClientError as exc:
        if _already_exists(exc):
            return False
        if exc.response.get("Error", {}).get("Code") == "ResourceLimitExceeded":
            message = exc.response.get("Error", {}).get("Message", "")
            raise TrainingQuotaExceeded(
                f"SageMaker refused training job {name} for an account quota: {message} Raise it in the "
                'Service Quotas console (Amazon SageMaker, this region; docs/workflow.md, "Before the first '
                'run: SageMaker quotas"), then start the execution again.'
            ) from exc
        raise
    return True
