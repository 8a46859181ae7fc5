"""`facetrain run`: the whole retraining workflow on one machine.

A local AWS (moto) is stood up from template.yaml; the photos are uploaded to the local bucket; an
execution of the real state machine starts with the documented console input; the training job runs as
a local `train` process; the published results and a run summary land in the output folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import boto3
from facetrain.model_files import cached_weights, dlib_available
from moto import mock_aws

from .bucket_state import restore_state, save_state, state_lock, sync_images
from .event_sources import (
    ExecutionStatusEvents,
    SqsEventPoller,
    lambda_targets_invoked,
    s3_events_as_aws_sends_them,
)
from .execution_follower import (
    HistoryFollower,
    execution_failure,
    execution_outcome,
    overall_status,
)
from .lambda_runtime import InProcessLambdas, environment
from .local_stack import LocalStack
from .results_copy import copy_results
from .run_summary import Notification, RunSummary, write_run_summary
from .stack import deploy
from .training_backend import LocalTrainingBackend

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
REGION = "eu-west-1"
LOCAL_IMAGE_URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/facetrain:local"
MOCK_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
FINAL_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
OFFLINE_SETTINGS_FILE = "facetrain-run.json"  # where --trigger upload puts -p settings (config prefix)
QUIET_SECONDS = 3.0  # upload mode ends when nothing was queued or running for this long
STOP_WAIT_SECONDS = 300.0  # after Ctrl-C: how long to wait for the training jobs to stop

Printer = Callable[[str], None]


@dataclass
class RunOptions:
    """What `facetrain run` was asked to do."""

    images_dir: Path
    out_dir: Path
    hyperparameters: dict[str, str] = field(default_factory=dict)
    state_dir: Path | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    template: Path = DEFAULT_TEMPLATE
    poll_seconds: int = 1
    run_id: str | None = None
    timeout_seconds: float = 3600.0
    trigger: str = "console"  # or "upload": one object at a time through the template's upload trigger
    settle_seconds: int = 2
    force: bool = False
    min_accuracy: float | None = None


@contextlib.contextmanager
def local_aws(region: str = REGION) -> Iterator[None]:
    """moto with the real ASL interpreter and Docker-less Lambda, S3 events as AWS sends them, rules that
    invoke their Lambda targets, and the environment boto3 needs."""
    fake_credentials = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}  # moto accepts any
    with (
        environment({"AWS_DEFAULT_REGION": region, **fake_credentials}),
        mock_aws(config=MOCK_CONFIG),  # type: ignore[arg-type]
        s3_events_as_aws_sends_them(),
        lambda_targets_invoked(),
    ):
        yield


def execution_name(now: datetime | None = None) -> str:
    """A unique execution name, as the console would generate (it becomes the run id)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"local-{stamp}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def _quiet_libraries(stream: IO[str]) -> Iterator[None]:
    """moto's interpreter logs and Powertools' warnings belong in the log file, not on the screen."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in ("moto", "botocore", "aws_lambda_powertools")]
    saved = [(lg, lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
        lg.setLevel(logging.INFO if lg.name == "moto" else logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            yield
    finally:
        for lg, propagate, level in saved:
            lg.removeHandler(handler)
            lg.propagate, lg.level = propagate, level


def _default_embedder(hyperparameters: dict[str, str], say: Printer) -> dict[str, str]:
    """Without vggface2 weights on this machine, embedder=dlib-resnet (its model ships in a package),
    said in one line; unless the embedder or weights were chosen. weights=none stays for tests."""
    if "weights" in hyperparameters or "embedder" in hyperparameters:
        return hyperparameters
    path = cached_weights("vggface2")
    if path.is_file():
        return hyperparameters
    if dlib_available():
        say(
            "note   embedder=dlib-resnet (dlib's ResNet, model files from the face_recognition_models "
            f"package), because the vggface2 weights are not at {path}; to use embedder=facenet put "
            "them there or pass -p weights=FILE"
        )
        return {**hyperparameters, "embedder": "dlib-resnet"}
    say(
        "!" * 100 + f"\n! vggface2 weights not found at {path}, and dlib-resnet is not installed (make setup "
        "installs it): this run uses weights=none (RANDOM weights).\n"
        "! The results are NOT FOR PRODUCTION: they recognise no one. Put the weights there or pass "
        "--hyperparameter weights=...\n" + "!" * 100
    )
    return {**hyperparameters, "weights": "none"}


def console_input(options: RunOptions, hyperparameters: dict[str, str]) -> dict[str, Any]:
    """The documented console input for this run (stack defaults fill the rest)."""
    payload: dict[str, Any] = {"hyperparameters": hyperparameters}
    if options.instance_type:
        payload["instance_type"] = options.instance_type
    if options.instance_count:
        payload["instance_count"] = options.instance_count
    if options.run_id:
        payload["run_id"] = options.run_id
    if options.force:
        payload["force"] = True
    if options.min_accuracy is not None:
        payload["quality_gate"] = {"min_identification_accuracy": options.min_accuracy}
    return payload


def _stack_parameters(options: RunOptions) -> dict[str, str]:
    """Seconds instead of minutes for the waits; everything else as deployed."""
    return {
        "TrainingImageUri": LOCAL_IMAGE_URI,
        "PollIntervalSeconds": str(options.poll_seconds),
        "MaxPollIntervalSeconds": str(max(options.poll_seconds, 2)),
        "UploadSettleSeconds": str(options.settle_seconds),
        "UploadBatchingWindowSeconds": "1",
    }


def run(options: RunOptions, say: Printer = print) -> RunSummary:
    """Run the workflow once; write the results and run.json to options.out_dir; return the summary.
    Raises StateInUse when another run holds options.state_dir."""
    with state_lock(options.state_dir):
        return _run_locked(options, say)


def _run_locked(options: RunOptions, say: Printer) -> RunSummary:
    started = time.monotonic()
    options.out_dir.mkdir(parents=True, exist_ok=True)
    hyperparameters = _default_embedder(dict(options.hyperparameters), say)
    with tempfile.TemporaryDirectory(prefix="facetrain-run-") as scratch, local_aws():
        stack = deploy(
            options.template,
            _stack_parameters(options),
            region=REGION,
            extra_environment={"POWERTOOLS_TRACE_DISABLED": "true"},
        )
        backend = LocalTrainingBackend(
            Path(scratch) / "jobs",
            on_log=lambda job, line: say(f"train  {line}"),
            on_status=lambda job, status, secondary: say(f"job    {job}: {status} ({secondary})"),
        )
        summary = _execute(stack, backend, options, hyperparameters, say)
    summary = summary.model_copy(update={"wall_seconds": round(time.monotonic() - started, 3)})
    write_run_summary(summary, options.out_dir)
    return summary


def _execute(
    stack: LocalStack,
    backend: LocalTrainingBackend,
    options: RunOptions,
    hyperparameters: dict[str, str],
    say: Printer,
) -> RunSummary:
    s3 = boto3.client("s3", region_name=REGION)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    bucket = stack.physical(stack.only("AWS::S3::Bucket"))
    machine_arn = stack.physical(stack.only("AWS::StepFunctions::StateMachine"))
    parameters = stack.parameters
    results_prefix = parameters["ResultsPrefix"]
    lambdas: InProcessLambdas = stack.lambdas
    log_file = (options.out_dir / "lambdas.log").open("a", encoding="utf-8")
    lambdas.log_stream = log_file
    status_events = ExecutionStatusEvents(stack)
    with (
        log_file,
        _quiet_libraries(log_file),
        lambdas.installed(),
        backend.installed(),
        status_events.running(),
    ):
        if options.state_dir:
            with _rules_disabled(stack):  # loading saved state is not an upload
                restored = restore_state(s3, bucket, options.state_dir)
            say(f"state  restored {restored} objects from {options.state_dir}")
        try:
            if options.trigger == "upload":
                payload, followers = _run_by_uploads(stack, options, hyperparameters, say)
            else:
                payload, followers = _run_from_console(stack, options, hyperparameters, say)
        except KeyboardInterrupt:
            payload = (
                {"trigger": "upload", "settings": hyperparameters}
                if options.trigger == "upload"
                else console_input(options, hyperparameters)
            )
            followers = _stop_on_interrupt(sfn, machine_arn, backend, say)
        backend.wait_all(timeout=60)
        executions = [sfn.describe_execution(executionArn=f.arn) for f in followers]
        jobs = list(backend.jobs.values())
        job_name = jobs[-1].name if jobs else None
        job_status = _job_status(job_name) if job_name else None
        status = overall_status(executions)
        error, reason = (
            (None, None)
            if status == "SUCCEEDED"
            else _run_failure(sfn, executions, followers, job_name and f"{job_name} ended {job_status}")
        )
        notifications = [Notification.model_validate(n) for n in stack.notifications()]
        for notification in notifications:
            say(f"notify {notification.Subject}")
        results = copy_results(s3, bucket, results_prefix, options.out_dir) if status == "SUCCEEDED" else []
        summary = RunSummary(
            status=status,
            trigger=options.trigger,
            executions_started=len(sfn.list_executions(stateMachineArn=machine_arn)["executions"]),
            training_jobs_started=len(jobs),
            training_job_name=job_name,
            training_job_status=job_status,
            training_job_exit_code=jobs[-1].exit_code if jobs else None,
            input=payload,
            bucket=bucket,
            results_prefix=results_prefix,
            executions=[execution_outcome(e, f) for e, f in zip(executions, followers, strict=True)],
            history=[visit.record() for visit in followers[-1].visits] if followers else [],
            lambda_invocations=len(lambdas.invocations),
            notifications=notifications,
            results=results,
            error=error,
            failure_reason=reason,
        )
        if status == "SUCCEEDED":
            say(f"done   SUCCEEDED: {f'results in {options.out_dir}' if jobs else 'nothing changed'}")
        else:
            say(f"done   {status}: {summary.error}: {summary.failure_reason}")
        if options.state_dir:
            saved = save_state(s3, bucket, options.state_dir)
            say(f"state  saved {saved} objects to {options.state_dir}")
    return summary


def _job_status(name: str) -> str:
    """The TrainingJobStatus of a local job."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    return str(sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"])


