"""Lambda's SQS event sources, offline: moto does not poll SQS for them, so `SqsEventPoller` does, as the
Lambda service would: batches of up to BatchSize records, gathered for at most
MaximumBatchingWindowInSeconds, deleted when the function succeeds (all but the reported failures).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3

from .background_poll import in_background
from .local_stack import LocalStack, SqsEventSource


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
        with in_background("sqs-event-sources", self.poll_once, self._stop, interval):
            yield self
