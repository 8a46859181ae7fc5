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
from facetrain.contract.counting import counted
from facetrain_lambdas.layout import LATEST_JSON

from .bucket_state import recover_state, restore_state, save_state, state_lock
from .embedder_choice import default_embedder
from .execution_follower import HistoryFollower, execution_failure, execution_outcome, overall_status
from .execution_status_events import ExecutionStatusEvents
from .folder_scrub import scrub_folder
from .host_containers import ContainerEngine
from .interrupts import held_off, kill_as_ctrl_c
from .lambda_runtime import InProcessLambdas
from .left_out import left_out_lines
from .local_aws import REGION, local_aws
from .local_stack import LocalStack
from .parameter_checks import OFFLINE_SHORT_WAITS
from .photo_upload import PhotoFolderError
from .results_copy import (
    FinishedExecution,
    copy_results,
    copy_run_evidence,
    evidence_lines,
    missing_published_files,
    read_latest,
)
from .run_options import RunOptions, console_input, recorded_input, stack_parameters
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
    Raises StateInUse when another run holds options.state_dir.

    Ctrl-C or SIGTERM at any moment ends in one of two truthful outcomes: nothing published and --state as
    it was (ABORTED; the state is not saved), or the run finished and is reported as finished (the
    results copied, the state saved). A second Ctrl-C while the stop is awaited ends the run at once,
    ABORTED, with the state as it was. The state's save is crash-safe (bucket_state.recover_state)."""
    with state_lock(options.state_dir), kill_as_ctrl_c():
        return _run_locked(options, say)


def _run_locked(options: RunOptions, say: Printer) -> RunSummary:
    started = time.monotonic()
    containers = ContainerEngine(options.image) if options.image else None
    if containers is not None:
        containers.check()  # before anything is stood up: podman and the image are there
    options.out_dir.mkdir(parents=True, exist_ok=True)
    if options.state_dir and (recovered := recover_state(options.state_dir)):
        say(recovered)
    # A forget retrains with the published run's settings (validate's forget mode): it passes none.
    hyperparameters = (
        {} if options.forget else default_embedder(dict(options.hyperparameters), say, containers)
    )
    # From the moment the outcome is read until run.json is written, Ctrl-C is held off (_execute enters
    # it): the local AWS's teardown comes between, and a run that published must not end unreported.
    finishing = contextlib.ExitStack()
    with finishing, tempfile.TemporaryDirectory(prefix="facetrain-run-") as scratch, local_aws():
        try:
            stack = deploy(
                options.template,
                stack_parameters(options),
                region=REGION,
                extra_environment={"POWERTOOLS_TRACE_DISABLED": "true"},
                short_waits=OFFLINE_SHORT_WAITS,  # run_options.stack_parameters: waits of seconds
            )
        except KeyboardInterrupt:
            summary = _interrupted_before_any_execution(options, hyperparameters, "deploying the local stack")
            say(f"done   ABORTED: {summary.failure_reason}")
        else:
            backend = LocalTrainingBackend(
                Path(scratch) / "jobs",
                on_log=lambda job, line: say(f"train  {line}"),
                on_status=lambda job, status, secondary: say(f"job    {job}: {status} ({secondary})"),
                containers=containers,
            )
            summary = _execute(stack, backend, options, hyperparameters, say, finishing)
        summary = summary.model_copy(update={"wall_seconds": round(time.monotonic() - started, 3)})
        write_run_summary(summary, options.out_dir)
    return summary


def _interrupted_before_any_execution(
    options: RunOptions, hyperparameters: dict[str, str], doing: str
) -> RunSummary:
    """run.json of a run stopped before its stack existed."""
    return RunSummary(
        status="ABORTED",
        trigger=options.trigger,
        executions_started=0,
        training_jobs_started=0,
        training_job_name=None,
        training_job_status=None,
        training_job_exit_code=None,
        input=recorded_input(_payload(options, hyperparameters)),
        bucket=None,
        results_prefix=None,
        executions=[],
        history=[],
        lambda_invocations=0,
        notifications=[],
        error="Interrupted",
        failure_reason=_nothing_ran(doing, options),
        interrupted=True,
    )


