"""Upload-triggered retraining, end to end in moto: S3 → EventBridge rule → SQS → trigger Lambda → the
state machine (settle, validate, train, publish, release or hand over), as template.yaml wires them."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from facetrain.contract.enrollment_csv import parse_csv
from facetrain_lambdas.upload_batch import UploadStateStore
from facetrain_offline import dynamodb_conflicts
from facetrain_offline.sqs_event_source import SqsEventPoller, maximum_concurrency
from support.testkit import JPEG, FakeSageMaker, upload_photos
from support.workflow import (
    REGION,
    TEST_PARAMETERS,
    WorkflowStack,
    deployed_workflow,
)

# Settle after 1 s of quiet; the event source gathers for 1 s (Lambda's least window for batches above 10).
UPLOAD_PARAMETERS = {**TEST_PARAMETERS, "UploadSettleSeconds": "1", "UploadBatchingWindowSeconds": "1"}
# Bursts (300, 1,000 photos) in concurrent batches: settle after 10 s of quiet (the default is 120 s), so
# that batches still retrying conflicts, or delivered late by the emulator's slow queue, are counted before
# the execution settles (else: a second, follow-up run, which is correct but not what these tests show).
BURST_PARAMETERS = {**UPLOAD_PARAMETERS, "UploadSettleSeconds": "10"}


class UploadWorkflow(WorkflowStack):
    """The deployed workflow plus the SQS event-source poller, and helpers to wait for all work."""

    poller: SqsEventPoller

    def executions(self) -> list[dict[str, Any]]:
        return self.sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"]

    def settle(self, timeout: float = 90) -> list[dict[str, Any]]:
        """Deliver every queued event and wait until no execution runs; return the executions."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            delivered = self.poller.poll_once()
            running = [e for e in self.executions() if e["status"] == "RUNNING"]
            quiet = quiet + 1 if not delivered and not running and not self.poller.pending() else 0
            if quiet >= 3:
                return self.executions()
            time.sleep(0.1)
        raise TimeoutError("upload work still going on")

    def queued(self, queue_url: str) -> int:
        """Messages in a queue, visible or received and not yet deleted."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.poller.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
        return sum(int(attributes["Attributes"][name]) for name in names)

    def drain(self, timeout: float = 90) -> list[dict[str, Any]]:
        """Deliver until no event is queued or in flight and no execution runs; return the executions."""
        queue = self.local.event_sources[0].queue_url
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            delivered = self.poller.poll_once()
            running = [e for e in self.executions() if e["status"] == "RUNNING"]
            if not delivered and not running and not self.queued(queue):
                return self.executions()
            time.sleep(0.1)
        raise TimeoutError(f"upload work still going on: {self.queued(queue)} events queued or in flight")

    def upload_state(self) -> tuple[Any, int]:
        """The bucket's upload state, and how many events the table recorded."""
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        table = self.local.physical("UploadStateTable")
        pages = dynamodb.get_paginator("scan").paginate(TableName=table)
        events = sum(1 for page in pages for item in page["Items"] if item["pk"]["S"].startswith("event#"))
        return UploadStateStore(dynamodb, table, self.bucket).read(), events

    def states(self, execution: dict[str, Any]) -> list[str]:
        return [
            event["stateEnteredEventDetails"]["name"]
            for event in self.history(execution["executionArn"])
            if event["type"].endswith("StateEntered")
        ]

    def manifest(self, job: dict[str, Any]) -> list[str]:
        channel = next(c for c in job["input_data_config"] if c["ChannelName"] == "face_imgs")
        key = channel["DataSource"]["S3DataSource"]["S3Uri"].split("/", 3)[3]
        return json.loads(self.read(key))[1:]

    def published_identities(self) -> list[str]:
        rows = parse_csv(self.read("results/final_mean_embeddings.csv").decode())
        return sorted(identity for identity, _, _ in rows)


@contextmanager
def _upload_workflow(fake_sagemaker: FakeSageMaker, parameters: dict[str, str]) -> Iterator[UploadWorkflow]:
    with deployed_workflow(fake_sagemaker, parameters, UploadWorkflow) as workflow:
        assert isinstance(workflow, UploadWorkflow)
        workflow.poller = SqsEventPoller(workflow.local)
        yield workflow


@pytest.fixture
def uploads(fake_sagemaker: FakeSageMaker) -> Iterator[UploadWorkflow]:
    with _upload_workflow(fake_sagemaker, UPLOAD_PARAMETERS) as workflow:
        yield workflow


@pytest.fixture
def burst_uploads(fake_sagemaker: FakeSageMaker) -> Iterator[UploadWorkflow]:
    with _upload_workflow(fake_sagemaker, BURST_PARAMETERS) as workflow:
        yield workflow


def _invocations(workflow: UploadWorkflow) -> Counter[str]:
    return Counter(name for name, _ in workflow.lambdas.invocations)


