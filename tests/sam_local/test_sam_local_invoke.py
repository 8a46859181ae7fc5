"""Every function that has a sample event in events/, run by `sam local invoke` from the `sam build`
output (the layer built for python3.13, the function code, the template's handler and environment) in the
python3.13 stand-in image, against moto, in the order of a retraining: each response checked, as
tests/lambdas/test_events.py checks the same events in-process.

CleanupFunction's custom resource request (cleanup.json, a Create) is answered by crhelper with an https
PUT to the event's ResponseURL: it goes to the local CloudFormation stand-in
(container/lambda-runtime/cloudformation.py), whose certificate the container trusts, and the test checks
both what the function did (a Create deletes nothing) and what CloudFormation received. crhelper retries
for ever when nothing answers, so that invocation is cut short after CLEANUP_TIMEOUT_S.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import local_invoke
from support.testkit import model_files, model_tar

EVENTS = Path(__file__).resolve().parents[2] / "events"
ENV = json.loads((EVENTS / "env.json").read_text())
BUCKET = ENV["Parameters"]["DATA_BUCKET"]
CLEANUP_TIMEOUT_S = 180  # about 20 s when answered; crhelper would retry until the 900 s timeout


def _event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def _invoke(aws: local_invoke.LocalAws, function: str, event: Path) -> Any:
    """sam local invoke's response (stdout, JSON); its stderr in the assertion message on failure."""
    result = local_invoke.sam_invoke(aws, function, event, capture=True)
    assert result.returncode == 0, f"sam local invoke {function} {event.name}:\n{result.stderr[-4000:]}"
    response = json.loads(result.stdout)
    assert not (isinstance(response, dict) and "errorType" in response), (
        f"{function} raised:\n{json.dumps(response, indent=1)}\n{result.stderr[-3000:]}"
    )
    return response


def _wrapped(tmp_path: Path, name: str, execution: str) -> Path:
    """An execution input as the state machine hands it to validate: {"execution", "input"}."""
    path = tmp_path / f"validate-{name}"
    path.write_text(json.dumps({"execution": execution, "input": _event(name)}))
    return path