def _nothing_ran(doing: str, options: RunOptions) -> str:
    state = f"; {options.state_dir} is as it was" if options.state_dir else ""
    return f"Ctrl-C while {doing}: no execution was started, nothing was published{state}"


def _payload(options: RunOptions, hyperparameters: dict[str, str]) -> dict[str, Any]:
    """What started (or would have started) the run: the console input, or the upload settings."""
    if options.trigger == "upload":
        return {"trigger": "upload", "settings": hyperparameters}
    return console_input(options, hyperparameters)


def _execute(
    stack: LocalStack,
    backend: LocalTrainingBackend,
    options: RunOptions,
    hyperparameters: dict[str, str],
    say: Printer,
    finishing: contextlib.ExitStack,
) -> RunSummary:
    """Restore the state, upload, run the executions (stopping them on Ctrl-C), then, with Ctrl-C held off
    until `finishing` closes, read the outcome, copy the results and save the state."""
    sfn = stack.operator_session().client("stepfunctions")  # as a person may (OperatorPolicy)
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
        interrupted = abandoned = False
        upload_failure: str | None = None
        published_before: str | None = None
        doing = "restoring the state"
        try:
            if options.state_dir:
                with rules_disabled(stack):  # loading saved state is not an upload
                    restored = restore_state(local_s3, bucket, options.state_dir)
                say(f"state  restored {restored} objects from {options.state_dir}")
                _set_aside_broken_pointer(local_s3, bucket, results_prefix, say)
            published_before = _published_run(local_s3, bucket, results_prefix)
            doing = "uploading the photos"
            if options.trigger == "upload":
                payload, followers = run_by_uploads(stack, options, hyperparameters, say)
            else:
                payload, followers = run_from_console(stack, options, hyperparameters, say)
        except (KeyboardInterrupt, PhotoFolderError) as exc:
            # Ctrl-C, or a photo that changed while it was uploaded: stop what started (in upload mode, the
            # uploads so far may have started executions), then report.
            if isinstance(exc, PhotoFolderError):
                upload_failure = str(exc)
                say(f"upload failed: {upload_failure}")
            else:
                interrupted = True
            payload = _payload(options, hyperparameters)
            try:
                followers, settled = stop_on_interrupt(sfn, machine_arn, lambdas, status_events, backend, say)
                abandoned = not settled  # something may still write to the bucket: nothing is saved
                interrupted = interrupted or abandoned
            except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
                interrupted = abandoned = True
                followers = _followers_now(sfn, machine_arn)
                say("stop   Ctrl-C again: not waiting any longer; nothing is saved")
        finishing.enter_context(held_off(say, "the run's outcome is read and its results copied and saved"))
        if not abandoned:
            backend.wait_all(timeout=60)
        pointers: list[str] = []  # the last lines: where the run's report and rejected list are
        summary = _summarise(
            stack,
            backend,
            options,
            payload,
            followers,
            say,
            interrupted=interrupted,
            abandoned=abandoned,
            published_before=published_before,
            doing=doing,
            upload_failure=upload_failure,
            pointers=pointers,
        )
        if options.state_dir:
            if summary.status == "ABORTED" or upload_failure:
                why = "interrupted" if summary.status == "ABORTED" else "not uploaded whole"
                say(f"state  not saved: the run was {why}; {options.state_dir} is as it was")
            else:
                say(f"state  saving the bucket to {options.state_dir}")
                saved = save_state(local_s3, bucket, options.state_dir)
                say(f"state  saved {saved} objects to {options.state_dir}")
        for line in pointers:
            say(line)
    return summary


def _followers_now(sfn: Any, machine_arn: str) -> list[HistoryFollower]:
    """A follower of every execution of the state machine, its history read once."""
    followers = []
    executions = sfn.list_executions(stateMachineArn=machine_arn)["executions"]
    for execution in sorted(executions, key=lambda e: e["startDate"]):
        follower = HistoryFollower(sfn, execution["executionArn"], lambda line: None)
        follower.poll()
        followers.append(follower)
    return followers


