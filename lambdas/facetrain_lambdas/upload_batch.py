"""Upload-triggered retraining: one execution per settled batch of uploads, none lost, none doubled.

State lives in one DynamoDB table:

- `event#<EventBridge event id>`: written once with a conditional put, so a re-delivered event is seen as
  a duplicate and changes nothing (expires after a day);
- `uploads#<bucket>`: `generation` (how many distinct changes were seen), `last_change_at` (when the last
  one arrived), `active_execution` (the execution that owns the next retraining, if any) and
  `released_generation` (the generation the last finished execution covered).

Counting. The trigger records a batch's new events in transactions of up to TRANSACTION_EVENTS events:
the conditional puts of their `event#<id>` items and one `ADD generation :n SET last_change_at = :now` on
`uploads#<bucket>`. So an event is recorded if and only if it is counted: a re-delivery is never counted,
and a batch that fails half-way is never half-counted (what it committed is a duplicate when SQS
redelivers it). An event the transaction finds recorded (its put's ConditionalCheckFailed) is dropped
from it, and the rest is sent again.

Concurrency. Lambda runs several batches at once (five at first, at most the event source's
MaximumConcurrency), and every transaction writes the one `uploads#<bucket>` item. DynamoDB cancels a
transaction that touches an item another transaction is writing (reason TransactionConflict) and
refuses a single write to such an item (TransactionConflictException); either wrote nothing, so the
write is sent again after a jittered exponential backoff (ConflictBackoff). An invocation retries for at
most CONFLICT_RETRY_SECONDS (the functions time out at 60 s); then TransientError fails it, SQS
redelivers the batch, and what it committed is a duplicate. Grouping events keeps conflicts rare: 1,000
events are about ten writes of the item, not 1,000.

Ownership. When changes are pending (`generation > released_generation`) and no live execution owns the
bucket, the trigger claims it with a conditional write and starts an execution named after the
generation and the time (Step Functions refuses a second execution of the same name); of concurrent
batches, one claim succeeds. That execution waits until no change arrived for the settle window, trains
on the snapshot it lists then, and at its end either releases the claim (nothing arrived since the
generation it settled on) or hands it over to exactly one follow-up execution (changes arrived while it
ran).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from .errors import TransientError

EVENT_TTL_SECONDS = 86_400
UPLOAD_BATCH_FIELD = "upload_batch"
TRANSACTION_EVENTS = 99  # TransactWriteItems takes at most 100 actions: 99 event puts and the counter
CONFLICT_RETRY_SECONDS = 30.0  # how long an invocation retries transaction conflicts (timeout: 60 s)
CONFLICT_BACKOFF_BASE_SECONDS = 0.05  # the longest wait doubles from this after each conflict…
CONFLICT_BACKOFF_CAP_SECONDS = 1.0  # …up to this; each wait is drawn between 0 and it (full jitter)

T = TypeVar("T")


@dataclass(frozen=True)
class UploadState:
    """The upload bookkeeping of one bucket."""

    generation: int = 0
    last_change_at: float = 0.0
    active_execution: str | None = None
    released_generation: int = 0

    @property
    def pending(self) -> bool:
        """Changes arrived that no finished execution covered."""
        return self.generation > self.released_generation


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _conditional_failed(error: ClientError) -> bool:
    return _error_code(error) == "ConditionalCheckFailedException"


def _cancellation_codes(error: ClientError) -> list[str]:
    """The per-action reason codes of a cancelled transaction ("None" for an action that was fine)."""
    if _error_code(error) != "TransactionCanceledException":
        return []
    return [str(reason.get("Code", "None")) for reason in error.response.get("CancellationReasons") or []]


class ConflictBackoff:
    """The waits of one invocation's writes that met transaction conflicts: after a write's k-th conflict
    in a row, a random time up to min(cap, base * 2**k) (full jitter, so that the conflicting writers
    spread out); TransientError once CONFLICT_RETRY_SECONDS have passed since the invocation's first
    conflict."""

    def __init__(self, sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        self.sleep = sleep
        self.clock = clock
        self.conflicts = 0
        self.deadline: float | None = None

    def wait(self, action: str, streak: int, error: ClientError) -> None:
        """Wait before the next try of a write that met its `streak`-th conflict in a row."""
        self.conflicts += 1
        now = self.clock()
        if self.deadline is None:
            self.deadline = now + CONFLICT_RETRY_SECONDS
        if now >= self.deadline:
            raise TransientError(
                f"{action}: transaction conflicts for {CONFLICT_RETRY_SECONDS:.0f} s ({self.conflicts} tries)"
            ) from error
        ceiling = min(CONFLICT_BACKOFF_CAP_SECONDS, CONFLICT_BACKOFF_BASE_SECONDS * 2**streak)
        self.sleep(min(random.uniform(0, ceiling), self.deadline - now))  # noqa: S311 - jitter, not a secret


def _state_from_item(item: dict[str, Any]) -> UploadState:
    return UploadState(
        generation=int(item.get("generation", {}).get("N", 0)),
        last_change_at=float(item.get("last_change_at", {}).get("N", 0)),
        active_execution=item.get("active_execution", {}).get("S"),
        released_generation=int(item.get("released_generation", {}).get("N", 0)),
    )


class UploadStateStore:
    """Reads and changes the upload state with DynamoDB conditional writes and transactions; a write that
    meets a transaction conflict is retried (one store per invocation: it holds the retry budget)."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        bucket: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.key = {"pk": {"S": f"uploads#{bucket}"}}
        self.backoff = ConflictBackoff(sleep, clock)

    @property
    def conflicts(self) -> int:
        """Writes retried after a transaction conflict so far."""
        return self.backoff.conflicts

    def read(self) -> UploadState:
        item = self.dynamodb.get_item(TableName=self.table, Key=self.key, ConsistentRead=True).get("Item", {})
        return _state_from_item(item)

    def record_events(self, event_ids: Sequence[str], now: float | None = None) -> int:
        """Record and count each event not recorded yet, exactly once; returns how many were new.

        `now` (default: the time of each try) becomes `last_change_at`.
        """
        unique = list(dict.fromkeys(event_ids))
        return sum(
            self._record_group(unique[start : start + TRANSACTION_EVENTS], now)
            for start in range(0, len(unique), TRANSACTION_EVENTS)
        )

    def record_event(self, event_id: str, now: float | None = None) -> bool:
        """Record and count one event; False for a re-delivered event."""
        return self.record_events([event_id], now) == 1

    def _record_group(self, event_ids: list[str], now: float | None) -> int:
        """One transaction for these events (at most TRANSACTION_EVENTS), sent again without the events
        found recorded, and after a backoff when it met a conflict."""
        pending, streak = event_ids, 0
        while pending:
            try:
                self.dynamodb.transact_write_items(
                    TransactItems=self._counting_transaction(pending, time.time() if now is None else now)
                )
            except ClientError as error:
                codes = _cancellation_codes(error)
                if not codes or set(codes) - {"None", "ConditionalCheckFailed", "TransactionConflict"}:
                    raise
                found = zip(pending, codes, strict=False)  # codes: one more, the counter's
                recorded = {event for event, code in found if code == "ConditionalCheckFailed"}
                if "TransactionConflict" not in codes and not recorded:
                    raise
                pending = [event for event in pending if event not in recorded]
                if "TransactionConflict" in codes:
                    streak += 1
                    self.backoff.wait("recording upload events", streak, error)
                continue
            return len(pending)
        return 0

    def _counting_transaction(self, event_ids: list[str], now: float) -> list[dict[str, Any]]:
        """Put each `event#<id>` if absent, and add their number to `generation`."""
        puts = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        "pk": {"S": f"event#{event_id}"},
                        "expires_at": {"N": str(int(now) + EVENT_TTL_SECONDS)},
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for event_id in event_ids
        ]
        count = {
            "Update": {
                "TableName": self.table,
                "Key": self.key,
                "UpdateExpression": "ADD generation :n SET last_change_at = :now",
                "ExpressionAttributeValues": {":n": {"N": str(len(event_ids))}, ":now": {"N": repr(now)}},
            }
        }
        return [*puts, count]

    def _write(self, action: str, write: Callable[[], T]) -> T:
        """A single-item write, sent again while DynamoDB refuses it for a transaction in progress."""
        streak = 0
        while True:
            try:
                return write()
            except ClientError as error:
                if _error_code(error) != "TransactionConflictException":
                    raise
                streak += 1
                self.backoff.wait(action, streak, error)

    def claim(self, execution: str, previous_owner: str | None = None) -> bool:
        """Make `execution` the owner if there is none (or if the owner is still `previous_owner`)."""
        condition = "attribute_not_exists(active_execution)"
        values: dict[str, Any] = {":e": {"S": execution}}
        if previous_owner is not None:
            condition = "active_execution = :previous"
            values[":previous"] = {"S": previous_owner}
        return self._conditional_update(
            "claiming the bucket",
            UpdateExpression="SET active_execution = :e",
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )

    def release(self, execution: str, generation: int) -> bool:
        """Drop the claim, unless another change arrived since `generation` (then False)."""
        return self._conditional_update(
            "releasing the bucket",
            UpdateExpression="REMOVE active_execution SET released_generation = :g",
            ConditionExpression="active_execution = :e AND generation = :g",
            ExpressionAttributeValues={":e": {"S": execution}, ":g": {"N": str(generation)}},
        )

    def _conditional_update(self, action: str, **update: Any) -> bool:
        """One conditional UpdateItem of the bucket's item (conflicts retried): False when its condition
        does not hold."""
        try:
            self._write(
                action, lambda: self.dynamodb.update_item(TableName=self.table, Key=self.key, **update)
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True


def execution_name(generation: int, now: float) -> str:
    """The name of the execution that trains up to this generation (also its run id).

    The time keeps names unique when the table is ever re-created; doubles are prevented by the claim.
    """
    return f"upload-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-g{generation}"


class UploadBatch(BaseModel):
    """The upload batch an execution trains on, as the state machine carries it (`$.upload_batch`): the
    trigger writes it into the execution input, the settle check (batch.py) rewrites it with its answer,
    validate reads it (run_request.ConsoleInput). Another version is refused there."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    generation: int = Field(ge=0)
    settled: bool | None = None
    wait_seconds: int | None = None


def batch_input(generation: int) -> dict[str, Any]:
    """The execution input of an upload batch (the console fields keep their stack defaults)."""
    return {UPLOAD_BATCH_FIELD: UploadBatch(generation=generation).model_dump(exclude_none=True)}


@dataclass(frozen=True)
class StartOutcome:
    """What the trigger did with a batch of events."""

    new_events: int
    duplicates: int
    generation: int
    started: str | None  # name of the execution started, if any
    owner: str | None  # the execution that owns the bucket afterwards


def _execution_running(sfn: Any, state_machine_arn: str, name: str) -> bool:
    arn = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
    try:
        return sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return False
        raise


def _start(sfn: Any, state_machine_arn: str, name: str, generation: int) -> None:
    """StartExecution; an execution of that name already started (a retry) counts as started."""
    try:
        sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(batch_input(generation))
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise


def handle_changes(
    store: UploadStateStore,
    sfn: Any,
    state_machine_arn: str,
    event_ids: list[str],
    now: float | None = None,
) -> StartOutcome:
    """Count the new (not re-delivered) events; start an execution when changes are pending and no live
    execution owns the bucket.

    An owner that is no longer running (it failed before its last step) is replaced, so that a crash can
    never leave uploads without a retraining; a retried batch whose events were all counted still starts
    the execution its first attempt may not have started. `now` (default: the clock) is the time of the
    changes and of the execution's name.
    """
    fresh = store.record_events(event_ids, now)
    duplicates = len(event_ids) - fresh
    now = time.time() if now is None else now
    state = store.read()
    owner = state.active_execution
    if not state.pending or (owner is not None and _execution_running(sfn, state_machine_arn, owner)):
        return StartOutcome(fresh, duplicates, state.generation, None, owner)
    name = execution_name(state.generation, now)
    if not store.claim(name, previous_owner=owner):
        return StartOutcome(fresh, duplicates, state.generation, None, store.read().active_execution)
    _start(sfn, state_machine_arn, name, state.generation)
    return StartOutcome(fresh, duplicates, state.generation, name, name)


@dataclass(frozen=True)
class SettleCheck:
    """Whether the uploads have settled, and how long to wait if not."""

    settled: bool
    wait_seconds: int
    generation: int


def check_settled(store: UploadStateStore, settle_seconds: int, now: float | None = None) -> SettleCheck:
    """Settled when no change arrived for `settle_seconds`; otherwise the seconds still to wait."""
    now = time.time() if now is None else now
    state = store.read()
    quiet_for = now - state.last_change_at
    if quiet_for >= settle_seconds:
        return SettleCheck(True, 0, state.generation)
    return SettleCheck(False, max(1, math.ceil(settle_seconds - quiet_for)), state.generation)


@dataclass(frozen=True)
class FinishOutcome:
    """How an upload-batch execution ended its ownership."""

    released: bool
    follow_up: str | None  # the execution started for changes that arrived meanwhile


def finish_batch(
    store: UploadStateStore,
    sfn: Any,
    state_machine_arn: str,
    execution: str,
    trained_generation: int,
    now: float | None = None,
) -> FinishOutcome:
    """Release the bucket, or hand it over to one follow-up execution when changes arrived meanwhile."""
    now = time.time() if now is None else now
    if store.release(execution, trained_generation):
        return FinishOutcome(released=True, follow_up=None)
    state = store.read()
    if state.active_execution != execution:
        return FinishOutcome(released=False, follow_up=None)  # handed over already (a retried step)
    follow_up = execution_name(state.generation, now)
    if not store.claim(follow_up, previous_owner=execution):
        return FinishOutcome(released=False, follow_up=None)
    _start(sfn, state_machine_arn, follow_up, state.generation)
    return FinishOutcome(released=False, follow_up=follow_up)
