"""A local SageMaker training backend behind moto's CreateTrainingJob/DescribeTrainingJob.

When anything calls CreateTrainingJob (the start Lambda, through boto3), moto records the job and this
backend runs it in a thread: each host's /opt/ml laid out as SageMaker lays it out (host_files.py), the
real container entry point (`train`) run once per host, as a process (host_processes.py) or, given a
ContainerEngine, inside the training image with podman (host_containers.py), its log streamed and written
to CloudWatch Logs as SageMaker does (job_logs.py: the SDK's log streaming reads it), every host's
`model/` merged into `<output path>/<job>/output/model.tar.gz` once the container has run, whatever
the outcome (completed, failed or stopped: as SageMaker, see `_end_unfinished`). DescribeTrainingJob
reports InProgress → Completed/Failed/Stopped (training_job_status.py), with the FailureReason read from
`output/failure`.
A CheckpointConfig (Spot) is honoured: S3Uri's objects go into each host's checkpoints folder before
the container starts, and the folder's files back to S3Uri once it has exited (host_files.py).
moto has no StopTrainingJob: this backend adds it and does what SageMaker does (status Stopping, SIGTERM
to the container, SIGKILL after the grace period, then Stopped). The Lambdas do not know they are local:
the seam is the AWS API.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.core.responses import EmptyResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeTrainingJob, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from .host_containers import ContainerEngine
from .host_files import (
    CHANNEL_LAYOUTS,
    ChannelLayout,
    download_checkpoints,
    failure_reason,
    lay_out_host,
    upload_checkpoints,
    upload_model,
)
from .host_processes import signal_stop, start_hosts, stream_to_exit
from .identities import active_account
from .job_logs import TrainingJobLogs
from .training_job_status import finish, set_status

STOP_GRACE_SECONDS = 120.0  # SageMaker's: SIGKILL this long after the SIGTERM of StopTrainingJob
LogSink = Callable[[str, str], None]  # (job name, log line)
StatusSink = Callable[[str, str, str], None]  # (job name, status, secondary status)


@dataclass
class LocalJob:
    """What the backend knows of one job it runs."""

    name: str
    directory: Path
    hosts: list[str]  # algo-1 … algo-<InstanceCount>, read once from the job's ResourceConfig
    thread: threading.Thread | None = None
    exit_code: int | None = None
    log: list[str] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    cloudwatch: TrainingJobLogs | None = None


class LocalTrainingBackend:
    """Runs moto-recorded training jobs as local `train` processes or containers, one thread per job."""

    def __init__(
        self,
        work_dir: Path,
        train_command: list[str] | None = None,
        on_log: LogSink | None = None,
        extra_env: dict[str, str] | None = None,
        on_status: StatusSink | None = None,
        stop_grace_seconds: float = STOP_GRACE_SECONDS,
        containers: ContainerEngine | None = None,
        channel_layout: ChannelLayout = "suffix",
    ) -> None:
        self.work_dir = work_dir
        self.containers = containers  # set: each host runs as a container of its image, not a process
        if channel_layout not in CHANNEL_LAYOUTS:
            raise ValueError(f"channel_layout {channel_layout!r}: give one of {', '.join(CHANNEL_LAYOUTS)}")
        self.channel_layout = channel_layout  # where manifest entries land in a channel (host_files.py)
        self.train_command = train_command or [sys.executable, "-m", "facetrain.train"]
        self.on_log = on_log
        self.on_status = on_status
        self.extra_env = extra_env or {}
        self.stop_grace_seconds = stop_grace_seconds
        self.jobs: dict[str, LocalJob] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def installed(self) -> Iterator[LocalTrainingBackend]:
        """Patch moto's SageMaker so that CreateTrainingJob starts a local run and StopTrainingJob stops
        it (for the block's duration)."""
        original = SageMakerModelBackend.create_training_job
        backend = self

        def create_training_job(
            model_backend: SageMakerModelBackend, *args: Any, **kwargs: Any
        ) -> FakeTrainingJob:
            job = original(model_backend, *args, **kwargs)
            backend.submit(job, model_backend.region_name)
            return job

        def stop_training_job(response: SageMakerResponse) -> EmptyResult:
            name = response._get_param("TrainingJobName")
            try:
                job = response.sagemaker_backend.training_jobs[name]
            except KeyError:
                raise ValidationError(message=f"Could not find training job '{name}'.") from None
            backend.stop(job)
            return EmptyResult()

        SageMakerModelBackend.create_training_job = create_training_job  # type: ignore[method-assign]
        SageMakerResponse.stop_training_job = stop_training_job  # type: ignore[attr-defined]
        try:
            yield self
        finally:
            SageMakerModelBackend.create_training_job = original  # type: ignore[method-assign]
            del SageMakerResponse.stop_training_job  # type: ignore[attr-defined]
            self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        """No container outlives the local SageMaker (e.g. after a second Ctrl-C)."""
        for local in list(self.jobs.values()):
            for process in local.processes:
                if process.poll() is None:
                    process.kill()

    def stop(self, job: FakeTrainingJob) -> None:
        """StopTrainingJob as SageMaker answers it: only an InProgress job can be stopped (a
        ValidationException otherwise); it becomes Stopping, its container gets SIGTERM (SIGKILL after
        stop_grace_seconds), and it ends Stopped once the container has exited."""
        with self._lock:
            local = self.jobs.get(job.training_job_name)
            if job.training_job_status != "InProgress" or local is None:
                raise ValidationError(
                    message="The request was rejected because the training job is in status "
                    f"{job.training_job_status}."
                )
            self._status(job, "Stopping", "Stopping", "Stopping the training job")
            local.stop_requested.set()
            processes = list(local.processes)
        self._signal_stop(local, processes)

    def _signal_stop(self, local: LocalJob, processes: list[subprocess.Popen[str]]) -> None:
        """SIGTERM now, SIGKILL to those still running after the grace period."""
        signal_stop(processes, self.stop_grace_seconds, lambda line: self._emit(local, line))

    def submit(self, job: FakeTrainingJob, region: str) -> None:
        """Mark the job InProgress and run it in the background."""
        set_status(job, "InProgress", "Starting", "Preparing the local instance for training")
        job.training_end_time = None
        count = int((job.resource_config or {}).get("InstanceCount", 1))
        hosts = [f"algo-{i}" for i in range(1, count + 1)]
        local = LocalJob(job.training_job_name, self.work_dir / job.training_job_name, hosts)
        # SageMaker reads the channels, uploads the model and writes the logs with the job's RoleArn
        # (identities.py): explicit credentials, whatever the environment of the thread that asks (here,
        # the start Lambda's invocation).
        role = active_account().roles.session(job.role_arn, "SageMaker")
        s3 = role.client("s3", region_name=region)
        local.cloudwatch = TrainingJobLogs(role.client("logs", region_name=region), local.name, count)
        local.thread = threading.Thread(
            target=self._run, args=(job, local, s3), name=f"train-{job.training_job_name}", daemon=True
        )
        with self._lock:
            self.jobs[local.name] = local
        local.thread.start()

    def wait_all(self, timeout: float | None = None) -> None:
        """Block until every submitted job has finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for local in list(self.jobs.values()):
            if local.thread is not None:
                local.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @property
    def busy(self) -> bool:
        return any(j.thread is not None and j.thread.is_alive() for j in self.jobs.values())

    # -- one job -------------------------------------------------------------------------------------

    def _emit(self, local: LocalJob, line: str, host: int = 1) -> None:
        local.log.append(line)
        if local.cloudwatch:
            local.cloudwatch.put(host, line)
        if self.on_log:
            self.on_log(local.name, line)

    def _status(self, job: FakeTrainingJob, status: str, secondary: str, message: str) -> None:
        set_status(job, status, secondary, message)
        if self.on_status:
            self.on_status(job.training_job_name, status, secondary)

    def _finish(
        self, job: FakeTrainingJob, status: str, secondary: str, started: float, reason: str | None = None
    ) -> None:
        finish(job, status, secondary, started, reason)
        if self.on_status:
            self.on_status(job.training_job_name, status, secondary)

    def _run(self, job: FakeTrainingJob, local: LocalJob, s3: Any) -> None:
        started = time.monotonic()
        try:
            self._status(job, "InProgress", "Downloading", "Downloading input data")
            hosts = local.hosts
            bases = [
                lay_out_host(job, local.directory / host, s3, hosts, host, self.channel_layout)
                for host in hosts
            ]
            for base in bases:  # CheckpointConfig: what an interrupted Spot job saved
                download_checkpoints(job, base, s3)
            if local.stop_requested.is_set():
                self._finish(job, "Stopped", "Stopped", started)
                return
            self._status(
                job, "InProgress", "Training", "Training image download completed. Training in progress."
            )
            job.training_start_time = datetime.now(UTC)
            max_runtime = int((job.stopping_condition or {}).get("MaxRuntimeInSeconds", 86400))
            codes, timed_out = self._train(local, bases, max_runtime)
            for base in bases:  # SageMaker syncs them as the job runs; here once, whatever the outcome
                upload_checkpoints(job, base, s3)
            local.exit_code = next((code for code in codes if code != 0), 0)
            failed = [
                (host, base, code) for host, base, code in zip(hosts, bases, codes, strict=True) if code
            ]
            if local.stop_requested.is_set() or timed_out or failed:
                self._end_unfinished(job, local, bases, s3, started, timed_out, failed)
                return
            self._status(job, "InProgress", "Uploading", "Uploading generated training model")
            upload_model(job, bases, s3)
            self._finish(job, "Completed", "Completed", started)
        except Exception as exc:  # the local backend itself failed: report it as SageMaker would
            self._emit(local, f"local training backend error: {type(exc).__name__}: {exc}")
            self._finish(job, "Failed", "Failed", started, f"ClientError: {type(exc).__name__}: {exc}"[:1024])

    def _end_unfinished(
        self,
        job: FakeTrainingJob,
        local: LocalJob,
        bases: list[Path],
        s3: Any,
        started: float,
        timed_out: bool,
        failed: list[tuple[str, Path, int]],
    ) -> None:
        """End a job whose container ran but did not complete: stopped (StopTrainingJob, or
        MaxRuntimeInSeconds) or failed (a host exited non-zero, its FailureReason read first). Its hosts'
        model/ is uploaded as for a completed job, before the end is reported: what a failed job wrote
        there (facetrain's report.html, rejected.csv and metrics.json of a refused run) is the operator's
        evidence (results_copy.copy_run_evidence). An upload error goes to the job's log, never into the
        outcome: DescribeTrainingJob still gives the job's own FailureReason.

        Why SageMaker does the same: its documentation says it uploads /opt/ml/model "at the end of the
        training job" (docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html),
        and that a stopped job's SIGTERM leaves 120 seconds "to save the model artifacts, so the results of
        training are not lost" (API_StopTrainingJob.html; API_StoppingCondition.html for MaxRuntimeInSeconds).
        That a *failed* job's model/ is uploaded too is not stated in AWS's documentation; AWS's own SDK
        says it: "SageMaker Training exports model/output artifacts even when the training job fails", and
        its local mode does so, in a `finally` (github.com/aws/sagemaker-python-sdk pull request 746).
        DescribeTrainingJob keeps ModelArtifacts whatever the outcome: a required member of its response
        (botocore's service model), the configured location, as moto sets it at CreateTrainingJob."""
        reason = None  # the outcome is decided before the upload: nothing during it changes it
        if local.stop_requested.is_set():
            status, secondary = "Stopped", "Stopped"
        elif timed_out:
            status, secondary = "Stopped", "MaxRuntimeExceeded"
        else:
            host, base, code = failed[0]
            status, secondary = "Failed", "Failed"
            reason = failure_reason(base, code, host if len(local.hosts) > 1 else None)
        try:
            upload_model(job, bases, s3)
        except Exception as exc:  # the evidence is lost, the outcome is not: said in the job's log
            line = f"local training backend: model/ not uploaded: {type(exc).__name__}: {exc}"
            # the log group may be gone with the bucket (a stack deleted under an interrupted run): the
            # line stays in the job's own log (LocalJob.log) and the outcome is still reported
            with contextlib.suppress(Exception):
                self._emit(local, line)
        self._finish(job, status, secondary, started, reason)

    def _train(self, local: LocalJob, bases: list[Path], max_runtime: int) -> tuple[list[int], bool]:
        """Run `train` once per host (a process, or a container of the image), streaming the output;
        SIGTERM them all when MaxRuntimeInSeconds passes. Returns (exit codes, whether
        MaxRuntimeInSeconds stopped them)."""
        if self.containers is None:
            return self._stream(local, start_hosts(self.train_command, bases, self.extra_env), max_runtime)
        with self.containers.hosts(local.name, bases, self.extra_env) as containers:
            return self._stream(local, list(containers), max_runtime)

    def _stream(
        self, local: LocalJob, processes: list[subprocess.Popen[str]], max_runtime: int
    ) -> tuple[list[int], bool]:
        with self._lock:  # a StopTrainingJob from now on signals these; one that came earlier, below
            local.processes = processes
            stopped_early = local.stop_requested.is_set()
        if stopped_early:
            self._signal_stop(local, processes)
        return stream_to_exit(
            processes, max_runtime, local.stop_requested, lambda line, host: self._emit(local, line, host)
        )