def test_every_sample_event_runs_in_the_python313_stand_in(
    sam_local_aws: local_invoke.LocalAws, tmp_path: Path
) -> None:
    aws = sam_local_aws
    s3 = boto3.client("s3", endpoint_url=aws.endpoint_url, region_name=local_invoke.REGION, **_credentials())

    pointer = _invoke(aws, "ValidateFunction", EVENTS / "validate.json")
    assert pointer["run_record_key"] == _event("start.json")["run"]["run_record_key"]
    assert (pointer["identities"], pointer["images"]) == (2, 4)
    console = _invoke(aws, "ValidateFunction", _wrapped(tmp_path, "console-input.json", "console-example"))
    assert console["run_id"] == "2025-06-01-weekly"
    from_s3 = _invoke(aws, "ValidateFunction", _wrapped(tmp_path, "s3-object-created.json", "s3-example"))
    assert from_s3["run_id"] == "s3-example"

    started = _invoke(aws, "StartFunction", EVENTS / "start.json")
    assert started["training_job_name"] == _event("poll.json")["training_job_name"]

    polled = _invoke(aws, "PollFunction", EVENTS / "poll.json")
    assert polled["status"] == "Completed"
    assert polled["model_artifacts"] == _event("publish.json")["job"]["model_artifacts"]

    # What the training job would have written (moto's SageMaker runs nothing).
    artifact_key = polled["model_artifacts"].split(f"s3://{BUCKET}/", 1)[1]
    s3.put_object(Bucket=BUCKET, Key=artifact_key, Body=model_tar(model_files({"alice": 2, "bob": 2})))
    # Publish asks for its execution's status (the stop check): the execution publish.json names runs.
    sfn = boto3.client(
        "stepfunctions", endpoint_url=aws.endpoint_url, region_name=local_invoke.REGION, **_credentials()
    )
    example = sfn.start_execution(
        stateMachineArn=ENV["TriggerFunction"]["STATE_MACHINE_ARN"], name=_event("publish.json")["execution"]
    )["executionArn"]
    assert example == _event("publish.json")["execution_arn"]
    published = _invoke(aws, "PublishFunction", EVENTS / "publish.json")
    assert published["latest_key"] == "results/latest.json"
    latest = json.loads(s3.get_object(Bucket=BUCKET, Key="results/latest.json")["Body"].read())
    assert latest["run_id"] == "example-run"
    sfn.stop_execution(executionArn=example)  # as stop.json says: ABORTED

    outcome = _invoke(aws, "StopFunction", EVENTS / "stop.json")
    assert outcome["training_job_name"] == "facetrain-example-run"
    assert (outcome["job_status"], outcome["stopped"]) == ("Completed", False)

    # Forget alice (before the trigger starts an execution: a forget is refused while one runs).
    begun = _invoke(aws, "ForgetFunction", EVENTS / "forget-begin.json")
    assert begun == _event("forget-purge.json")["erasure"]
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="face_imgs/alice/").get("Contents")
    purged = _invoke(aws, "ForgetFunction", EVENTS / "forget-purge.json")
    assert purged["record_key"] == "erasures/forget-example.json" and "forgot 1 person" in purged["summary"]

    # The daily retention sweep: nothing as old as RUN_HISTORY_DAYS here, the published run kept.
    swept = _invoke(aws, "RetentionSweepFunction", EVENTS / "retention-sweep.json")
    assert swept["swept"] == [] and swept["published_run_id"] == "example-run"

    batch = _invoke(aws, "TriggerFunction", EVENTS / "trigger.json")
    assert batch == {"batchItemFailures": []}
    (execution,) = sfn.list_executions(
        stateMachineArn=ENV["TriggerFunction"]["STATE_MACHINE_ARN"], statusFilter="RUNNING"
    )["executions"]
    assert execution["name"].endswith("-g2")

    check = _invoke(aws, "UploadBatchFunction", EVENTS / "upload-batch-check.json")
    assert check["generation"] == 2 and check["settled"] is False and 0 < check["wait_seconds"] <= 120
    finish_event = tmp_path / "upload-batch-finish.json"
    finish_event.write_text(
        json.dumps({**_event("upload-batch-finish.json"), "execution": execution["name"]})
    )
    assert _invoke(aws, "UploadBatchFunction", finish_event) == {"released": True, "follow_up": None}

    # The stack's custom resource, created: CloudFormation gets SUCCESS and the bucket keeps every version.
    versions = _object_versions(s3)
    photos = [key for key, _ in versions if key.startswith(ENV["ValidateFunction"]["IMAGES_PREFIX"])]
    assert photos and "results/latest.json" in dict(versions)  # seeded, and written by the functions
    request = _event("cleanup.json")
    assert request["ResourceProperties"]["BucketName"] == BUCKET
    result, answers = local_invoke.invoke_custom_resource(
        aws, "CleanupFunction", EVENTS / "cleanup.json", capture=True, timeout_s=CLEANUP_TIMEOUT_S
    )
    assert result.returncode == 0, f"sam local invoke CleanupFunction cleanup.json:\n{result.stderr[-4000:]}"
    assert len(answers) == 1, f"CloudFormation received {answers}:\n{result.stderr[-3000:]}"
    (answer,) = answers
    assert answer["Status"] == "SUCCESS", answer
    assert answer["PhysicalResourceId"] == f"empty-on-delete-{request['ResourceProperties']['BucketName']}"
    for field in ("RequestId", "StackId", "LogicalResourceId"):
        assert answer[field] == request[field], (field, answer)
    assert _object_versions(s3) == versions, "a Create changed the bucket"


def _object_versions(s3: Any) -> list[tuple[str, str]]:
    """Every (key, version id) of the data bucket, delete markers included."""
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET)
    return sorted(
        (v["Key"], v["VersionId"])
        for page in pages
        for v in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]
    )


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": local_invoke.FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": local_invoke.FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
