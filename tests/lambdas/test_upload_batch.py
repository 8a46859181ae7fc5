"""Upload batching: de-duplication, one owner per bucket, settling, release and hand-over (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from facetrain_lambdas.upload_batch import (
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
