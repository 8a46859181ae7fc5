"""The local training backend with several hosts: shards, failures, StopTrainingJob (no photos, no torch:
a stand-in job)."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import textwrap
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from facetrain_offline.local_aws import local_aws
from facetrain_offline.training_backend import LocalTrainingBackend
from support.testkit import training_job_role

# Stand-in for `train`: records its shard and resourceconfig; algo-2 fails when FAIL_HOST says so.
FAKE_TRAIN = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    base = pathlib.Path(os.environ["SAGEMAKER_BASE_DIR"])
    resources = json.loads((base / "input/config/resourceconfig.json").read_text())
    photos = sorted(p.relative_to(base / "input/data/face_imgs").as_posix()
                    for p in (base / "input/data/face_imgs").rglob("*") if p.is_file())
    host = resources["current_host"]
    if host == os.environ.get("FAIL_HOST"):
        (base / "model" / "report.html").write_text(f"why {host} failed")  # its evidence, as facetrain's
        (base / "output/failure").write_text("no usable weights on this host")
        sys.exit(1)
    if os.environ.get("FAIL_HOST") and host != resources["hosts"][0]:
        time.sleep(30)  # a host left waiting for the others: must be stopped when one fails
    record = {"photos": photos, "master": os.environ["MASTER_ADDR"]}
    (base / "model" / f"{host}.json").write_text(json.dumps(record))
    """
)


def _job(sagemaker, s3, name: str, hosts: int) -> dict:
    """Create a job and wait for it to end."""
    _create(sagemaker, s3, name, hosts)
    return _wait(sagemaker, name, until=lambda status: status != "InProgress")


def _wait(sagemaker, name: str, until) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = sagemaker.describe_training_job(TrainingJobName=name)
        if until(job["TrainingJobStatus"]):
            return job
        time.sleep(0.1)
    raise TimeoutError(name)


def _create(sagemaker, s3, name: str, hosts: int, output: str = "s3://photos-bkt/out") -> None:
    s3.put_object(
        Bucket="photos-bkt",
        Key="m.json",
        Body=json.dumps(
            [{"prefix": "s3://photos-bkt/face_imgs/"}, *[f"p{i}/{j}.jpg" for i in range(3) for j in range(2)]]
        ),
    )
    sagemaker.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": "local", "TrainingInputMode": "File"},
        RoleArn=JOB_ROLE_ARN,
        InputDataConfig=[
            {
                "ChannelName": "face_imgs",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "ManifestFile",
                        "S3Uri": "s3://photos-bkt/m.json",
                        "S3DataDistributionType": "ShardedByS3Key",
                    }
                },
            }
        ],
        OutputDataConfig={"S3OutputPath": output},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": hosts, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 120},
    )


JOB_ROLE = "training-job"
JOB_ROLE_ARN = f"arn:aws:iam::123456789012:role/{JOB_ROLE}"


def _clients():
    training_job_role(JOB_ROLE, "photos-bkt", "eu-west-1")
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="photos-bkt", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for i in range(3):
        for j in range(2):
            s3.put_object(Bucket="photos-bkt", Key=f"face_imgs/p{i}/{j}.jpg", Body=b"x")
    return s3, boto3.client("sagemaker", region_name="eu-west-1")


