"""The local training backend honours CheckpointConfig as SageMaker does: S3Uri's objects are in LocalPath
before the container starts, and what the container leaves there reaches S3Uri (done or stopped); the real
job, run through the backend, leaves its checkpoint under the run's checkpoints/ prefix."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import boto3
import pytest
from facetrain.checkpoints import load_checkpoints
from facetrain.contract.embeddings_file import load_embeddings
from facetrain_offline.local_aws import local_aws
from facetrain_offline.training_backend import LocalTrainingBackend
from support.testkit import training_job_role

BUCKET = "photos-bkt"
REGION = "eu-west-1"
JOB_ROLE_ARN = "arn:aws:iam::123456789012:role/training-job"
CHECKPOINTS = "results/runs/r1/checkpoints/"

# Stand-in for `train`: records what its checkpoints folder held at start, adds a file, and on SIGTERM
# adds another before exiting 143 (as the job flushes its checkpoint when stopped).
CHECKPOINTING_TRAIN = textwrap.dedent(
    """
    import json, os, pathlib, signal, sys, time
    base = pathlib.Path(os.environ["SAGEMAKER_BASE_DIR"])
    folder = base / "checkpoints"
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.is_dir() else None
    (base / "model" / "found.json").write_text(json.dumps(found))
    if folder.is_dir():
        (folder / "photo-outcomes-algo-1.pkl").write_bytes(b"saved as it went")
    def stopped(*_):
        (folder / "on-sigterm.pkl").write_bytes(b"flushed on SIGTERM")
        sys.exit(143)
    signal.signal(signal.SIGTERM, stopped)
    print("running", flush=True)
    if os.environ.get("LINGER"):
        time.sleep(60)
    """
)


def _clients():
    training_job_role("training-job", BUCKET, REGION)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return s3, boto3.client("sagemaker", region_name=REGION)


def _create(sagemaker, s3, name: str, photos: dict[str, bytes], checkpoints: bool, hyperparameters=None):
    for key, body in photos.items():
        s3.put_object(Bucket=BUCKET, Key=f"face_imgs/{key}", Body=body)
    manifest = [{"prefix": f"s3://{BUCKET}/face_imgs/"}, *sorted(photos)]
    s3.put_object(Bucket=BUCKET, Key="m.json", Body=json.dumps(manifest))
    request = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "local", "TrainingInputMode": "File"},
        "RoleArn": JOB_ROLE_ARN,
        "HyperParameters": hyperparameters or {},
        "InputDataConfig": [
            {
                "ChannelName": "face_imgs",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": f"s3://{BUCKET}/m.json"}
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }
    if checkpoints:  # as the start Lambda asks for a Spot run (training_job.py)
        request["CheckpointConfig"] = {
            "S3Uri": f"s3://{BUCKET}/{CHECKPOINTS}",
            "LocalPath": "/opt/ml/checkpoints",
        }
    sagemaker.create_training_job(**request)


def _wait(sagemaker, name: str, until, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = sagemaker.describe_training_job(TrainingJobName=name)
        if until(job["TrainingJobStatus"]):
            return job
        time.sleep(0.1)
    raise TimeoutError(name)


def _keys(s3, prefix: str) -> list[str]:
    return sorted(
        item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    )


def _found(tmp_path: Path, name: str) -> list[str] | None:
    return json.loads((tmp_path / "jobs" / name / "algo-1" / "model" / "found.json").read_text())


@pytest.fixture
def stand_in(tmp_path: Path) -> list[str]:
    script = tmp_path / "checkpointing_train.py"
    script.write_text(CHECKPOINTING_TRAIN)
    return [sys.executable, str(script)]


def test_saved_checkpoints_are_put_back_and_new_ones_uploaded(tmp_path, stand_in):
    with local_aws():
        s3, sagemaker = _clients()
        s3.put_object(Bucket=BUCKET, Key=f"{CHECKPOINTS}photo-outcomes-algo-2.pkl", Body=b"from before")
        with LocalTrainingBackend(tmp_path / "jobs", train_command=stand_in).installed():
            _create(sagemaker, s3, "resumed", {"p/1.jpg": b"x"}, checkpoints=True)
            job = _wait(sagemaker, "resumed", until=lambda status: status != "InProgress")
        keys = _keys(s3, CHECKPOINTS)
        uploaded = s3.get_object(Bucket=BUCKET, Key=f"{CHECKPOINTS}photo-outcomes-algo-1.pkl")["Body"].read()
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert _found(tmp_path, "resumed") == ["photo-outcomes-algo-2.pkl"]
    assert keys == [f"{CHECKPOINTS}photo-outcomes-algo-1.pkl", f"{CHECKPOINTS}photo-outcomes-algo-2.pkl"]
    assert uploaded == b"saved as it went"


def test_a_stopped_job_uploads_what_it_flushed_on_sigterm(tmp_path, stand_in):
    with local_aws():
        s3, sagemaker = _clients()
        backend = LocalTrainingBackend(
            tmp_path / "jobs", train_command=stand_in, extra_env={"LINGER": "1"}, stop_grace_seconds=5
        )
        with backend.installed():
            _create(sagemaker, s3, "stopped", {"p/1.jpg": b"x"}, checkpoints=True)
            deadline = time.monotonic() + 30
            while "stopped" not in backend.jobs or not any(
                "running" in line for line in backend.jobs["stopped"].log
            ):
                assert time.monotonic() < deadline, "the stand-in never ran"
                time.sleep(0.05)
            sagemaker.stop_training_job(TrainingJobName="stopped")
            job = _wait(sagemaker, "stopped", until=lambda status: status == "Stopped")
        keys = _keys(s3, CHECKPOINTS)
    assert job["TrainingJobStatus"] == "Stopped"
    assert keys == [f"{CHECKPOINTS}on-sigterm.pkl", f"{CHECKPOINTS}photo-outcomes-algo-1.pkl"]


def test_without_checkpoint_config_there_is_no_folder_and_nothing_in_s3(tmp_path, stand_in):
    with local_aws():
        s3, sagemaker = _clients()
        with LocalTrainingBackend(tmp_path / "jobs", train_command=stand_in).installed():
            _create(sagemaker, s3, "on-demand", {"p/1.jpg": b"x"}, checkpoints=False)
            job = _wait(sagemaker, "on-demand", until=lambda status: status != "InProgress")
        keys = _keys(s3, "results/")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert _found(tmp_path, "on-demand") is None
    assert keys == []


def test_the_real_job_leaves_its_checkpoint_under_the_runs_prefix(tmp_path, shared_data):
    photos = {
        path.relative_to(shared_data / "faces-small").as_posix(): path.read_bytes()
        for path in sorted((shared_data / "faces-small").glob("*/*"))
        if path.is_file()
    }
    with local_aws():
        s3, sagemaker = _clients()
        with LocalTrainingBackend(tmp_path / "jobs").installed():
            _create(
                sagemaker,
                s3,
                "real",
                photos,
                checkpoints=True,
                hyperparameters={"weights": "none", "seed": "0"},
            )
            job = _wait(sagemaker, "real", until=lambda status: status != "InProgress", timeout=300)
        keys = _keys(s3, CHECKPOINTS)
        checkpoint = s3.get_object(Bucket=BUCKET, Key=f"{CHECKPOINTS}photo-outcomes-algo-1-00001.pkl")[
            "Body"
        ].read()
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert keys == [f"{CHECKPOINTS}photo-outcomes-algo-1-00001.pkl"]
    folder = tmp_path / "read-back"
    folder.mkdir()
    (folder / "photo-outcomes-algo-1-00001.pkl").write_bytes(checkpoint)
    fingerprint = load_embeddings(checkpoint)["metadata"]["embedding_fingerprint"]
    assert len(load_checkpoints(folder, fingerprint, 512).accepted) == len(photos)
