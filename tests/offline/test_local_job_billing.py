"""A training job run on this machine bills nothing: the local SageMaker's DescribeTrainingJob reports its
training time and no BillableTimeInSeconds, so the success notification says it ran with no billable time
(facetrain_lambdas.publish) instead of billing this machine as the instances requested (issue 27)."""

from __future__ import annotations

import time

from facetrain_offline.training_job_status import finish
from moto.sagemaker.models import FakeTrainingJob


def _job() -> FakeTrainingJob:
    return FakeTrainingJob(
        account_id="123456789012",
        region_name="us-east-1",
        training_job_name="facetrain-r1",
        hyper_parameters={},
        algorithm_specification={"TrainingImage": "facetrain:local", "TrainingInputMode": "File"},
        role_arn="arn:aws:iam::123456789012:role/r",
        input_data_config=[],
        output_data_config={"S3OutputPath": "s3://b/results/runs/r1/training/"},
        resource_config={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        vpc_config={},
        stopping_condition={"MaxRuntimeInSeconds": 3600},
        tags=[],
        enable_network_isolation=True,
        enable_inter_container_traffic_encryption=False,
        enable_managed_spot_training=False,
        checkpoint_config={},
        debug_hook_config={},
        debug_rule_configurations=[],
        tensor_board_output_config={},
        experiment_config={},
    )


def test_a_finished_local_job_reports_its_training_time_and_no_billable_time() -> None:
    job = _job()
    finish(job, "Completed", "Completed", started=time.monotonic() - 3)
    described = job.response_object
    assert described["TrainingJobStatus"] == "Completed"
    assert described["TrainingTimeInSeconds"] >= 3
    assert "BillableTimeInSeconds" not in described