def _published_run(s3: Any, bucket: str, results_prefix: str) -> str | None:
    """The run id latest.json names, or None when nothing is published."""
    latest = read_latest(s3, bucket, results_prefix)
    return latest.run_id if latest else None


def _set_aside_broken_pointer(s3: Any, bucket: str, results_prefix: str, say: Printer) -> None:
    """A restored latest.json that names files the state does not hold (left by an interrupted run of an
    earlier facetrain, which saved the bucket while Publish wrote) would fail every run; it is set aside,
    with a message, so that this run trains afresh and publishes a whole one."""
    missing = missing_published_files(s3, bucket, results_prefix)
    if not missing:
        return
    latest_key = f"{results_prefix}{LATEST_JSON}"
    s3.copy_object(
        Bucket=bucket, Key=f"{latest_key}.broken", CopySource={"Bucket": bucket, "Key": latest_key}
    )
    s3.delete_object(Bucket=bucket, Key=latest_key)
    say(
        f"state  {latest_key} named {counted(len(missing), 'file')} the saved state does not hold (e.g. "
        f"{missing[0]}), left by an interrupted run: set aside as {latest_key}.broken; "
        "this run publishes afresh"
    )


def _summarise(
    stack: LocalStack,
    backend: LocalTrainingBackend,
    options: RunOptions,
    payload: dict[str, Any],
    followers: list[HistoryFollower],
    say: Printer,
    *,
    interrupted: bool,
    abandoned: bool,
    published_before: str | None,
    doing: str,
    upload_failure: str | None = None,
    pointers: list[str] | None = None,
) -> RunSummary:
    """The run's outcome, once nothing can change the bucket (or the wait was abandoned); the results
    copied to the output folder when the run published, else the run's evidence (results_copy.
    copy_run_evidence); `pointers` receives the lines that point at its report and rejected list, for the
    caller to say last."""
    operator = stack.operator_session()
    s3, sfn = operator.client("s3"), operator.client("stepfunctions")
    bucket = stack.physical(stack.only("AWS::S3::Bucket"))
    machine_arn = stack.physical(stack.only("AWS::StepFunctions::StateMachine"))
    results_prefix = stack.parameters["ResultsPrefix"]
    executions = [sfn.describe_execution(executionArn=f.arn) for f in followers]
    jobs = list(backend.jobs.values())
    job_name = jobs[-1].name if jobs else None
    job_status = _job_status(operator.client("sagemaker"), job_name) if job_name else None
    status = overall_status(executions)
    error, reason = None, None
    if interrupted:
        # The last execution started decides (in upload mode an earlier one may have published before a
        # later one was stopped: that run is ABORTED and, unsaved, leaves the state as it was).
        latest = read_latest(s3, bucket, results_prefix) if executions and not abandoned else None
        published = (
            latest is not None
            and latest.run_id != published_before
            and latest.execution == executions[-1]["name"]
        )
        if abandoned:
            status = "ABORTED"
        elif published and status != "SUCCEEDED":
            status = "SUCCEEDED"
            say("stop   the run had published before the stop took effect: it is reported as finished")
        elif status != "SUCCEEDED":
            status = "ABORTED"
    if upload_failure is not None and not interrupted:
        status, error, reason = "FAILED", "PhotoFolderError", upload_failure
    elif status != "SUCCEEDED":
        if interrupted and not executions:
            error, reason = "Interrupted", _nothing_ran(doing, options)
        else:
            error, reason = _run_failure(
                sfn, executions, followers, job_name and f"{job_name} ended {job_status}", interrupted
            )
    notifications = [Notification.model_validate(n) for n in stack.notifications()]
    for notification in notifications:
        say(f"notify {notification.Subject}")
    results = copy_results(s3, bucket, results_prefix, options.out_dir) if status == "SUCCEEDED" else []
    evidence = (
        []
        if status == "SUCCEEDED" or abandoned  # abandoned: the bucket may still change
        else _copy_evidence(s3, bucket, results_prefix, executions, options.out_dir)
    )
    if options.forget and status != "ABORTED":
        # --out holds the copies of earlier runs (runs/<id>/) and of earlier current files: the same scan
        # the purge made of the bucket, over the folder; also when the forget failed (a republish that
        # failed after the purge, a name found nowhere in the bucket any more): the request stands.
        scrubbed = scrub_folder(options.out_dir, options.forget, stack.parameters["ImagesPrefix"])
        say(
            f"forget {options.out_dir}: {counted(scrubbed.rewritten, 'file')} rewritten without them, "
            f"{scrubbed.deleted} deleted"
        )
    summary = RunSummary(
        status=status,
        trigger=options.trigger,
        executions_started=len(sfn.list_executions(stateMachineArn=machine_arn)["executions"]),
        training_jobs_started=len(jobs),
        training_job_name=job_name,
        training_job_status=job_status,
        training_job_exit_code=jobs[-1].exit_code if jobs else None,
        input=recorded_input(payload),
        bucket=bucket,
        results_prefix=results_prefix,
        executions=[execution_outcome(e, f) for e, f in zip(executions, followers, strict=True)],
        history=[visit.record() for visit in followers[-1].visits] if followers else [],
        lambda_invocations=len(stack.lambdas.invocations),
        notifications=notifications,
        results=results,
        error=error,
        failure_reason=reason,
        interrupted=interrupted,
    )
    # Nobody left out in silence (issue 27): read from the published run's metrics.json, or from the one a
    # run that did not publish left in its evidence (require_all_identities=true refused it, a gate).
    for line in left_out_lines(options.out_dir, results + evidence):
        say(line)
    if status == "SUCCEEDED":
        say(f"done   SUCCEEDED: {f'results in {options.out_dir}' if jobs else 'nothing changed'}")
    else:
        say(f"done   {status}: {summary.error}: {summary.failure_reason}")
    if pointers is not None:
        pointers += evidence_lines(options.out_dir, results + evidence)
    return summary


