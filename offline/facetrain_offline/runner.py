"""`facetrain run`: the whole retraining workflow on one machine.

A local AWS (moto) is stood up from template.yaml; the photos are uploaded to the local bucket; an
execution of the real state machine starts with the documented console input; the training job runs as
a local `train` process; the published results and a run summary land in the output folder.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import boto3

from .bucket_state import restore_state, save_state, state_lock
from .embedder_choice import default_embedder
from .execution_follower import HistoryFollower, execution_failure, execution_outcome, overall_status
from .execution_status_events import ExecutionStatusEvents
from .host_containers import ContainerEngine
from .lambda_runtime import InProcessLambdas
from .local_aws import REGION, local_aws
from .local_stack import LocalStack
from .parameter_checks import OFFLINE_SHORT_WAITS
from .results_copy import copy_results
from .run_options import RunOptions, console_input, stack_parameters
from .run_summary import Notification, RunSummary, write_run_summary
from .run_triggers import rules_disabled, run_by_uploads, run_from_console, stop_on_interrupt
from .stack import deploy
from .training_backend import LocalTrainingBackend

Printer = Callable[[str], None]


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


def run(options: RunOptions, say: Printer = print) -> RunSummary:
    """Run the workflow once; write the results and run.json to options.out_dir; return the summary.
    Raises StateInUse when another run holds options.state_dir."""
    with state_lock(options.state_dir):
        return _run_locked(options, say)


def _run_locked(options: RunOptions, say: Printer) -> RunSummary:
    started = time.monotonic()
    containers = ContainerEngine(options.image) if options.image else None
    if containers is not None:
        containers.check()  # before anything is stood up: podman and the image are there
    options.out_dir.mkdir(parents=True, exist_ok=True)
    hyperparameters = default_embedder(dict(options.hyperparameters), say, containers)
    with tempfile.TemporaryDirectory(prefix="facetrain-run-") as scratch, local_aws():
        stack = deploy(
            options.template,
            stack_parameters(options),
            region=REGION,
            extra_environment={"POWERTOOLS_TRACE_DISABLED": "true"},
            short_waits=OFFLINE_SHORT_WAITS,  # run_options.stack_parameters: waits of seconds
        )
        backend = LocalTrainingBackend(
            Path(scratch) / "jobs",
            on_log=lambda job, line: say(f"train  {line}"),
            on_status=lambda job, status, secondary: say(f"job    {job}: {status} ({secondary})"),
            containers=containers,
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
    operator = stack.operator_session()  # what a person running this may do (OperatorPolicy)
    s3, sfn = operator.client("s3"), operator.client("stepfunctions")
    local_s3 = boto3.client("s3", region_name=REGION)  # the saved state: the local account, not a person
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
            with rules_disabled(stack):  # loading saved state is not an upload
                restored = restore_state(local_s3, bucket, options.state_dir)
            say(f"state  restored {restored} objects from {options.state_dir}")
        try:
            if options.trigger == "upload":
                payload, followers = run_by_uploads(stack, options, hyperparameters, say)
            else:
                payload, followers = run_from_console(stack, options, hyperparameters, say)
        except KeyboardInterrupt:
            payload = (
                {"trigger": "upload", "settings": hyperparameters}
                if options.trigger == "upload"
                else console_input(options, hyperparameters)
            )
            followers = stop_on_interrupt(sfn, machine_arn, backend, say)
        backend.wait_all(timeout=60)
        executions = [sfn.describe_execution(executionArn=f.arn) for f in followers]
        jobs = list(backend.jobs.values())
        job_name = jobs[-1].name if jobs else None
        job_status = _job_status(operator.client("sagemaker"), job_name) if job_name else None
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
            saved = save_state(local_s3, bucket, options.state_dir)
            say(f"state  saved {saved} objects to {options.state_dir}")
    return summary


def _job_status(sagemaker: Any, name: str) -> str:
    """The TrainingJobStatus of a local job."""
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
