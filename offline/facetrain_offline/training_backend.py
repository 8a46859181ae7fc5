"""A local SageMaker training backend behind moto's CreateTrainingJob/DescribeTrainingJob.

When anything calls CreateTrainingJob (the start Lambda, through boto3), moto records the job and this
backend runs the real container entry point (`train`) as a subprocess in a SAGEMAKER_BASE_DIR tree laid
out as SageMaker lays it out: channels downloaded from the (local) bucket per their S3 data source,
string hyperparameters, inputdataconfig.json and resourceconfig.json. It streams the job's log, tars
`model/` to `<output path>/<job>/output/model.tar.gz`, writes the log to CloudWatch Logs as SageMaker does
(job_logs.py: the SDK's log streaming reads it), and reports InProgress → Completed/Failed/Stopped,
with the FailureReason read from `output/failure`, through DescribeTrainingJob. moto has no
StopTrainingJob: this backend adds it and does what SageMaker does (status Stopping, SIGTERM to the
container, SIGKILL after the grace period, then Stopped). The Lambdas do not know they are local: the
seam is the AWS API.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from facetrain.sagemaker_env import OptMl, channel_config, write_tree
from moto.core.responses import EmptyResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeTrainingJob, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from .job_logs import TrainingJobLogs
from .lambda_runtime import environment_snapshot

FAILURE_REASON_LIMIT = 1024
STOP_GRACE_SECONDS = 120.0  # SageMaker's: SIGKILL this long after the SIGTERM of StopTrainingJob
LogSink = Callable[[str, str], None]  # (job name, log line)
StatusSink = Callable[[str, str, str], None]  # (job name, status, secondary status)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key/prefix') of an s3:// URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri}")
    return parsed.netloc, parsed.path.lstrip("/")


@dataclass
class LocalJob:
    """What the backend knows of one job it runs."""

    name: str
    directory: Path
    thread: threading.Thread | None = None
    exit_code: int | None = None
    log: list[str] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    cloudwatch: TrainingJobLogs | None = None


class LocalTrainingBackend:
    """Runs moto-recorded training jobs as local `train` processes, one thread per job."""

    def __init__(
        self,
        work_dir: Path,
        train_command: list[str] | None = None,
        on_log: LogSink | None = None,
        extra_env: dict[str, str] | None = None,
        on_status: StatusSink | None = None,
        stop_grace_seconds: float = STOP_GRACE_SECONDS,
    ) -> None:
        self.work_dir = work_dir
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
        for process in processes:
            if process.poll() is None:
                process.terminate()

        def kill() -> None:
            for process in processes:
                if process.poll() is None:
                    self._emit(local, f"local training backend: SIGKILL after {self.stop_grace_seconds:g} s")
                    process.kill()

        timer = threading.Timer(self.stop_grace_seconds, kill)
        timer.daemon = True
        timer.start()

    def submit(self, job: FakeTrainingJob, region: str) -> None:
        """Mark the job InProgress and run it in the background."""
        _set_status(job, "InProgress", "Starting", "Preparing the local instance for training")
        job.training_end_time = None
        local = LocalJob(job.training_job_name, self.work_dir / job.training_job_name)
        # The client is made here, in the caller's thread (an in-process Lambda's invocation, which holds
        # the invocation lock), not in the job's thread: botocore copies os.environ while it builds a
        # client, and in-process invocations set and restore their variables in other threads.
        s3 = boto3.client("s3", region_name=region)
        count = int((job.resource_config or {}).get("InstanceCount", 1))
        local.cloudwatch = TrainingJobLogs(boto3.client("logs", region_name=region), local.name, count)
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
        _set_status(job, status, secondary, message)
        if self.on_status:
            self.on_status(job.training_job_name, status, secondary)

    def _finish(
        self, job: FakeTrainingJob, status: str, secondary: str, started: float, reason: str | None = None
    ) -> None:
        _finish(job, status, secondary, started, reason)
        if self.on_status:
            self.on_status(job.training_job_name, status, secondary)

    def _run(self, job: FakeTrainingJob, local: LocalJob, s3: Any) -> None:
        started = time.monotonic()
        try:
            self._status(job, "InProgress", "Downloading", "Downloading input data")
            count = int((job.resource_config or {}).get("InstanceCount", 1))
            hosts = [f"algo-{i}" for i in range(1, count + 1)]
            bases = [self._lay_out(job, local.directory / host, s3, hosts, host) for host in hosts]
            if local.stop_requested.is_set():
                self._finish(job, "Stopped", "Stopped", started)
                return
            self._status(
                job, "InProgress", "Training", "Training image download completed. Training in progress."
            )
            job.training_start_time = datetime.now(UTC)
            max_runtime = int((job.stopping_condition or {}).get("MaxRuntimeInSeconds", 86400))
            codes, timed_out = self._train(local, bases, max_runtime)
            local.exit_code = next((code for code in codes if code != 0), 0)
            if local.stop_requested.is_set():
                self._finish(job, "Stopped", "Stopped", started)
                return
            if timed_out:
                self._finish(job, "Stopped", "MaxRuntimeExceeded", started)
                return
            failed = [
                (host, base, code) for host, base, code in zip(hosts, bases, codes, strict=True) if code
            ]
            if failed:
                host, base, code = failed[0]
                reason = _failure_reason(base, code, host if count > 1 else None)
                self._finish(job, "Failed", "Failed", started, reason)
                return
            self._status(job, "InProgress", "Uploading", "Uploading generated training model")
            self._upload_model(job, bases, s3)
            self._finish(job, "Completed", "Completed", started)
        except Exception as exc:  # the local backend itself failed: report it as SageMaker would
            self._emit(local, f"local training backend error: {type(exc).__name__}: {exc}")
            self._finish(job, "Failed", "Failed", started, f"ClientError: {type(exc).__name__}: {exc}"[:1024])

    def _lay_out(self, job: FakeTrainingJob, base: Path, s3: Any, hosts: list[str], host: str) -> Path:
        """Create one host's /opt/ml as SageMaker does, downloading every channel (its shard of sharded
        ones: `ShardedByS3Key` gives each host every n-th object of the sorted list)."""
        channels: dict[str, dict[str, str]] = {}
        for channel in job.input_data_config or []:
            distribution = channel["DataSource"]["S3DataSource"].get(
                "S3DataDistributionType", "FullyReplicated"
            )
            channels[channel["ChannelName"]] = channel_config(
                channel.get("InputMode", "File"), distribution, channel.get("RecordWrapperType", "None")
            )
        tree = write_tree(base, job.hyper_parameters or {}, channels, host, hosts)
        for channel in job.input_data_config or []:
            source = channel["DataSource"]["S3DataSource"]
            sharded = source.get("S3DataDistributionType") == "ShardedByS3Key"
            shard = (hosts.index(host), len(hosts)) if sharded else (0, 1)
            _download_channel(s3, source, tree.channel(channel["ChannelName"]), shard)
        return base

    def _train(self, local: LocalJob, bases: list[Path], max_runtime: int) -> tuple[list[int], bool]:
        """Run `train` once per host (loopback stands in for the hosts' network), streaming the output;
        SIGTERM them all when MaxRuntimeInSeconds passes."""
        port = _free_port()
        processes = []
        for base in bases:
            env = {
                **environment_snapshot(),
                **self.extra_env,
                "SAGEMAKER_BASE_DIR": str(base),
                "PYTHONUNBUFFERED": "1",
                # On SageMaker the hosts resolve each other by name; here they all listen on loopback.
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            }
            processes.append(
                subprocess.Popen(  # noqa: S603 - our own entry point, fixed arguments
                    [*self.train_command, "train"],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    errors="replace",
                    # Its own session: a Ctrl-C at the terminal reaches `facetrain run`, which stops the
                    # job as SageMaker would (SIGTERM), not the container directly.
                    start_new_session=True,
                )
            )
        with self._lock:  # a StopTrainingJob from now on signals these; one that came earlier, below
            local.processes = processes
            stopped_early = local.stop_requested.is_set()
        if stopped_early:
            self._signal_stop(local, processes)
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            for process in processes:
                process.terminate()  # SIGTERM, as SageMaker does at MaxRuntimeInSeconds

        def stream(process: subprocess.Popen[str], host: int) -> None:
            assert process.stdout is not None
            prefix = f"[algo-{host}] " if len(processes) > 1 else ""
            for line in process.stdout:
                self._emit(local, prefix + line.rstrip("\n"), host)
            stopping = local.stop_requested.is_set() or timed_out.is_set()  # they have had their SIGTERM
            # As on SageMaker, one failed host ends the others' work; a second SIGTERM to a host that is
            # already exiting after the first could meet it in interpreter shutdown (exit -15, not 143).
            if process.wait() != 0 and not stopping:
                for other in processes:
                    if other.poll() is None:
                        other.terminate()

        timer = threading.Timer(max_runtime, stop)
        timer.start()
        readers = [
            threading.Thread(target=stream, args=(process, host))
            for host, process in enumerate(processes, start=1)
        ]
        try:
            for reader in readers:
                reader.start()
            for reader in readers:
                reader.join()
            codes = [process.wait() for process in processes]
        finally:
            timer.cancel()
        return codes, timed_out.is_set()

    def _upload_model(self, job: FakeTrainingJob, bases: list[Path], s3: Any) -> None:
        """One model.tar.gz of every host's model/, merged as SageMaker merges them."""
        buffer = io.BytesIO()
        added: set[str] = set()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for base in bases:
                model_dir = OptMl(base).model_dir
                for path in sorted(model_dir.rglob("*")):
                    name = path.relative_to(model_dir).as_posix()
                    if path.is_file() and name not in added:
                        archive.add(path, arcname=name)
                        added.add(name)
        bucket, key = split_s3_uri(job.model_artifacts["S3ModelArtifacts"])
        s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _download_channel(s3: Any, source: dict[str, Any], target: Path, shard: tuple[int, int] = (0, 1)) -> None:
    """Download an S3Prefix or ManifestFile data source into a channel folder, keys made relative;
    `shard` (index, count): only every count-th object of the sorted list, from index."""
    data_type = source.get("S3DataType", "S3Prefix")
    bucket, key = split_s3_uri(source["S3Uri"])
    if data_type == "ManifestFile":
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        prefix_bucket, prefix = split_s3_uri(manifest[0]["prefix"])
        pairs = [(f"{prefix}{relative}", relative) for relative in manifest[1:]]
        bucket = prefix_bucket
    elif data_type == "S3Prefix":
        paginator = s3.get_paginator("list_objects_v2")
        pairs = [
            (item["Key"], item["Key"][len(key) :].lstrip("/"))
            for page in paginator.paginate(Bucket=bucket, Prefix=key)
            for item in page.get("Contents", [])
            if not item["Key"].endswith("/")
        ]
    else:
        raise ValueError(f"S3DataType {data_type} is not supported by the local backend")
    index, count = shard
    for object_key, relative in sorted(pairs)[index::count]:
        destination = (target / relative).resolve()
        if not destination.is_relative_to(target.resolve()):
            raise ValueError(f"object key {object_key!r} escapes the channel folder")
        destination.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, object_key, str(destination))