def _copy_evidence(
    s3: Any, bucket: str, results_prefix: str, executions: list[dict[str, Any]], out_dir: Path
) -> list[str]:
    """What each execution that did not succeed left (results_copy.copy_run_evidence), in OUT_DIR/runs/
    <run id>/, never over the published files at the top; the paths copied, relative to OUT_DIR."""
    copied: list[str] = []
    for execution in executions:
        if execution["status"] != "SUCCEEDED":
            finished = FinishedExecution.described(execution)
            copied += copy_run_evidence(s3, bucket, results_prefix, finished, out_dir)
    return copied


def _job_status(sagemaker: Any, name: str) -> str:
    """The TrainingJobStatus of a local job."""
    return str(sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"])


def _run_failure(
    sfn: Any,
    executions: list[dict[str, Any]],
    followers: list[HistoryFollower],
    last_job: str | None,
    interrupted: bool = False,
) -> tuple[str | None, str | None]:
    """(error, failure reason) of a run that did not succeed: the first execution that did not.
    last_job: "<name> ended <status>" of the last training job started, or None. An interrupted run's
    stopped execution is ExecutionAborted whatever moto's interpreter recorded after the stop."""
    failed = next((e for e in executions if e["status"] != "SUCCEEDED"), None)
    if failed is None:
        return "NoUploads", "the folder holds no file to upload"
    error, reason = execution_failure(sfn, failed, followers[executions.index(failed)])
    stopped = failed["status"] in ("ABORTED", "RUNNING")  # RUNNING: not ended when the wait was given up
    if (failed["status"] == "ABORTED" and not error) or (interrupted and stopped):
        error = "ExecutionAborted"
        reason = (
            "the execution was stopped (StopExecution, Ctrl-C); training job: "
            f"{last_job or 'none was started'}; nothing was published"
        )
    return error, reason
