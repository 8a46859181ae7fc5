"""The retraining state machine's Step Functions execution history budget.

A standard workflow's execution history holds at most HISTORY_EVENT_QUOTA events (Step Functions service
quotas, "Maximum execution history size"); an execution that reaches it fails. The training job's poll
loop is the only part whose length the stack's parameters set, so the budget is: the events of one poll
(counted here from the ASL, state by state) times the most polls that fit in the execution's
TimeoutSeconds (the waits as facetrain_lambdas.poll.next_wait chooses them), plus the events of every
other state, must stay under the quota less RESERVE_FRACTION, which is kept for retried tasks and the
upload-settle loop. `minimum_max_poll_interval` is the smallest MaxPollIntervalSeconds that keeps it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facetrain_lambdas.poll import next_wait

from .local_aws import REPO_ROOT

DEFINITION_PATH = REPO_ROOT / "state_machine" / "retraining.asl.json"
HISTORY_EVENT_QUOTA = 25_000
# Kept free for what the count leaves out: retried task attempts (TaskScheduled, TaskStarted, TaskFailed
# each) and the upload-settle loop (WaitForUploadsToSettle), whose length depends on the uploads.
RESERVE_FRACTION = 0.2
POLL_WAIT_STATE = "WaitForTrainingJob"  # where the poll loop begins: Wait -> Poll -> Choice -> Wait
EXECUTION_EVENTS = 2  # ExecutionStarted, and one of ExecutionSucceeded/Failed/TimedOut/Aborted
# History events one pass through a state adds when it succeeds the first time (Step Functions' history
# event types): <Type>StateEntered/Exited, and for a task TaskScheduled, TaskStarted, TaskSucceeded.
EVENTS_PER_STATE = {"Task": 5, "Wait": 2, "Choice": 2, "Pass": 2, "Succeed": 2, "Fail": 1}
# A Parallel state's own: ParallelStateEntered, ParallelStateStarted, ParallelStateSucceeded and
# ParallelStateExited; its branches' states add theirs (a branch runs each of its states once here).
PARALLEL_OWN_EVENTS = 4
# The most times one execution passes through a state outside the poll loop: RunEnded runs before and
# after FinishUploadBatch; every other such state at most once (the upload-settle loop is in the reserve).
VISITS_OUTSIDE_THE_LOOP = 2


def load_definition(path: Path = DEFINITION_PATH) -> dict[str, Any]:
    """The ASL definition as data (substitutions left as they are: only the states' shape is read)."""
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _events(state_name: str, state: dict[str, Any]) -> int:
    if state["Type"] == "Parallel":  # its own events, and each state of each branch once
        return PARALLEL_OWN_EVENTS + sum(
            _events(name, inner) for branch in state["Branches"] for name, inner in branch["States"].items()
        )
    try:
        return EVENTS_PER_STATE[state["Type"]]
    except KeyError:
        raise ValueError(f"state {state_name}: no history event count for type {state['Type']}") from None


def poll_loop(definition: dict[str, Any], start: str = POLL_WAIT_STATE) -> list[str]:
    """The states of one poll, from the wait back to it: each Next, and a Choice's Default (the route of
    a job still running). ValueError when that route does not come back to `start`."""
    states = definition["States"]
    loop, name = [start], states[start].get("Next")
    while name != start:
        if name is None or name in loop or len(loop) > len(states):
            raise ValueError(f"the states after {start} do not loop back to it: {loop}")
        loop.append(name)
        state = states[name]
        name = state.get("Default") if state["Type"] == "Choice" else state.get("Next")
    return loop


def events_per_poll(definition: dict[str, Any]) -> int:
    """History events of one pass through the poll loop (Wait, Poll task, Choice: 2 + 5 + 2)."""
    return sum(_events(name, definition["States"][name]) for name in poll_loop(definition))


def events_outside_the_poll_loop(definition: dict[str, Any]) -> int:
    """An upper bound of the events of everything but the poll loop: the execution's own two, and each
    other state VISITS_OUTSIDE_THE_LOOP times."""
    loop = set(poll_loop(definition))
    states = definition["States"]
    return EXECUTION_EVENTS + VISITS_OUTSIDE_THE_LOOP * sum(
        _events(name, state) for name, state in states.items() if name not in loop
    )


def polls_within(seconds: int, first_wait: int, max_wait: int) -> int:
    """How many polls the loop makes while a job runs `seconds`: the first after `first_wait` (what
    StartTrainingJob returns), each next one after poll.next_wait. The count only falls as either wait
    grows. ValueError for a wait of 0 s, which never ends the loop."""
    waited, wait, polls = 0, first_wait, 0
    while True:
        if wait <= 0:
            raise ValueError(f"a poll wait of {wait} s (first {first_wait} s, max {max_wait} s) never ends")
        waited += wait
        polls += 1
        if waited >= seconds:
            return polls
        wait = next_wait(wait, first_wait, max_wait)


def worst_case_events(definition: dict[str, Any], first_wait: int, max_wait: int) -> int:
    """History events of an execution that polls until its TimeoutSeconds (the longest any can run)."""
    polls = polls_within(int(definition["TimeoutSeconds"]), first_wait, max_wait)
    return events_outside_the_poll_loop(definition) + events_per_poll(definition) * polls


def usable_events() -> int:
    """The events the budget allows: the quota less the reserve."""
    return int(HISTORY_EVENT_QUOTA * (1 - RESERVE_FRACTION))


def minimum_max_poll_interval(definition: dict[str, Any], first_wait: int = 1) -> int:
    """The smallest MaxPollIntervalSeconds whose worst case stays within usable_events(), for the given
    first wait (1 s, the shortest that doubles, is the worst)."""
    low, high = 1, int(definition["TimeoutSeconds"])
    if worst_case_events(definition, first_wait, high) > usable_events():
        raise ValueError("not even one poll per TimeoutSeconds keeps the history within its budget")
    while low < high:  # events only fall as the cap grows: bisect for the first cap within budget
        middle = (low + high) // 2
        if worst_case_events(definition, first_wait, middle) <= usable_events():
            high = middle
        else:
            low = middle + 1
    return low
