"""How `facetrain run` starts executions and stops them: from the console input (one execution), by
uploads through the template's own trigger (whatever it starts), and, on Ctrl-C, as the console's "Stop
execution" does."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
from facetrain.contract.counting import counted
from facetrain.contract.names import STRANGERS_FOLDER, is_skipped

from .bucket_state import all_keys
from .execution_follower import FINAL_STATUSES, PUBLISH_STATE, HistoryFollower
from .execution_status_events import ExecutionStatusEvents
from .lambda_runtime import InProcessLambdas
from .local_stack import LocalStack
from .photo_upload import sync_images
from .run_options import RunOptions, console_input, recorded_input
from .sqs_event_source import SqsEventPoller
from .training_backend import LocalTrainingBackend

OFFLINE_SETTINGS_FILE = "facetrain-run.json"  # where --trigger upload puts -p settings (config prefix)
QUIET_SECONDS = 3.0  # upload mode ends when nothing was queued or running for this long
STOP_WAIT_SECONDS = 300.0  # after Ctrl-C: how long to wait for the training jobs to stop
SETTLE_SECONDS = 120.0  # after Ctrl-C: how long to wait for the executions to end (a Lambda under way)

Printer = Callable[[str], None]


def uploaded_files(keys: Iterable[str], prefix: str) -> str:
    """What the images prefix now holds, counted as the job will see it: files in people's folders (how
    many people), known strangers' photos, files the job ignores (in a folder starting with `_`) and files
    outside any person's folder. Files, not photos: whether each is a photo is the job's to say (by its
    content; rejected.csv names those that are not). Counts only: no name is printed."""
    files = people_files = strangers = ignored = loose = 0
    people: set[str] = set()
    for key in keys:
        files += 1
        top, sep, _ = key.removeprefix(prefix).partition("/")
        if not sep:
            loose += 1
        elif top == STRANGERS_FOLDER:
            strangers += 1
        elif is_skipped(top):
            ignored += 1
        else:
            people.add(top)
            people_files += 1
    folders = counted(len(people), "person's folder", "people's folders")
    parts = [f"{people_files} in {folders}"]
    if strangers:
        parts.append(f"{strangers} in the known strangers' folder")
    if loose:
        parts.append(f"{loose} outside any person's folder")
    if ignored:
        parts.append(f"{ignored} in folders starting with _ (ignored by the job)")
    return f"{counted(files, 'file')} ({', '.join(parts)})"


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
    """Upload the folder (a forget uploads nothing), then start one execution with the console input."""
    operator = stack.operator_session()
    s3, sfn = operator.client("s3"), operator.client("stepfunctions")
    bucket = stack.physical(stack.only("AWS::S3::Bucket"))
    images_prefix = stack.parameters["ImagesPrefix"]
    if options.images_dir is not None:
        with rules_disabled(stack):  # the console run is the trigger here, not the uploads
            _, deleted = sync_images(s3, bucket, images_prefix, options.images_dir)
        held = uploaded_files(all_keys(s3, bucket, images_prefix), images_prefix)
        say(f"upload {held} to s3://{bucket}/{images_prefix}" + (f"; {deleted} removed" if deleted else ""))
    payload = console_input(options, hyperparameters)
    name = execution_name()
    machine_arn = stack.physical(stack.only("AWS::StepFunctions::StateMachine"))
    arn = sfn.start_execution(stateMachineArn=machine_arn, name=name, input=json.dumps(payload))[
        "executionArn"
    ]
    say(f"start  execution {name} with input {json.dumps(recorded_input(payload))}")
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
        assert options.images_dir is not None  # a forget is a console input
        _, deleted = sync_images(s3, bucket, parameters["ImagesPrefix"], options.images_dir)
        held = uploaded_files(all_keys(s3, bucket, parameters["ImagesPrefix"]), parameters["ImagesPrefix"])
        say(
            f"upload {held} one by one to s3://{bucket}/{parameters['ImagesPrefix']}"
            + (f"; {deleted} removed" if deleted else "")
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
    sfn: Any,
    machine_arn: str,
    lambdas: InProcessLambdas,
    status_events: ExecutionStatusEvents,
    backend: LocalTrainingBackend,
    say: Printer,
) -> tuple[list[HistoryFollower], bool]:
    """Ctrl-C: stop the running executions as the console's "Stop execution" does, then wait until nothing
    can change the bucket any more; a follower of every execution (oldest first), and whether that wait
    ended in time (False: something may still write to the bucket).

    An execution that has entered Publish is let finish: Step Functions does not cancel a Lambda
    invocation under way, so a publish past its own check of the execution's status (publish.py) would go
    on whatever StopExecution said, and the run would be reported as stopped while its results became
    current. The wait: every execution ended (moto's
    reports RUNNING until its invocation under way has returned), no Lambda invocation under way, each
    ended execution's status event sent (the stack's own stop path: the rule, StopFunction,
    StopTrainingJob) and the training jobs ended. A second Ctrl-C ends the wait at once (KeyboardInterrupt).
    """
    followers = []
    executions = sfn.list_executions(stateMachineArn=machine_arn)["executions"]
    for execution in sorted(executions, key=lambda e: e["startDate"]):
        follower = HistoryFollower(sfn, execution["executionArn"], lambda line: None)  # states shown
        follower.poll()
        if execution["status"] == "RUNNING":
            _wait_until_started(follower)
            if follower.entered(PUBLISH_STATE):
                say(f"stop   execution {execution['name']} is publishing: it is let finish")
            else:
                sfn.stop_execution(
                    executionArn=execution["executionArn"],
                    error="Interrupted",
                    cause="Ctrl-C on facetrain run",
                )
                say(f"stop   execution {execution['name']} (Ctrl-C: as the console's Stop execution)")
        followers.append(follower)
    if followers:
        say("stop   waiting for the executions and their training job to end (Ctrl-C again to exit at once)")
    settled = _wait_settled(sfn, followers, lambdas, status_events)
    if not settled:
        say(f"stop   the executions did not end within {SETTLE_SECONDS:.0f} s: not waiting longer")
    if backend.busy:
        backend.wait_all(timeout=STOP_WAIT_SECONDS)
    for follower in followers:
        follower.poll()
    return followers, settled


def _wait_until_started(follower: HistoryFollower, timeout: float = 10.0) -> None:
    """Until the execution's history has its first event. moto's StopExecution fails with an
    AttributeError on an execution whose interpreter thread has not yet set up (it just started): its
    ExecutionStarted event is recorded once it has. Step Functions itself accepts a stop at any time."""
    deadline = time.monotonic() + timeout
    while not follower.events and time.monotonic() < deadline:
        time.sleep(0.05)
        follower.poll()


def _wait_settled(
    sfn: Any,
    followers: list[HistoryFollower],
    lambdas: InProcessLambdas,
    status_events: ExecutionStatusEvents,
) -> bool:
    """Until every execution has ended, its status event has been sent and no invocation is under way:
    True; False when SETTLE_SECONDS passed first."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        ended = all(sfn.describe_execution(executionArn=f.arn)["status"] in FINAL_STATUSES for f in followers)
        if ended and status_events.has_sent(f.arn for f in followers) and lambdas.wait_idle(timeout=0):
            return True
        time.sleep(0.1)
    return False


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
