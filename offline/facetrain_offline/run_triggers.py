"""How `facetrain run` starts executions and stops them: from the console input (one execution), by
uploads through the template's own trigger (whatever it starts), and, on Ctrl-C, as the console's "Stop
execution" does."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3

from .bucket_state import sync_images
from .execution_follower import FINAL_STATUSES, HistoryFollower
from .local_stack import LocalStack
from .run_options import RunOptions, console_input
from .sqs_event_source import SqsEventPoller
from .training_backend import LocalTrainingBackend

OFFLINE_SETTINGS_FILE = "facetrain-run.json"  # where --trigger upload puts -p settings (config prefix)
QUIET_SECONDS = 3.0  # upload mode ends when nothing was queued or running for this long
STOP_WAIT_SECONDS = 300.0  # after Ctrl-C: how long to wait for the training jobs to stop

Printer = Callable[[str], None]


def execution_name(now: datetime | None = None) -> str:
    """A unique execution name, as the console would generate (it becomes the run id)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"local-{stamp}-{uuid.uuid4().hex[:8]}"


def wait_for(sfn: Any, followers: list[HistoryFollower], options: RunOptions) -> None:
    deadline = time.monotonic() + options.timeout_seconds
    while time.monotonic() < deadline:
        for follower in followers:
            follower.poll()
        statuses = [sfn.describe_execution(executionArn=f.arn)["status"] for f in followers]
        if all(status in FINAL_STATUSES for status in statuses):
            return
        time.sleep(0.2)


def run_from_console(
    stack: LocalStack, options: RunOptions, hyperparameters: dict[str, str], say: Printer
) -> tuple[dict[str, Any], list[HistoryFollower]]:
    """Upload the folder, then start one execution with the console input."""
    operator = stack.operator_session()
    s3, sfn = operator.client("s3"), operator.client("stepfunctions")
    bucket = stack.physical(stack.only("AWS::S3::Bucket"))
    images_prefix = stack.parameters["ImagesPrefix"]
    with rules_disabled(stack):  # the console run is the trigger here, not the uploads
        uploaded, deleted = sync_images(s3, bucket, images_prefix, options.images_dir)
    say(
        f"upload {uploaded} photos to s3://{bucket}/{images_prefix}"
        + (f" ({deleted} removed)" if deleted else "")
    )
    payload = console_input(options, hyperparameters)
    name = execution_name()
    machine_arn = stack.physical(stack.only("AWS::StepFunctions::StateMachine"))
    arn = sfn.start_execution(stateMachineArn=machine_arn, name=name, input=json.dumps(payload))[
        "executionArn"
    ]
    say(f"start  execution {name} with input {json.dumps(payload)}")
    follower = HistoryFollower(sfn, arn, say)
    wait_for(sfn, [follower], options)
    follower.poll()
    return payload, [follower]


def run_by_uploads(
    stack: LocalStack, options: RunOptions, hyperparameters: dict[str, str], say: Printer
) -> tuple[dict[str, Any], list[HistoryFollower]]:
    """Upload one object at a time; the template's rule, queue and trigger start what they start.

    Settings go where an operator would put them for upload-triggered runs: a file under the config
    prefix (itself an upload, so a settings change retrains).
    """
    operator = stack.operator_session()
    s3, sfn = operator.client("s3"), operator.client("stepfunctions")
    bucket = stack.physical(stack.only("AWS::S3::Bucket"))
    machine_arn = stack.physical(stack.only("AWS::StepFunctions::StateMachine"))
    parameters = stack.parameters
    followers: dict[str, HistoryFollower] = {}
    started: dict[str, Any] = {}
    poller = SqsEventPoller(stack)
    with poller.running():
        if hyperparameters:
            key = f"{parameters['ConfigPrefix']}{OFFLINE_SETTINGS_FILE}"
            s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(hyperparameters, sort_keys=True).encode())
            say(f"upload settings {json.dumps(hyperparameters)} to s3://{bucket}/{key}")
        uploaded, deleted = sync_images(s3, bucket, parameters["ImagesPrefix"], options.images_dir)
        say(
            f"upload {uploaded} photos one by one to s3://{bucket}/{parameters['ImagesPrefix']}"
            + (f" ({deleted} removed)" if deleted else "")
            + f"; the upload trigger takes over (settles after {parameters['UploadSettleSeconds']} s)"
        )
        deadline = time.monotonic() + options.timeout_seconds
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            for execution in sfn.list_executions(stateMachineArn=machine_arn)["executions"]:
                if execution["executionArn"] not in followers:
                    say(f"start  execution {execution['name']} (started by the upload trigger)")
                    followers[execution["executionArn"]] = HistoryFollower(
                        sfn, execution["executionArn"], say
                    )
                    started[execution["executionArn"]] = execution["startDate"]
            for follower in followers.values():
                follower.poll()
            busy = poller.pending() or any(
                sfn.describe_execution(executionArn=arn)["status"] == "RUNNING" for arn in followers
            )
            quiet_since = None if busy else quiet_since or time.monotonic()
            if quiet_since is not None and time.monotonic() - quiet_since > QUIET_SECONDS:
                break
            time.sleep(0.2)
    ordered = [followers[arn] for arn in sorted(followers, key=started.__getitem__)]
    return {"trigger": "upload", "settings": hyperparameters}, ordered


def stop_on_interrupt(
    sfn: Any, machine_arn: str, backend: LocalTrainingBackend, say: Printer
) -> list[HistoryFollower]:
    """Ctrl-C: stop the running executions as the console's "Stop execution" does. The stack's own stop
    path (status event, StopFunction, StopTrainingJob) then stops their training jobs: wait until the jobs
    have ended (a second Ctrl-C ends the wait at once). Returns a follower of every execution."""
    followers = []
    for execution in sfn.list_executions(stateMachineArn=machine_arn)["executions"]:
        if execution["status"] == "RUNNING":
            sfn.stop_execution(
                executionArn=execution["executionArn"], error="Interrupted", cause="Ctrl-C on facetrain run"
            )
            say(f"stop   execution {execution['name']} (Ctrl-C: as the console's Stop execution)")
        follower = HistoryFollower(sfn, execution["executionArn"], lambda line: None)  # states shown
        follower.poll()
        followers.append(follower)
    if backend.busy:
        say("stop   waiting for the training job to stop (Ctrl-C again to exit at once)")
        backend.wait_all(timeout=STOP_WAIT_SECONDS)
    return followers


@contextlib.contextmanager
def rules_disabled(stack: LocalStack) -> Iterator[None]:
    """Pause the template's EventBridge rules (uploads made by the tool itself start nothing)."""
    events = boto3.client("events", region_name=stack.region)
    rules = [
        stack.physical(name)
        for name in stack.template.of_type("AWS::Events::Rule")
        if name not in stack.skipped
    ]
    for rule in rules:
        events.disable_rule(Name=rule)
    try:
        yield
    finally:
        for rule in rules:
            events.enable_rule(Name=rule)
