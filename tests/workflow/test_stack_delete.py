"""Deleting the stack (`sam delete`) offline, in CloudFormation's order (facetrain_offline.stack_delete):
the cleanup custom resource empties the bucket while the upload trigger still runs, and no retraining
starts, because UploadRule depends on the cleanup and so is deleted before it (issue 22, item 6).
Without that DependsOn the same delete starts one: the test can fail."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from facetrain_offline.local_aws import DEFAULT_TEMPLATE, local_aws
from facetrain_offline.sqs_event_source import SqsEventPoller
from facetrain_offline.stack_delete import DeletedStack, delete
from moto.s3.models import S3Backend
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from support.testkit import FakeSageMaker, upload_photos
from support.workflow import TEST_PARAMETERS, WorkflowStack, deployed_workflow

# The trigger's executions wait 2 s for uploads to settle: a retraining the delete started is still
# waiting when its state machine goes (which stops it), so it cannot write into the bucket meanwhile.
DELETE_PARAMETERS = {**TEST_PARAMETERS, "UploadSettleSeconds": "2", "UploadBatchingWindowSeconds": "0"}
FIX = "    DependsOn: EmptyDataBucketOnDelete\n"


def _template_without_the_fix(directory: Path) -> Path:
    """template.yaml with UploadRule's DependsOn removed (beside a copy of the ASL it packages)."""
    text = DEFAULT_TEMPLATE.read_text(encoding="utf-8")
    assert text.count(FIX) == 1, "UploadRule's DependsOn is not in template.yaml as this test expects"
    shutil.copytree(DEFAULT_TEMPLATE.parent / "state_machine", directory / "state_machine")
    variant = directory / "template.yaml"
    variant.write_text(text.replace(FIX, ""), encoding="utf-8")
    return variant


def _publish_a_run(workflow: WorkflowStack, poller: SqsEventPoller, timeout: float = 60) -> None:
    """Upload photos and let the upload trigger's retraining publish them."""
    upload_photos(workflow.s3, workflow.bucket, {"ann": 2, "bob": 2})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        poller.poll_once()
        executions = workflow.sfn.list_executions(stateMachineArn=workflow.state_machine_arn)["executions"]
        if executions and all(e["status"] == "SUCCEEDED" for e in executions) and not poller.pending():
            return
        time.sleep(0.1)
    raise TimeoutError("the upload-triggered retraining did not succeed")


def _delete_watched(
    workflow: WorkflowStack, poller: SqsEventPoller, monkeypatch: pytest.MonkeyPatch
) -> tuple[DeletedStack, list[str], list[str]]:
    """Delete the stack with the trigger's event source polled throughout; return the report, the
    executions started and the keys written into the data bucket while the delete ran."""
    bucket = workflow.bucket
    started: list[str] = []
    written: list[str] = []
    start_execution, put_object = StepFunctionsParserBackend.start_execution, S3Backend.put_object

    def spy_start(backend: Any, state_machine_arn: str, *args: Any, **kwargs: Any) -> Any:
        started.append(state_machine_arn)
        return start_execution(backend, state_machine_arn, *args, **kwargs)

    def spy_put(backend: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        if bucket_name == bucket:
            written.append(key_name)
        return put_object(backend, bucket_name, key_name, *args, **kwargs)

    monkeypatch.setattr(StepFunctionsParserBackend, "start_execution", spy_start)
    monkeypatch.setattr(S3Backend, "put_object", spy_put)
    report = delete(workflow.local, services=poller.poll_once)
    return report, started, written


def _deleted(
    template: Path, fake_sagemaker: FakeSageMaker, monkeypatch: pytest.MonkeyPatch
) -> tuple[DeletedStack, list[str], list[str], str]:
    with deployed_workflow(fake_sagemaker, DELETE_PARAMETERS, template=template) as workflow:
        poller = SqsEventPoller(workflow.local)
        _publish_a_run(workflow, poller)
        versions = workflow.s3.list_object_versions(Bucket=workflow.bucket).get("Versions", [])
        assert len(versions) > 4  # the photos, the run's records and the published results
        bucket = workflow.bucket
        report, started, written = _delete_watched(workflow, poller, monkeypatch)
        buckets = {
            b["Name"] for b in boto3.client("s3", region_name=workflow.local.region).list_buckets()["Buckets"]
        }
        assert bucket not in buckets and workflow.local.physical_ids == {}
    return report, started, written, bucket


def test_deleting_the_stack_empties_and_removes_the_bucket_and_starts_no_retraining(
    fake_sagemaker: FakeSageMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, started, written, _ = _deleted(DEFAULT_TEMPLATE, fake_sagemaker, monkeypatch)

    assert report.answers["EmptyDataBucketOnDelete"]["Status"] == "SUCCESS"
    order = report.deleted
    assert order.index("UploadRule") < order.index("EmptyDataBucketOnDelete") < order.index("DataBucket")
    assert started == [] and written == []
    assert len(fake_sagemaker.created) == 1  # only the run before the delete


def test_without_the_dependency_the_cleanup_starts_a_retraining(
    fake_sagemaker: FakeSageMaker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    report, started, _, _ = _deleted(_template_without_the_fix(tmp_path), fake_sagemaker, monkeypatch)

    order = report.deleted
    assert order.index("EmptyDataBucketOnDelete") < order.index("UploadRule")  # the race CloudFormation runs
    assert len(started) == 1  # the cleanup's "Object Deleted" events reached the trigger


def test_permanently_deleting_versions_announces_each_as_s3_does() -> None:
    """DeleteObjects with VersionIds (the cleanup's calls): one "Object Deleted" per object version, as
    S3 sends ("Permanently Deleted"); moto alone announces only a key's last one."""
    with local_aws("us-east-1"):
        s3, sqs, events = (boto3.client(n, region_name="us-east-1") for n in ("s3", "sqs", "events"))
        s3.create_bucket(Bucket="photos")
        s3.put_bucket_versioning(Bucket="photos", VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_notification_configuration(
            Bucket="photos", NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        queue = sqs.create_queue(QueueName="deleted")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="deleted", EventPattern=json.dumps({"detail-type": ["Object Deleted"]}))
        events.put_targets(Rule="deleted", Targets=[{"Id": "queue", "Arn": arn}])
        for body in (b"1", b"2", b"3"):
            s3.put_object(Bucket="photos", Key="face_imgs/ann/1.jpg", Body=body)
        s3.put_object(Bucket="photos", Key="face_imgs/bob/1.jpg", Body=b"1")
        s3.delete_object(Bucket="photos", Key="face_imgs/bob/1.jpg")  # a delete marker: announced too
        listing = s3.list_object_versions(Bucket="photos")
        targets = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in [*listing["Versions"], *listing["DeleteMarkers"]]
        ]
        s3.delete_objects(Bucket="photos", Delete={"Objects": targets, "Quiet": True})

        keys = []
        while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                keys.append(json.loads(message["Body"])["detail"]["object"]["key"])
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    # bob: the delete marker, then his one version; ann: her three versions
    assert sorted(keys) == ["face_imgs/ann/1.jpg"] * 3 + ["face_imgs/bob/1.jpg"] * 2