def test_a_300_photo_upload_trains_once(
    burst_uploads: UploadWorkflow, capsys: pytest.CaptureFixture[str]
) -> None:
    uploads = burst_uploads
    upload_photos(uploads.s3, uploads.bucket, {f"person{i:02d}": 10 for i in range(30)})

    (execution,) = uploads.settle()

    assert execution["status"] == "SUCCEEDED"
    assert len(uploads.fake_sagemaker.created) == 1
    assert len(uploads.manifest(uploads.fake_sagemaker.created[0])) == 300
    assert len(uploads.published_identities()) == 30
    states = uploads.states(execution)
    assert states[:2] == ["RouteTrigger", "CheckUploadsSettled"] and "FinishUploadBatch" in states
    calls = _invocations(uploads)
    with capsys.disabled():
        print(
            f"\n300-photo upload: executions={len(uploads.executions())} "
            f"training_jobs={len(uploads.fake_sagemaker.created)} state_transitions={len(states)} "
            f"lambda_invocations={sum(calls.values())} {dict(sorted(calls.items()))}"
        )


def test_every_event_delivered_twice_still_trains_once(uploads: UploadWorkflow) -> None:
    upload_photos(uploads.s3, uploads.bucket, {"ann": 3, "bob": 2})
    queue = uploads.local.event_sources[0].queue_url
    bodies = []
    while batch := uploads.poller.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            bodies.append(message["Body"])
            uploads.poller.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    for body in bodies + bodies:  # at-least-once delivery: every event twice
        uploads.poller.sqs.send_message(QueueUrl=queue, MessageBody=body)

    executions = uploads.settle()

    assert len(bodies) == 5
    assert len(executions) == 1 and len(uploads.fake_sagemaker.created) == 1


def test_identical_reupload_ends_in_no_change_without_a_job(uploads: UploadWorkflow) -> None:
    upload_photos(uploads.s3, uploads.bucket, {"ann": 2, "bob": 2})
    uploads.settle()
    published = uploads.read("results/latest.json")

    upload_photos(uploads.s3, uploads.bucket, {"ann": 2, "bob": 2})  # the same bytes again
    executions = uploads.settle()

    assert len(executions) == 2 and len(uploads.fake_sagemaker.created) == 1
    newest = max(executions, key=lambda e: e["startDate"])
    assert newest["status"] == "SUCCEEDED"
    assert "NoChange" in uploads.states(newest) and "StartTrainingJob" not in uploads.states(newest)
    output = json.loads(uploads.sfn.describe_execution(executionArn=newest["executionArn"])["output"])
    assert output["outcome"] == "no_change"
    assert uploads.read("results/latest.json") == published


def test_uploads_during_a_running_job_make_exactly_one_follow_up(
    uploads: UploadWorkflow, fake_sagemaker: FakeSageMaker
) -> None:
    fake_sagemaker.hold = threading.Event()
    upload_photos(uploads.s3, uploads.bucket, {"ann": 2, "bob": 2})
    deadline = time.monotonic() + 30
    while not fake_sagemaker.created and time.monotonic() < deadline:  # the first job is running
        uploads.poller.poll_once()
        time.sleep(0.1)
    assert len(fake_sagemaker.created) == 1

    late = upload_photos(uploads.s3, uploads.bucket, {"carol": 3})
    for _ in range(5):
        uploads.poller.poll_once()
    assert len(uploads.executions()) == 1  # no parallel execution while the job runs
    fake_sagemaker.hold.set()
    executions = uploads.settle()

    assert len(executions) == 2 and all(e["status"] == "SUCCEEDED" for e in executions)
    assert len(fake_sagemaker.created) == 2
    follow_up_manifest = uploads.manifest(fake_sagemaker.created[1])
    assert {f"face_imgs/{key}" for key in follow_up_manifest} >= set(late)
    assert uploads.published_identities() == ["ann", "bob", "carol"]


def test_deleting_a_person_retrains_without_them(uploads: UploadWorkflow) -> None:
    keys = upload_photos(uploads.s3, uploads.bucket, {"ann": 2, "bob": 2, "carol": 1})
    uploads.settle()
    for key in keys:
        if key.startswith("face_imgs/bob/"):
            uploads.s3.delete_object(Bucket=uploads.bucket, Key=key)

    uploads.settle()

    assert len(uploads.fake_sagemaker.created) == 2
    assert uploads.published_identities() == ["ann", "carol"]


def test_a_config_change_retrains(uploads: UploadWorkflow) -> None:
    upload_photos(uploads.s3, uploads.bucket, {"ann": 2, "bob": 2})
    uploads.settle()

    uploads.s3.put_object(Bucket=uploads.bucket, Key="config/constants.py", Body=b"BATCH_SIZE = 8\n")
    uploads.settle()

    assert len(uploads.fake_sagemaker.created) == 2
    channels = [c["ChannelName"] for c in uploads.fake_sagemaker.created[1]["input_data_config"]]
    assert channels == ["face_imgs", "cfg", "previous"]  # previous: the first run's embeddings, to reuse


