"""Lambda's SQS event sources, offline: moto does not poll SQS for them, so `SqsEventPoller` does, as the
Lambda service would: batches of up to BatchSize records, gathered for at most
MaximumBatchingWindowInSeconds, deleted when the function succeeds (all but the reported failures).

Like Lambda's pollers, several batches of one event source run at once, each its own invocation: up to
the mapping's ScalingConfig.MaximumConcurrency, else DEFAULT_MAXIMUM_CONCURRENCY (Lambda starts with five
concurrent batches). A message received by one is invisible to the others until its visibility timeout
passes; SQS (moto) counts its receives and moves it to the dead-letter queue after maxReceiveCount.
moto's ReceiveMessage is not atomic across threads (two could receive one message), so the pollers'
SQS calls go one at a time; and it is made linear in the queue's length (`_linear_retention_check`).
While the pollers run, moto's DynamoDB models transaction conflicts (dynamodb_conflicts), which
concurrent invocations meet on AWS.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto.core.utils import unix_time
from moto.sqs.models import Message, SQSBackend

from .background_poll import in_background
from .dynamodb_conflicts import transaction_conflicts
from .local_stack import LocalStack, SqsEventSource

DEFAULT_MAXIMUM_CONCURRENCY = 5  # Lambda's SQS event source starts with five concurrent batches


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


def _retained(backend: SQSBackend, queue_name: str, message: Message) -> bool:
    """moto's retention check of a received message, reading the queue's retention period alone."""
    retention = int(backend.get_queue(queue_name).message_retention_period)
    return retention + int(message.sent_timestamp or 0) / 1000 > unix_time()


def _linear_retention_check() -> None:
    """moto's ReceiveMessage checks each message it returns against the queue's retention period by
    computing every attribute of the queue, message counts included: a pass over the queue per message,
    so that receiving a queue of n messages takes O(n²) (1,000 queued uploads: minutes). The same check
    reading the period alone; installed once and left, since it changes no result."""
    SQSBackend.is_message_valid_based_on_retention_period = _retained  # type: ignore[method-assign]


def maximum_concurrency(source: SqsEventSource) -> int:
    """How many batches of the source may run at once."""
    return source.maximum_concurrency or DEFAULT_MAXIMUM_CONCURRENCY


class SqsEventPoller:
    """Polls the stack's SQS event sources and invokes their functions in-process, several batches of
    each source at once (`maximum_concurrency`)."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.sqs = boto3.client("sqs", region_name=stack.region)  # what the Lambda service reads of a queue
        # Lambda receives and deletes a source's messages with its function's execution role
        # (identities.py; SAM gives the role AWSLambdaSQSQueueExecutionRole).
        self._function_sqs = {
            source.function: stack.function_session(source.function).client("sqs")
            for source in stack.event_sources
        }
        self.invocations = 0
        self.failed_records = 0
        self.most_concurrent = 0  # the most batches of one source that were invoked at once
        self._in_flight: dict[str, int] = {}  # queue URL -> batches being invoked
        self._counts = threading.Lock()
        # moto's SQS is not thread-safe (two receives could take the same message): the pollers' calls go one
        # at a time; the other callers (S3's events, the tests' counts) only send or read attributes.
        self._sqs_calls = threading.Lock()
        self._stop = threading.Event()
        _linear_retention_check()

    def _queue_arn(self, source: SqsEventSource) -> str:
        with self._sqs_calls:
            attributes = self.sqs.get_queue_attributes(QueueUrl=source.queue_url, AttributeNames=["QueueArn"])
        return attributes["Attributes"]["QueueArn"]

    def _gather(self, source: SqsEventSource) -> list[dict[str, Any]]:
        """Up to batch_size messages, gathered for at most the batching window after the first one (with a
        window of 0, what one ReceiveMessage returns), as Lambda's poller invokes the function when the
        batch is full or the window has passed. Each receive is one turn: the source's other pollers
        receive in between, so that concurrent pollers share a queue as Lambda's independent ones do."""
        messages: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(messages) < source.batch_size:
            with self._sqs_calls:
                batch = (
                    self._function_sqs[source.function]
                    .receive_message(
                        QueueUrl=source.queue_url,
                        MaxNumberOfMessages=min(10, source.batch_size - len(messages)),
                        AttributeNames=["All"],
                    )
                    .get("Messages", [])
                )
            if batch:
                messages.extend(batch)
                deadline = deadline or time.monotonic() + source.batching_window_seconds
                if time.monotonic() >= deadline:
                    break
                time.sleep(0)  # the other pollers' turn
                continue
            if deadline is None or time.monotonic() >= deadline or self._stop.is_set():
                break
            time.sleep(0.1)
        return messages

    def _invoke(self, source: SqsEventSource, messages: list[dict[str, Any]]) -> tuple[str, str | None]:
        """The function invoked with the batch, counted among the source's batches in flight."""
        arn = self._queue_arn(source)
        event = {"Records": [_lambda_record(m, arn, self.stack.region) for m in messages]}
        with self._counts:
            running = self._in_flight[source.queue_url] = self._in_flight.get(source.queue_url, 0) + 1
            self.most_concurrent = max(self.most_concurrent, running)
        try:
            return self.stack.lambdas.call(source.function, event)
        finally:
            with self._counts:
                self._in_flight[source.queue_url] -= 1
                self.invocations += 1

    def deliver_batch(self, source: SqsEventSource) -> int:
        """One poller's turn: gather a batch, invoke the function, delete what succeeded. Returns how many
        records were delivered."""
        messages = self._gather(source)
        if not messages:
            return 0
        result, error = self._invoke(source, messages)
        if error is not None:
            return len(messages)  # the whole batch becomes visible again after the visibility timeout
        failed = batch_item_failures(result) if source.report_batch_item_failures else set()
        with self._counts:
            self.failed_records += len(failed)
        for message in messages:
            if message["MessageId"] not in failed:
                self._delete(source, message)
        return len(messages)

    def _delete(self, source: SqsEventSource, message: dict[str, Any]) -> None:
        """Delete a processed message; one SQS no longer has (dead-lettered after its visibility timeout
        passed during the invocation) stays where it is, as after a failed delete by Lambda."""
        try:
            with self._sqs_calls:
                self._function_sqs[source.function].delete_message(
                    QueueUrl=source.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ReceiptHandleIsInvalid":
                raise

    def poll_once(self) -> int:
        """One turn of each poller of each event source, all at once; returns how many records were
        delivered."""
        turns = [source for source in self.stack.event_sources for _ in range(maximum_concurrency(source))]
        if not turns:
            return 0
        with transaction_conflicts(), ThreadPoolExecutor(len(turns), thread_name_prefix="sqs-poller") as pool:
            return sum(pool.map(self.deliver_batch, turns))

    def pending(self) -> int:
        """Messages waiting in the event-source queues."""
        total = 0
        for source in self.stack.event_sources:
            with self._sqs_calls:
                attributes = self.sqs.get_queue_attributes(
                    QueueUrl=source.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"]
            total += int(attributes["ApproximateNumberOfMessages"])
        return total

    @contextlib.contextmanager
    def running(self, interval: float = 0.2) -> Iterator[SqsEventPoller]:
        """Poll in background threads for the block's duration: each poller of each source on its own."""
        with contextlib.ExitStack() as pollers:
            pollers.enter_context(transaction_conflicts())
            for source in self.stack.event_sources:
                for number in range(maximum_concurrency(source)):
                    turn = functools.partial(self.deliver_batch, source)
                    pollers.enter_context(in_background(f"sqs-poller-{number}", turn, self._stop, interval))
            yield self
