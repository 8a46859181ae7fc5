"""The start Lambda's CreateTrainingJob request as the SageMaker SDK's ModelTrainer arguments.

`trainer_arguments` hands the request to ModelTrainer field by field; a field it does not know raises
LaunchError instead of being dropped. The SDK names the job `<base>-<timestamp>` (ModelTrainer takes no
fixed name): `base_job_name` is the start Lambda's name, cut to leave room for the timestamp. The SDK is
imported only when the arguments are built (it is in .venv-launch only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .launch_checks import LaunchError

SDK_TIMESTAMP = len("-YYYYmmddHHMMSS")  # what ModelTrainer appends to base_job_name (-%Y%m%d%H%M%S)
MAX_JOB_NAME = 63


def base_job_name(name: str) -> str:
    """The start Lambda's job name, cut so that the SDK's `-<timestamp>` keeps it within 63 characters."""
    return name[: MAX_JOB_NAME - SDK_TIMESTAMP].rstrip("-")


def trainer_arguments(request: Mapping[str, Any]) -> dict[str, Any]:
    """ModelTrainer's arguments for a CreateTrainingJob request, every field carried over."""
    from sagemaker.core.training.configs import (
        Channel,
        CheckpointConfig,
        Compute,
        DataSource,
        Networking,
        OutputDataConfig,
        S3DataSource,
        StoppingCondition,
        Tag,
    )

    known = {
        "TrainingJobName",
        "AlgorithmSpecification",
        "RoleArn",
        "HyperParameters",
        "InputDataConfig",
        "OutputDataConfig",
        "ResourceConfig",
        "StoppingCondition",
        "EnableNetworkIsolation",
        "EnableInterContainerTrafficEncryption",
        "Tags",
        "EnableManagedSpotTraining",
        "CheckpointConfig",
    }
    unknown = sorted(set(request) - known)
    if unknown:
        raise LaunchError(
            [f"the training job request has {', '.join(unknown)}, which launch does not pass on"]
        )
    algorithm, resources, stopping = (
        request["AlgorithmSpecification"],
        request["ResourceConfig"],
        request["StoppingCondition"],
    )
    channels = [
        Channel(
            channel_name=channel["ChannelName"],
            input_mode=channel["InputMode"],
            data_source=DataSource(
                s3_data_source=S3DataSource(
                    s3_data_type=channel["DataSource"]["S3DataSource"]["S3DataType"],
                    s3_uri=channel["DataSource"]["S3DataSource"]["S3Uri"],
                    s3_data_distribution_type=channel["DataSource"]["S3DataSource"]["S3DataDistributionType"],
                )
            ),
        )
        for channel in request["InputDataConfig"]
    ]
    arguments: dict[str, Any] = {
        "base_job_name": base_job_name(request["TrainingJobName"]),
        "training_image": algorithm["TrainingImage"],
        "training_input_mode": algorithm["TrainingInputMode"],
        "role": request["RoleArn"],
        "hyperparameters": dict(request["HyperParameters"]),
        "input_data_config": channels,
        "output_data_config": OutputDataConfig(s3_output_path=request["OutputDataConfig"]["S3OutputPath"]),
        "compute": Compute(
            instance_type=resources["InstanceType"],
            instance_count=resources["InstanceCount"],
            volume_size_in_gb=resources["VolumeSizeInGB"],
            enable_managed_spot_training=request.get("EnableManagedSpotTraining", False),
        ),
        "stopping_condition": StoppingCondition(
            max_runtime_in_seconds=stopping["MaxRuntimeInSeconds"],
            max_wait_time_in_seconds=stopping.get("MaxWaitTimeInSeconds"),
        ),
        "networking": Networking(
            enable_network_isolation=request["EnableNetworkIsolation"],
            enable_inter_container_traffic_encryption=request["EnableInterContainerTrafficEncryption"],
        ),
        "tags": [Tag(key=tag["Key"], value=tag["Value"]) for tag in request["Tags"]],
    }
    if "CheckpointConfig" in request:
        checkpoint = request["CheckpointConfig"]
        arguments["checkpoint_config"] = CheckpointConfig(
            s3_uri=checkpoint["S3Uri"], local_path=checkpoint["LocalPath"]
        )
    return arguments
