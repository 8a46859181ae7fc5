"""Every file in events/ fed to its handler in-process, with events/env.json as the environment."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import boto3
import pytest
from facetrain_lambdas import (
    cleanup,
    forget,
    poll,
    publish,
    retention_sweep,
    start,
    stop,
    trigger,
    upload_batch_steps,
    validate,
)
from facetrain_offline.lambda_runtime import LambdaContext
from moto import mock_aws
from support.testkit import FakeSageMaker, upload_photos

EVENTS = Path(__file__).resolve().parents[2] / "events"
ENV = json.loads((EVENTS / "env.json").read_text())
BUCKET = ENV["Parameters"]["DATA_BUCKET"]


def _environment(monkeypatch: pytest.MonkeyPatch, function: str) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    for name, value in {**ENV["Parameters"], **ENV.get(function, {})}.items():
        monkeypatch.setenv(name, value)


def _load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def test_every_event_file_runs_through_its_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    handled: set[str] = {"env.json"}
    with mock_aws(), FakeSageMaker().installed():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})  # as deployed
        upload_photos(s3, BUCKET, {"alice": 2, "bob": 2})

        _environment(monkeypatch, "ValidateFunction")
        pointer = validate.handler(_load("validate.json"), LambdaContext("validate"))
        assert (
            pointer["dataset_fingerprint"] == pointer["run_fingerprint"]
        )  # the old name, for old executions
        assert pointer["run_record_key"] == _load("start.json")["run"]["run_record_key"]
        handled.add("validate.json")

        console = validate.handler(
            {"execution": "console-example", "input": _load("console-input.json")}, LambdaContext("validate")
        )
        assert console["run_id"] == "2025-06-01-weekly"
        handled.add("console-input.json")

        from_s3 = validate.handler(
            {"execution": "s3-event-example", "input": _load("s3-object-created.json")},
            LambdaContext("validate"),
        )
        assert from_s3["run_id"] == "s3-event-example"
        handled.add("s3-object-created.json")

        _environment(monkeypatch, "StartFunction")
        started = start.handler(_load("start.json"), LambdaContext("start"))
        assert started["training_job_name"] == _load("poll.json")["training_job_name"]
        handled.add("start.json")

        _environment(monkeypatch, "PollFunction")
        polled = poll.handler(_load("poll.json"), LambdaContext("poll"))
        assert polled["status"] == "Completed"
        assert polled["model_artifacts"] == _load("publish.json")["job"]["model_artifacts"]
        handled.add("poll.json")

        # Publish asks for its execution's status (the stop check): the execution publish.json names runs.
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = sfn.create_state_machine(
            name="facetrain-retraining",
            definition=json.dumps(
                {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 60, "End": True}}}
            ),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        example = sfn.start_execution(stateMachineArn=machine, name=_load("publish.json")["execution"])
        assert example["executionArn"] == _load("publish.json")["execution_arn"]
        _environment(monkeypatch, "PublishFunction")
        published = publish.handler(_load("publish.json"), LambdaContext("publish"))
        assert published["latest_key"] == "results/latest.json"
        handled.add("publish.json")
        sfn.stop_execution(executionArn=example["executionArn"])  # as stop.json says: ABORTED

        # The execution is aborted after its job completed: the job is left alone, the abort notified.
        _environment(monkeypatch, "StopFunction")
        sns = boto3.client("sns", region_name="us-east-1")
        sns.create_topic(Name=ENV["StopFunction"]["NOTIFICATION_TOPIC_ARN"].rsplit(":", 1)[-1])
        outcome = stop.handler(_load("stop.json"), LambdaContext("stop"))
        assert (
            outcome["training_job_name"] == "facetrain-example-run" and outcome["job_status"] == "Completed"
        )
        assert outcome["stopped"] is False
        handled.add("stop.json")

        # Forget (console-forget.json, as the state machine hands it on): alice's photos and traces go.
        forget_input = _load("console-forget.json")
        assert _load("forget-begin.json")["input"] == _load("forget-purge.json")["input"] == forget_input
        handled.add("console-forget.json")
        _environment(monkeypatch, "ForgetFunction")
        begun = forget.handler(_load("forget-begin.json"), LambdaContext("forget"))
        assert begun == _load("forget-purge.json")["erasure"]
        assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="face_imgs/alice/").get("Contents")
        handled.add("forget-begin.json")
        purged = forget.handler(_load("forget-purge.json"), LambdaContext("forget"))
        assert (
            purged["record_key"] == "erasures/forget-example.json"
            and "forgot 1 person (execution" in purged["summary"]
        )
        handled.add("forget-purge.json")

        _environment(monkeypatch, "CleanupFunction")
        with mock.patch("crhelper.utils.HTTPSConnection") as connection:
            cleanup.handler(_load("cleanup.json"), LambdaContext("cleanup"))
        assert json.loads(connection.return_value.request.call_args.kwargs["body"])["Status"] == "SUCCESS"
        handled.add("cleanup.json")

        # Upload trigger: the SQS batch starts one execution; the batch steps check and release it.
        table = ENV["TriggerFunction"]["UPLOAD_STATE_TABLE"]
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        _environment(monkeypatch, "TriggerFunction")
        response = trigger.handler(_load("trigger.json"), LambdaContext("trigger"))
        assert response == {"batchItemFailures": []}
        (execution,) = sfn.list_executions(
            stateMachineArn=ENV["TriggerFunction"]["STATE_MACHINE_ARN"], statusFilter="RUNNING"
        )["executions"]
        assert execution["name"].endswith("-g2")
        handled.add("trigger.json")

        _environment(monkeypatch, "UploadBatchFunction")
        check = upload_batch_steps.handler(_load("upload-batch-check.json"), LambdaContext("batch"))
        assert check["generation"] == 2 and check["settled"] is False and 0 < check["wait_seconds"] <= 120
        handled.add("upload-batch-check.json")
        finish = upload_batch_steps.handler(
            {**_load("upload-batch-finish.json"), "execution": execution["name"]}, LambdaContext("batch")
        )
        assert finish == {"released": True, "follow_up": None}
        handled.add("upload-batch-finish.json")

        # The daily retention sweep: a run older than RUN_HISTORY_DAYS goes, the published and new ones stay.
        _environment(monkeypatch, "RetentionSweepFunction")
        old_record = json.dumps({"created_at": "2024-01-01T00:00:00+00:00"}).encode()
        s3.put_object(Bucket=BUCKET, Key="results/runs/old-example/run.json", Body=old_record)
        swept = retention_sweep.handler(_load("retention-sweep.json"), LambdaContext("retention-sweep"))
        assert (swept["swept"], swept["published_run_id"]) == (["old-example"], "example-run")
        handled.add("retention-sweep.json")

    assert handled == {path.name for path in EVENTS.iterdir()}, "an events/ file has no handler in this test"
