"""Step Functions' "Execution Status Change" events, offline: Step Functions sends one to EventBridge when
an execution ends; moto sends none, so `ExecutionStatusEvents` does, for the stack's state machines.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
from moto.core.utils import utcnow

from .background_poll import in_background
from .execution_follower import FINAL_STATUSES
from .local_stack import LocalStack

STATUS_CHANGE = "Step Functions Execution Status Change"


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
            try:
                summaries = self.sfn.list_executions(stateMachineArn=machine)["executions"]
            except self.sfn.exceptions.StateMachineDoesNotExist:  # deleted with the stack (stack_delete)
                continue
            for summary in summaries:
                arn = summary["executionArn"]
                if summary["status"] not in FINAL_STATUSES or arn in self.sent:
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

    def has_sent(self, arns: Iterable[str]) -> bool:
        """True when the event of each of these executions has been sent (and so delivered: a rule's
        Lambda target runs within put_events here)."""
        return all(arn in self.sent for arn in arns)

    @contextlib.contextmanager
    def running(self, interval: float = 0.2) -> Iterator[ExecutionStatusEvents]:
        """Watch in a background thread for the block's duration (a last look when it ends)."""
        with in_background("execution-status-events", self.poll_once, self._stop, interval):
            yield self
        self.poll_once()
