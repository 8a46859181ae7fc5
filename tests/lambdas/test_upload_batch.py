"""Upload batching: de-duplication, one owner per bucket, settling, release and hand-over (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from facetrain_lambdas.errors import TransientError
from facetrain_lambdas.upload_batch import (
    CONFLICT_BACKOFF_CAP_SECONDS,
    CONFLICT_RETRY_SECONDS,
    UploadStateStore,
    batch_input,
    check_settled,
    execution_name,
    finish_batch,
    handle_changes,
)
from moto import mock_aws

REGION = "us-east-1"
TABLE = "facetrain-uploads"
PASS_MACHINE = {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 3600, "End": True}}}


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(
            name="retraining", definition=json.dumps(PASS_MACHINE), roleArn="arn:aws:iam::123456789012:role/x"
        )["stateMachineArn"]
        yield {"store": UploadStateStore(dynamodb, TABLE, "photos"), "sfn": sfn, "arn": arn}


def _executions(aws: dict[str, Any]) -> list[dict[str, Any]]:
    return aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"]


def test_a_burst_starts_one_execution_and_duplicates_count_nothing(aws):
    store, sfn, arn = aws["store"], aws["sfn"], aws["arn"]
    ids = [f"event-{i}" for i in range(300)]

    first = handle_changes(store, sfn, arn, ids[:150], now=100.0)
    second = handle_changes(store, sfn, arn, ids[150:], now=101.0)
    again = handle_changes(store, sfn, arn, ids, now=102.0)  # every event delivered twice

    assert first.started == execution_name(150, 100.0) and second.started is None and again.started is None
    assert (first.new_events, second.new_events, again.new_events) == (150, 150, 0)
    assert again.duplicates == 300
    state = store.read()
    assert state.generation == 300 and state.active_execution == first.started
    assert state.last_change_at == 101.0  # duplicates do not delay the settling
    (execution,) = _executions(aws)
    assert execution["name"] == first.started == "upload-19700101T000140Z-g150"
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == batch_input(150)


def test_settles_only_after_a_quiet_window(aws):
    store = aws["store"]
    handle_changes(store, aws["sfn"], aws["arn"], ["a"], now=1000.0)

    early = check_settled(store, settle_seconds=120, now=1030.0)
    late = check_settled(store, settle_seconds=120, now=1120.0)

    assert not early.settled and early.wait_seconds == 90
    assert late.settled and late.generation == 1


def test_release_when_nothing_new_and_a_redelivery_afterwards_starts_nothing(aws):
    store, sfn, arn = aws["store"], aws["sfn"], aws["arn"]
    started = handle_changes(store, sfn, arn, ["a", "b"], now=1.0).started

    outcome = finish_batch(store, sfn, arn, started, trained_generation=2)
    late_duplicate = handle_changes(store, sfn, arn, ["b"], now=500.0)

    assert outcome.released and outcome.follow_up is None
    assert late_duplicate.started is None and late_duplicate.duplicates == 1
    assert store.read().active_execution is None and store.read().released_generation == 2
    assert len(_executions(aws)) == 1


def test_changes_during_a_run_start_exactly_one_follow_up(aws):
    store, sfn, arn = aws["store"], aws["sfn"], aws["arn"]
    owner = handle_changes(store, sfn, arn, ["a"], now=1.0).started
    trained = check_settled(store, settle_seconds=10, now=20.0).generation

    during = [handle_changes(store, sfn, arn, [f"late-{i}"], now=30.0 + i) for i in range(5)]
    outcome = finish_batch(store, sfn, arn, owner, trained_generation=trained, now=40.0)
    retried = finish_batch(store, sfn, arn, owner, trained_generation=trained, now=41.0)  # step retried

    assert all(result.started is None for result in during)  # the running execution owns the bucket
    assert outcome.follow_up == execution_name(6, 40.0) and not outcome.released
    assert retried.follow_up is None and not retried.released
    assert store.read().active_execution == outcome.follow_up
    assert sorted(e["name"] for e in _executions(aws)) == sorted([owner, outcome.follow_up])


def test_an_owner_that_died_is_replaced_by_the_next_change(aws):
    store, sfn, arn = aws["store"], aws["sfn"], aws["arn"]
    owner = handle_changes(store, sfn, arn, ["a"], now=1.0).started
    execution_arn = arn.replace(":stateMachine:", ":execution:") + f":{owner}"
    sfn.stop_execution(executionArn=execution_arn, error="Crashed")

    outcome = handle_changes(store, sfn, arn, ["b"], now=2.0)

    assert outcome.started == execution_name(2, 2.0)
    assert store.read().active_execution == outcome.started


def test_a_retried_batch_still_starts_the_execution_its_first_attempt_missed(aws):
    store, sfn, arn = aws["store"], aws["sfn"], aws["arn"]
    # First attempt counted the events, then failed before starting anything.
    assert store.record_event("a", 1.0) and store.record_event("b", 1.0)

    retried = handle_changes(store, sfn, arn, ["a", "b"], now=2.0)

    assert retried.duplicates == 2 and retried.started == execution_name(2, 2.0)


def test_the_upload_batch_document_is_one_model_for_the_trigger_the_check_and_validate() -> None:
    from facetrain_lambdas.errors import InvalidInput
    from facetrain_lambdas.run_request import StackDefaults, resolve_request
    from facetrain_lambdas.upload_batch import UploadBatch, batch_input

    written = batch_input(3)
    assert written == {"upload_batch": {"version": 1, "generation": 3}}
    checked = {"upload_batch": UploadBatch(generation=3, settled=True, wait_seconds=0).model_dump()}
    request = resolve_request(checked, "upload-x-g3", StackDefaults(bucket="b"))
    assert request.source == "upload-batch"
    with pytest.raises(InvalidInput, match=r"upload_batch\.version"):
        resolve_request({"upload_batch": {"version": 2, "generation": 3}}, "e", StackDefaults(bucket="b"))


class _Conflicting:
    """The DynamoDB client, whose first `conflicts` writes meet a transaction in progress."""

    def __init__(self, dynamodb: Any, conflicts: int) -> None:
        self.dynamodb, self.left, self.writes = dynamodb, conflicts, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dynamodb, name)

    def _conflict(self, operation: str, reasons: list[dict[str, str]] | None) -> None:
        self.writes += 1
        if self.left:
            self.left -= 1
            if reasons is None:
                error = {"Code": "TransactionConflictException", "Message": "Transaction is ongoing"}
                raise ClientError({"Error": error}, operation)
            error = {"Code": "TransactionCanceledException", "Message": "cancelled"}
            raise ClientError({"Error": error, "CancellationReasons": reasons}, operation)

    def transact_write_items(self, **request: Any) -> Any:
        items = request["TransactItems"]
        reasons = [{"Code": "None"}] * (len(items) - 1) + [{"Code": "TransactionConflict"}]
        self._conflict("TransactWriteItems", reasons)
        return self.dynamodb.transact_write_items(**request)

    def update_item(self, **request: Any) -> Any:
        self._conflict("UpdateItem", None)
        return self.dynamodb.update_item(**request)


def test_events_are_counted_once_in_transactions_of_at_most_99_with_duplicates_dropped(aws):
    store = aws["store"]
    ids = [f"event-{i}" for i in range(250)]
    assert store.record_events(ids[::3], now=1.0) == 84  # every third first

    assert store.record_events(ids + ids[:10], now=2.0) == 250 - 84

    assert store.read().generation == 250


def test_transaction_conflicts_are_retried_with_jittered_backoff_and_count_once(aws):
    sleeps: list[float] = []
    dynamodb = _Conflicting(aws["store"].dynamodb, conflicts=3)
    store = UploadStateStore(dynamodb, TABLE, "photos", sleep=sleeps.append)

    outcome = handle_changes(store, aws["sfn"], aws["arn"], [f"e{i}" for i in range(120)], now=5.0)

    assert outcome.new_events == 120 and store.read().generation == 120
    assert store.conflicts == 3 and len(sleeps) == 3
    assert all(
        0 <= wait <= min(CONFLICT_BACKOFF_CAP_SECONDS, 0.05 * 2**k) for k, wait in enumerate(sleeps, 1)
    )
    claim_conflicts = _Conflicting(aws["store"].dynamodb, conflicts=2)  # single writes too
    releasing = UploadStateStore(claim_conflicts, TABLE, "photos", sleep=sleeps.append)
    assert releasing.release(outcome.started, 120) and releasing.conflicts == 2


def test_conflicts_past_the_retry_budget_fail_the_invocation_and_count_nothing(aws):
    clock = [0.0]
    dynamodb = _Conflicting(aws["store"].dynamodb, conflicts=10_000)

    def sleep(seconds: float) -> None:
        clock[0] += max(seconds, 1.0)

    store = UploadStateStore(dynamodb, TABLE, "photos", sleep=sleep, clock=lambda: clock[0])
    with pytest.raises(TransientError, match="transaction conflicts"):
        store.record_events(["a", "b"], now=1.0)

    assert clock[0] >= CONFLICT_RETRY_SECONDS
    assert aws["store"].read().generation == 0
