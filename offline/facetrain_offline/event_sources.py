"""Deliver offline what AWS delivers by itself: S3 events as AWS sends them, SQS event sources, Step
Functions' execution status events, and EventBridge rules' Lambda targets.

moto routes an S3 upload through the bucket's EventBridge notifications and the template's rule into the
rule's SQS target, in the shape AWS uses, with three gaps that `s3_events_as_aws_sends_them` closes:
every event carries the same id (AWS gives each its own; re-deliveries keep it), deleting from a
versioned bucket (a delete marker) sends no "Object Deleted" event, and a disabled rule still delivers
S3 events. moto does not poll SQS for Lambda event sources: `SqsEventPoller` does, as the Lambda service
would: batches of up to BatchSize records, gathered for at most MaximumBatchingWindowInSeconds, deleted
when the function succeeds (all but the reported failures).

Step Functions sends an "Execution Status Change" event to EventBridge when an execution ends; moto
sends none: `ExecutionStatusEvents` does, for the stack's state machines. moto's EventBridge delivers
to SQS, log groups and buses but not to Lambda functions: `lambda_targets_invoked` invokes a matching
rule's Lambda targets with the event, as an asynchronous invocation does (one attempt here: a failure is
recorded with the in-process invocations, where Lambda would retry twice and then use the function's
dead-letter queue).
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import moto.events.utils
from moto.awslambda.utils import get_backend as lambda_backend
from moto.core.utils import utcnow
from moto.events.models import Rule
from moto.s3 import notifications
from moto.s3.models import FakeKey, S3Backend

from .local_stack import LocalStack, SqsEventSource

ENDED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
STATUS_CHANGE = "Step Functions Execution Status Change"


class _FreshEventId(dict):
    """moto builds every S3 EventBridge event from one template dict with a fixed id; AWS gives each event
    its own id (re-deliveries keep it). Copying this template yields a new id each time."""

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {**copy.deepcopy(dict(self), memo), "id": str(uuid.uuid4())}


def _delete_with_marker_event(original: Any) -> Any:
    """S3Backend.delete_object that also announces the delete marker of a versioned bucket, as AWS does."""

    def delete_object(
        backend: S3Backend,
        bucket_name: str,
        key_name: str,
        version_id: str | None = None,
        bypass: bool = False,
    ) -> Any:
        bucket = backend.get_bucket(bucket_name)
        previous = bucket.keys.get(key_name) if bucket.is_versioned and version_id is None else None
        result = original(backend, bucket_name, key_name, version_id, bypass)
        if isinstance(previous, FakeKey) and result[1].get("delete-marker") == "true":
            notifications.send_event(
                backend.account_id,
                notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_MARKER_CREATED_EVENT,
                bucket,
                previous,
            )
        return result

    return delete_object


@contextlib.contextmanager
def s3_events_as_aws_sends_them() -> Iterator[None]:
    """Each S3 event gets its own id, and delete markers are announced (see the module's docstring)."""
    original_message = moto.events.utils._BASE_EVENT_MESSAGE
    original_delete = S3Backend.delete_object
    original_send = Rule.send_to_targets

    def send_when_enabled(rule: Rule, event: Any, transform_input: bool = True) -> None:
        if rule.state != "DISABLED":
            original_send(rule, event, transform_input)

    moto.events.utils._BASE_EVENT_MESSAGE = _FreshEventId(original_message)
    S3Backend.delete_object = _delete_with_marker_event(original_delete)  # type: ignore[method-assign]
    Rule.send_to_targets = send_when_enabled  # type: ignore[method-assign]
    try:
        yield
    finally:
        moto.events.utils._BASE_EVENT_MESSAGE = original_message
        S3Backend.delete_object = original_delete  # type: ignore[method-assign]
        Rule.send_to_targets = original_send  # type: ignore[method-assign]


def _lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message in the shape Lambda's SQS event source hands to a function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def batch_item_failures(payload: str) -> set[str]:
    """The message ids a function's response reports as failed, as Lambda's SQS event source reads them
    with ReportBatchItemFailures: `{"batchItemFailures": [{"itemIdentifier": id}, …]}` in the JSON
    payload. Those messages are not deleted: SQS makes them visible again after the visibility timeout,
    and moves them to the dead-letter queue after maxReceiveCount receives. A response that is not such
    a document reports no failure (Lambda treats it as complete success)."""
    try:
        response = json.loads(payload)
    except ValueError:
        return set()
    items = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not isinstance(items, list):
        return set()
    return {
        str(item["itemIdentifier"]) for item in items if isinstance(item, dict) and "itemIdentifier" in item
    }


class SqsEventPoller:
    """Polls the stack's SQS event sources and invokes their functions in-process."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.sqs = boto3.client("sqs", region_name=stack.region)
        self.invocations = 0
        self.failed_records = 0
        self._stop = threading.Event()

    def _queue_arn(self, source: SqsEventSource) -> str:
        attributes = self.sqs.get_queue_attributes(QueueUrl=source.queue_url, AttributeNames=["QueueArn"])
        return attributes["Attributes"]["QueueArn"]

    def _gather(self, source: SqsEventSource) -> list[dict[str, Any]]:
        """Up to batch_size messages, waiting at most the batching window after the first one."""
        messages: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(messages) < source.batch_size:
            batch = self.sqs.receive_message(
                QueueUrl=source.queue_url,
                MaxNumberOfMessages=min(10, source.batch_size - len(messages)),
                AttributeNames=["All"],
            ).get("Messages", [])
            if batch:
                messages.extend(batch)
                deadline = deadline or time.monotonic() + source.batching_window_seconds
                continue
            if deadline is None or time.monotonic() >= deadline or self._stop.is_set():
                break
            time.sleep(0.1)
        return messages

    def poll_once(self) -> int:
        """One batch per event source; returns how many records were delivered."""
        delivered = 0
        for source in self.stack.event_sources:
            messages = self._gather(source)
            if not messages:
                continue
            arn = self._queue_arn(source)
            event = {"Records": [_lambda_record(m, arn, self.stack.region) for m in messages]}
            result, error = self.stack.lambdas.call(source.function, event)
            self.invocations += 1
            delivered += len(messages)
            if error is not None:
                continue  # the whole batch becomes visible again after the visibility timeout
            failed = set()
            if source.report_batch_item_failures:
                failed = batch_item_failures(result)
            self.failed_records += len(failed)
            for message in messages:
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=source.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return delivered

    def pending(self) -> int:
        """Messages waiting in the event-source queues."""
        total = 0
        for source in self.stack.event_sources:
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=source.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            total += int(attributes["ApproximateNumberOfMessages"])
        return total

    @contextlib.contextmanager
    def running(self, interval: float = 0.2) -> Iterator[SqsEventPoller]:
        """Poll in a background thread for the block's duration."""
        with _in_background("sqs-event-sources", self.poll_once, self._stop, interval):
            yield self


@contextlib.contextmanager
def _in_background(
    name: str, poll_once: Callable[[], int], stop: threading.Event, interval: float
) -> Iterator[None]:
    """Call poll_once in a daemon thread until the block ends: again at once while it finds work, else
    after `interval` seconds."""
    stop.clear()

    def loop() -> None:
        while not stop.is_set():
            if not poll_once():
                stop.wait(interval)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


@contextlib.contextmanager
def lambda_targets_invoked() -> Iterator[None]:
    """EventBridge rules deliver to their Lambda targets too (see the module's docstring)."""
    original_send = Rule.send_to_targets

    def send(rule: Rule, event: Any, transform_input: bool = True) -> None:
        functions = [t for t in rule.targets if t["Arn"].split(":")[2] == "lambda"]
        others = copy.copy(rule)  # moto raises NotImplementedError for a Lambda target
        others.targets = [t for t in rule.targets if t not in functions]
        original_send(others, event, transform_input)
        if rule.state == "DISABLED" or not rule.event_pattern.matches_event(event):
            return
        for target in functions:
            if "Input" in target or "InputPath" in target or "InputTransformer" in target:
                raise NotImplementedError(f"rule {rule.name}: target input transformation is not supported")
            backend = lambda_backend(rule.account_id, rule.region_name)
            backend.invoke(target["Arn"], None, json.dumps(event, default=str), {}, {})

    Rule.send_to_targets = send  # type: ignore[method-assign]
    try:
        yield
    finally:
        Rule.send_to_targets = original_send  # type: ignore[method-assign]


def status_change_detail(execution: dict[str, Any]) -> dict[str, Any]:
    """The `detail` Step Functions gives an "Execution Status Change" event, from DescribeExecution."""

    def millis(key: str) -> int | None:
        value = execution.get(key)
        return int(value.timestamp() * 1000) if value else None

    return {
        "executionArn": execution["executionArn"],
        "stateMachineArn": execution["stateMachineArn"],
        "name": execution["name"],
        "status": execution["status"],
        "startDate": millis("startDate"),
        "stopDate": millis("stopDate"),
        "input": execution.get("input"),
        "output": execution.get("output"),
        "inputDetails": {"included": "input" in execution},
        "outputDetails": {"included": "output" in execution},
        "error": execution.get("error"),
        "cause": execution.get("cause"),
    }


class ExecutionStatusEvents:
    """Puts an "Execution Status Change" event on the default bus for each execution of the stack's state
    machines that has ended since the last look (moto's Step Functions sends none)."""

    def __init__(self, stack: LocalStack) -> None:
        self.sfn = boto3.client("stepfunctions", region_name=stack.region)
        self.events = boto3.client("events", region_name=stack.region)
        self.machines = [
            stack.physical(name)
            for name in stack.template.of_type("AWS::StepFunctions::StateMachine")
            if name in stack.physical_ids
        ]
        self.sent: set[str] = set()
        self._stop = threading.Event()

    def poll_once(self) -> int:
        """Send the events of executions that have ended; return how many were sent."""
        sent = 0
        for machine in self.machines:
            for summary in self.sfn.list_executions(stateMachineArn=machine)["executions"]:
                arn = summary["executionArn"]
                if summary["status"] not in ENDED or arn in self.sent:
                    continue
                execution = self.sfn.describe_execution(executionArn=arn)
                self.events.put_events(
                    Entries=[
                        {
                            "Source": "aws.states",
                            "DetailType": STATUS_CHANGE,
                            "Resources": [arn],
                            "Detail": json.dumps(status_change_detail(execution)),
                            "Time": utcnow(),
                        }
                    ]
                )
                self.sent.add(arn)
                sent += 1
        return sent

    @contextlib.contextmanager
    def running(self, interval: float = 0.2) -> Iterator[ExecutionStatusEvents]:
        """Watch in a background thread for the block's duration (a last look when it ends)."""
        with _in_background("execution-status-events", self.poll_once, self._stop, interval):
            yield self
        self.poll_once()