def _failure_reason(base: Path, exit_code: int, host: str | None = None) -> str:
    """SageMaker's FailureReason: output/failure of the (named) host, or its exit code."""
    failure = OptMl(base).failure_file
    text = failure.read_text(encoding="utf-8", errors="replace").strip() if failure.is_file() else ""
    text = text or f"the container exited with code {exit_code}"
    return f"AlgorithmError: {host + ': ' if host else ''}{text}"[:FAILURE_REASON_LIMIT]


def _set_status(job: FakeTrainingJob, status: str, secondary: str, message: str) -> None:
    now = datetime.now(UTC)
    job.training_job_status = status
    job.secondary_status = secondary
    job.last_modified_time = now
    job.secondary_status_transitions = [
        *[dict(t, EndTime=t.get("EndTime") or now) for t in (job.secondary_status_transitions or [])],
        {"Status": secondary, "StartTime": now, "StatusMessage": message},
    ]


def _finish(
    job: FakeTrainingJob, status: str, secondary: str, started: float, reason: str | None = None
) -> None:
    _set_status(job, status, secondary, reason or status)
    job.training_end_time = datetime.now(UTC)
    job.training_time_in_seconds = job.billable_time_in_seconds = max(1, round(time.monotonic() - started))
    if reason:
        job.failure_reason = reason
