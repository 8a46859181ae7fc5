"""Upload-triggered retraining: one execution per settled batch of uploads, none lost, none doubled.

State lives in one DynamoDB table:

- `event#<EventBridge event id>`: written once with a conditional put, so a re-delivered event is seen as
  a duplicate and changes nothing (expires after a day);
- `uploads#<bucket>`: `generation` (how many distinct changes were seen), `last_change_at` (when the last
  one arrived), `active_execution` (the execution that owns the next retraining, if any) and
  `released_generation` (the generation the last finished execution covered).

Each new event is recorded and counted in one DynamoDB transaction, so a re-delivery is never counted and
a failed batch is never half-counted. When changes are pending (`generation > released_generation`) and
no live execution owns the bucket, the trigger claims it with a conditional write and starts an execution
named after the generation and the time (Step Functions refuses a second execution of the same name).
That execution waits until no change arrived for the settle window, trains on the snapshot it lists then,
and at its end either releases the claim (nothing new arrived) or hands it over to exactly one follow-up
execution (changes arrived while it ran).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

EVENT_TTL_SECONDS = 86_400
UPLOAD_BATCH_FIELD = "upload_batch"


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


def _conditional_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _state_from_item(item: dict[str, Any]) -> UploadState:
    return UploadState(
        generation=int(item.get("generation", {}).get("N", 0)),
        last_change_at=float(item.get("last_change_at", {}).get("N", 0)),
        active_execution=item.get("active_execution", {}).get("S"),
        released_generation=int(item.get("released_generation", {}).get("N", 0)),
    )


class UploadStateStore:
    """Reads and changes the upload state with DynamoDB conditional writes."""

    def __init__(self, dynamodb: Any, table: str, bucket: str) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.key = {"pk": {"S": f"uploads#{bucket}"}}

    def read(self) -> UploadState:
        item = self.dynamodb.get_item(TableName=self.table, Key=self.key, ConsistentRead=True).get("Item", {})
        return _state_from_item(item)

    def record_event(self, event_id: str, now: float) -> bool:
        """Record one event and count it as a change, atomically; False for a re-delivered event."""
        try:
            self.dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "pk": {"S": f"event#{event_id}"},
                                "expires_at": {"N": str(int(now) + EVENT_TTL_SECONDS)},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": self.key,
                            "UpdateExpression": "ADD generation :one SET last_change_at = :now",
                            "ExpressionAttributeValues": {":one": {"N": "1"}, ":now": {"N": repr(now)}},
                        }
                    },
                ]
            )
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise
        return True

    def claim(self, execution: str, previous_owner: str | None = None) -> bool:
        """Make `execution` the owner if there is none (or if the owner is still `previous_owner`)."""
        condition = "attribute_not_exists(active_execution)"
        values: dict[str, Any] = {":e": {"S": execution}}
        if previous_owner is not None:
            condition = "active_execution = :previous"
            values[":previous"] = {"S": previous_owner}
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key=self.key,
                UpdateExpression="SET active_execution = :e",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def release(self, execution: str, generation: int) -> bool:
        """Drop the claim, unless another change arrived since `generation` (then False)."""
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key=self.key,
                UpdateExpression="REMOVE active_execution SET released_generation = :g",
                ConditionExpression="active_execution = :e AND generation = :g",
                ExpressionAttributeValues={":e": {"S": execution}, ":g": {"N": str(generation)}},
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
    the execution its first attempt may not have started.
    """
    now = time.time() if now is None else now
    fresh = sum(store.record_event(event_id, now) for event_id in dict.fromkeys(event_ids))
    duplicates = len(event_ids) - fresh
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