def _run_failure(
    sfn: Any, executions: list[dict[str, Any]], followers: list[HistoryFollower], last_job: str | None
) -> tuple[str | None, str | None]:
    """(error, failure reason) of a run that did not succeed: the first execution that did not.
    last_job: "<name> ended <status>" of the last training job started, or None."""
    failed = next((e for e in executions if e["status"] != "SUCCEEDED"), None)
    if failed is None:
        return "NoUploads", "the folder holds no file to upload"
    error, reason = execution_failure(sfn, failed, followers[executions.index(failed)])
    if failed["status"] == "ABORTED" and not error:
        error = "ExecutionAborted"
        reason = (
            "the execution was stopped (StopExecution, Ctrl-C); training job: "
            f"{last_job or 'none was started'}"
        )
    return error, reason


def _stop_on_interrupt(
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


def _wait_for(sfn: Any, followers: list[HistoryFollower], options: RunOptions) -> None:
    deadline = time.monotonic() + options.timeout_seconds
    while time.monotonic() < deadline:
        for follower in followers:
            follower.poll()
        statuses = [sfn.describe_execution(executionArn=f.arn)["status"] for f in followers]
        if all(status in FINAL_STATUSES for status in statuses):
            return
        time.sleep(0.2)


def _run_from_console(
    stack: LocalStack, options: RunOptions, hyperparameters: dict[str, str], say: Printer
) -> tuple[dict[str, Any], list[HistoryFollower]]:
    """Upload the folder, then start one execution with the console input."""
    s3 = boto3.client("s3", region_name=REGION)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    bucket = stack.physical(stack.only("AWS::S3::Bucket"))
    images_prefix = stack.parameters["ImagesPrefix"]
    with _rules_disabled(stack):  # the console run is the trigger here, not the uploads
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
    _wait_for(sfn, [follower], options)
    follower.poll()
    return payload, [follower]


def _run_by_uploads(
    stack: LocalStack, options: RunOptions, hyperparameters: dict[str, str], say: Printer
) -> tuple[dict[str, Any], list[HistoryFollower]]:
    """Upload one object at a time; the template's rule, queue and trigger start what they start.

    Settings go where an operator would put them for upload-triggered runs: a file under the config
    prefix (itself an upload, so a settings change retrains).
    """
    s3 = boto3.client("s3", region_name=REGION)
    sfn = boto3.client("stepfunctions", region_name=REGION)
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


@contextlib.contextmanager
def _rules_disabled(stack: LocalStack) -> Iterator[None]:
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
