"""Following a local execution: its history as it grows (states entered and left), its outcome and the
error that ended it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .run_summary import ExecutionOutcome, StateVisitRecord

Printer = Callable[[str], None]
FINAL_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")  # an execution in one has ended
PUBLISH_STATE = "Publish"  # the state machine's commit point: its Lambda makes a run's results current
NO_CHANGE_STATE = "NoChange"  # the state an execution passes when there is nothing to train
PURGE_STATE = "PurgeForgotten"  # a forget's last step: the stored results purged of the people


@dataclass
class StateVisit:
    """One pass through a state, from the execution history."""

    state: str
    entered: datetime
    exited: datetime | None = None

    def record(self) -> StateVisitRecord:
        """As run.json lists it."""
        seconds = (self.exited - self.entered).total_seconds() if self.exited else None
        return StateVisitRecord(
            state=self.state,
            entered=self.entered.isoformat(),
            exited=self.exited.isoformat() if self.exited else None,
            seconds=round(seconds, 3) if seconds is not None else None,
        )


class HistoryFollower:
    """Reads an execution's history as it grows, printing each state entered."""

    def __init__(self, sfn: Any, execution_arn: str, say: Printer) -> None:
        self.sfn, self.arn, self.say = sfn, execution_arn, say
        self.seen = 0
        self.visits: list[StateVisit] = []
        self.events: list[dict[str, Any]] = []

    def poll(self) -> None:
        events = self.sfn.get_execution_history(executionArn=self.arn, maxResults=1000)["events"]
        for event in events[self.seen :]:
            self.events.append(event)
            kind = event["type"]
            if kind.endswith("StateEntered"):
                name = event["stateEnteredEventDetails"]["name"]
                looping = any(visit.state == name for visit in self.visits[-3:])  # the wait/poll loop
                self.visits.append(StateVisit(name, event["timestamp"]))
                if not looping:
                    self.say(f"state  {name}")
            elif kind.endswith("StateExited"):
                name = event["stateExitedEventDetails"]["name"]
                for visit in reversed(self.visits):
                    if visit.state == name and visit.exited is None:
                        visit.exited = event["timestamp"]
                        break
        self.seen = len(events)

    def entered(self, state: str) -> bool:
        """True when the execution has entered `state` (as far as the history read so far shows)."""
        return any(visit.state == state for visit in self.visits)


def execution_failure(
    sfn: Any, execution: dict[str, Any], follower: HistoryFollower
) -> tuple[str | None, str | None]:
    """(error, cause) of a failed execution. The cause is the plain message (what is wrong, what to do):
    the state machine's ReadFailure keeps only a Lambda error's errorMessage, its stack trace stays in
    lambdas.log and the execution history."""
    error, cause = execution.get("error"), execution.get("cause")
    if error or cause:
        return error, cause
    for event in reversed(follower.events):
        details = event.get("executionFailedEventDetails")
        if details:
            return details.get("error"), details.get("cause")
    return None, None


def overall_status(executions: list[dict[str, Any]]) -> str:
    """SUCCEEDED when every execution did; else the first other status (FAILED when none ran)."""
    if not executions:
        return "FAILED"
    return next((e["status"] for e in executions if e["status"] != "SUCCEEDED"), "SUCCEEDED")


def execution_outcome(execution: dict[str, Any], follower: HistoryFollower) -> ExecutionOutcome:
    """Where an execution (DescribeExecution) ended: published, no change, or before publishing."""
    states = [visit.state for visit in follower.visits]
    outcome = (
        "forgotten"
        if PURGE_STATE in states
        else "no_change"
        if NO_CHANGE_STATE in states
        else "published"
        if PUBLISH_STATE in states
        else None
    )
    return ExecutionOutcome(
        name=execution["name"], status=execution["status"], outcome=outcome, states=len(states)
    )