def test_uploads_outside_the_watched_prefixes_start_nothing(uploads: UploadWorkflow) -> None:
    uploads.s3.put_object(Bucket=uploads.bucket, Key="elsewhere/notes.jpg", Body=JPEG)

    assert uploads.settle() == [] and uploads.fake_sagemaker.created == []


def test_a_failing_record_is_redelivered_then_dead_lettered_and_the_others_count_once(
    uploads: UploadWorkflow,
) -> None:
    """The trigger reports a record that is no S3 event of the bucket as a batch item failure: as with
    Lambda's SQS event source, it is redelivered after the visibility timeout and lands in the
    dead-letter queue after maxReceiveCount (5) receives, while the batch's good records count once."""
    source = uploads.local.event_sources[0]
    sqs = uploads.poller.sqs
    # Test seam: the template's 360 s visibility timeout, shortened so that redeliveries come quickly.
    sqs.set_queue_attributes(QueueUrl=source.queue_url, Attributes={"VisibilityTimeout": "1"})
    dead_letters = uploads.local.physical("UploadEventsDeadLetterQueue")  # a queue's physical id: its URL
    upload_photos(uploads.s3, uploads.bucket, {"ann": 3, "bob": 2})
    sqs.send_message(QueueUrl=source.queue_url, MessageBody='{"not": "an S3 event"}')

    deadline = time.monotonic() + 60
    dead: list[dict[str, Any]] = []
    while not dead and time.monotonic() < deadline:
        uploads.poller.poll_once()
        dead = sqs.receive_message(QueueUrl=dead_letters, AttributeNames=["All"]).get("Messages", [])
        time.sleep(0.3)
    executions = uploads.settle()

    assert [json.loads(m["Body"]) for m in dead] == [{"not": "an S3 event"}]
    assert int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= 5
    # Reported as an item failure in the first, mixed batch; alone in a later batch it fails the whole
    # invocation (powertools raises when every record failed), which SQS redelivers the same way.
    assert uploads.poller.failed_records == 1
    assert uploads.poller.pending() == 0
    assert len(executions) == 1 and len(uploads.fake_sagemaker.created) == 1
    assert len(uploads.manifest(uploads.fake_sagemaker.created[0])) == 5  # each good upload counted once


def test_a_1000_photo_burst_in_concurrent_batches_counts_every_event_once(
    burst_uploads: UploadWorkflow, capsys: pytest.CaptureFixture[str]
) -> None:
    """`aws s3 sync` of a folder: 1,000 events, taken by the event source's pollers in concurrent batches
    (the template's MaximumConcurrency) whose transactions on the bucket's counter conflict, as they do
    on DynamoDB (dynamodb_conflicts). One execution trains on all of them; no event is dead-lettered,
    lost or counted twice."""
    uploads = burst_uploads
    source = uploads.local.event_sources[0]
    dead_letters = uploads.local.physical("UploadEventsDeadLetterQueue")
    # Test seam: the template's 360 s visibility timeout, shortened so that a failed batch comes back
    # (and, failing again, reaches the dead-letter queue) within the test.
    uploads.poller.sqs.set_queue_attributes(QueueUrl=source.queue_url, Attributes={"VisibilityTimeout": "30"})
    refused_before = dynamodb_conflicts.refused()
    began = time.monotonic()
    keys = upload_photos(uploads.s3, uploads.bucket, {f"person{i:03d}": 10 for i in range(100)})
    queued = uploads.queued(source.queue_url)

    executions = uploads.drain()

    state, recorded = uploads.upload_state()
    conflicts = dynamodb_conflicts.refused() - refused_before
    assert queued == len(keys) == 1000
    assert maximum_concurrency(source) == 10  # template.yaml's ScalingConfig
    assert 1 < uploads.poller.most_concurrent <= 10
    assert conflicts > 0  # concurrent batches did conflict
    assert uploads.queued(dead_letters) == 0
    assert recorded == state.generation == state.released_generation == 1000  # each event counted once
    assert len(executions) == 1 and executions[0]["status"] == "SUCCEEDED"
    assert len(uploads.fake_sagemaker.created) == 1
    assert len(uploads.manifest(uploads.fake_sagemaker.created[0])) == 1000
    assert state.active_execution is None
    with capsys.disabled():
        print(
            f"\n1000-photo burst: {time.monotonic() - began:.1f} s, executions={len(executions)} "
            f"trigger_invocations={_invocations(uploads)['TriggerFunction']} "
            f"most_concurrent_batches={uploads.poller.most_concurrent} conflicts_refused={conflicts}"
        )