def test_each_host_gets_its_shard_and_the_model_dirs_are_merged(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    with local_aws():
        s3, sagemaker = _clients()
        backend = LocalTrainingBackend(tmp_path / "jobs", train_command=[sys.executable, str(script)])
        with backend.installed():
            job = _job(sagemaker, s3, "three-hosts", hosts=3)
        archive = s3.get_object(Bucket="photos-bkt", Key="out/three-hosts/output/model.tar.gz")["Body"].read()
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert sorted(tar.getnames()) == ["algo-1.json", "algo-2.json", "algo-3.json"]
        shards = [json.loads(tar.extractfile(f"algo-{i}.json").read()) for i in (1, 2, 3)]
    photos = [photo for shard in shards for photo in shard["photos"]]
    assert sorted(photos) == sorted(f"p{i}/{j}.jpg" for i in range(3) for j in range(2))  # each once
    assert all(len(shard["photos"]) == 2 for shard in shards)
    assert {shard["master"] for shard in shards} == {"127.0.0.1"}


def test_a_failing_host_fails_the_job_with_its_reason_and_stops_the_others(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    with local_aws():
        s3, sagemaker = _clients()
        backend = LocalTrainingBackend(
            tmp_path / "jobs", train_command=[sys.executable, str(script)], extra_env={"FAIL_HOST": "algo-1"}
        )
        started = time.monotonic()
        with backend.installed():
            job = _job(sagemaker, s3, "one-fails", hosts=2)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == "AlgorithmError: algo-1: no usable weights on this host"
    assert time.monotonic() - started < 25  # algo-2 (sleeping 30 s) was stopped


def _archive(s3, key: str) -> dict[str, bytes]:
    """The members of the model.tar.gz at photos-bkt/key."""
    body = s3.get_object(Bucket="photos-bkt", Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar if member.isfile()}


def test_a_failed_jobs_model_dir_is_uploaded_as_sagemaker_does_and_its_reason_kept(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    with local_aws():
        s3, sagemaker = _clients()
        backend = LocalTrainingBackend(
            tmp_path / "jobs", train_command=[sys.executable, str(script)], extra_env={"FAIL_HOST": "algo-1"}
        )
        with backend.installed():
            job = _job(sagemaker, s3, "refused", hosts=1)
        archive = _archive(s3, "out/refused/output/model.tar.gz")
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == "AlgorithmError: no usable weights on this host"
    # What the job left in model/ before it failed is in S3 (the operator's evidence: results_copy.py),
    # where ModelArtifacts says (a required member of DescribeTrainingJob's response, whatever the outcome).
    assert job["ModelArtifacts"] == {"S3ModelArtifacts": "s3://photos-bkt/out/refused/output/model.tar.gz"}
    assert archive == {"report.html": b"why algo-1 failed"}


def test_an_upload_error_of_a_failed_job_is_logged_and_never_hides_its_reason(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    with local_aws():
        s3, sagemaker = _clients()
        backend = LocalTrainingBackend(
            tmp_path / "jobs", train_command=[sys.executable, str(script)], extra_env={"FAIL_HOST": "algo-1"}
        )
        with backend.installed():
            _create(sagemaker, s3, "lost", hosts=1, output="s3://no-such-bkt/out")  # cannot be written
            job = _wait(sagemaker, "lost", until=lambda status: status != "InProgress")
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == "AlgorithmError: no usable weights on this host"
    (said,) = [line for line in backend.jobs["lost"].log if "model/ not uploaded" in line]
    assert said.startswith("local training backend: model/ not uploaded: AccessDenied: ")  # the role's
    assert "model.tar.gz" in said


# Stand-in for `train` under StopTrainingJob: prints once it runs; STUBBORN ignores SIGTERM.
STOPPABLE_TRAIN = textwrap.dedent(
    """
    import os, pathlib, signal, sys, time
    if os.environ.get("STUBBORN"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:  # what a job saves in the 120 s SIGTERM gives it, "so the results of training are not lost"
        base = pathlib.Path(os.environ["SAGEMAKER_BASE_DIR"])
        def save_and_exit(*_):
            (base / "model" / "saved-on-sigterm.txt").write_text("partial")
            sys.exit(143)
        signal.signal(signal.SIGTERM, save_and_exit)
    print("running", flush=True)
    time.sleep(60)
    """
)


def _stop_running_job(
    tmp_path, name: str, extra_env: dict[str, str]
) -> tuple[dict, LocalTrainingBackend, list, dict[str, bytes]]:
    """Start a two-host job and stop it once both hosts run. Returns the job at the end, the backend, the
    statuses it reported followed by what DescribeTrainingJob said right after the stop request, and the
    members of the model.tar.gz uploaded by the time it was Stopped."""
    script = tmp_path / "stoppable_train.py"
    script.write_text(STOPPABLE_TRAIN)
    with local_aws():
        s3, sagemaker = _clients()
        backend = LocalTrainingBackend(
            tmp_path / "jobs",
            train_command=[sys.executable, str(script)],
            extra_env=extra_env,
            stop_grace_seconds=1,
        )
        statuses: list[str] = []
        backend.on_status = lambda job, status, secondary: statuses.append(status)
        with backend.installed():
            _create(sagemaker, s3, name, hosts=2)
            deadline = time.monotonic() + 30
            while (
                sum("running" in line for line in backend.jobs[name].log) < 2 and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            sagemaker.stop_training_job(TrainingJobName=name)
            stopping = sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
            job = _wait(sagemaker, name, until=lambda status: status == "Stopped")
            with pytest.raises(ClientError, match="in status Stopped"):  # as SageMaker answers
                sagemaker.stop_training_job(TrainingJobName=name)
        archive = _archive(s3, f"out/{name}/output/model.tar.gz")
    return job, backend, [*statuses, f"described right after the stop: {stopping}"], archive


def test_stop_training_job_sigterms_the_hosts_and_ends_stopped(tmp_path):
    job, backend, statuses, archive = _stop_running_job(tmp_path, "stopped", {})
    assert job["TrainingJobStatus"] == "Stopped" and job["SecondaryStatus"] == "Stopped"
    assert backend.jobs["stopped"].exit_code == 143
    assert archive == {"saved-on-sigterm.txt": b"partial"}  # what it saved on SIGTERM (hosts merged)
    assert statuses[-3:-1] == ["Stopping", "Stopped"]


def test_a_container_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    started = time.monotonic()
    job, backend, statuses, _ = _stop_running_job(tmp_path, "stubborn", {"STUBBORN": "1"})
    assert statuses[-1] == "described right after the stop: Stopping"  # until the grace period is over
    assert job["TrainingJobStatus"] == "Stopped"
    assert backend.jobs["stubborn"].exit_code == -9  # SIGKILL
    assert time.monotonic() - started < 30  # not the 60 s the container wanted
