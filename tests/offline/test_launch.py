"""`facetrain launch` (the SageMaker SDK's ModelTrainer) offline: the real command in .venv-launch talks
HTTP to moto's server, run in this process with the local training backend, so the job really runs.

The only call patched is the SDK's role check: moto has no iam:SimulatePrincipalPolicy, so the launch
runs with SAGEMAKER_VALIDATE_ROLE=false.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from facetrain_lambdas.run_record import RunRecord, parse_run_record
from facetrain_lambdas.training_job import TrainingSettings, training_job_request
from facetrain_offline import launch_checks, model_trainer
from facetrain_offline.identities import Credentials
from facetrain_offline.local_aws import local_aws
from facetrain_offline.training_backend import LocalTrainingBackend
from moto.server import ThreadedMotoServer
from support.testkit import training_job_role

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCH_VENV = REPO_ROOT / ".venv-launch"
BUCKET = "facetrain-data-launch"
REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/facetrain-sagemaker"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/facetrain:abc1234"


def _launch_venv() -> Path:
    command = LAUNCH_VENV / "bin" / "facetrain"
    if not command.exists():
        message = f"{LAUNCH_VENV} is missing (make setup makes it from requirements/launch.txt)"
        if os.environ.get("CI"):
            pytest.fail(message + " - CI must make it")
        pytest.skip(message)
    return command


@dataclass
class LocalSageMaker:
    """moto's server (what the launch command calls) and clients of the same state here."""

    endpoint: str
    s3: object
    sagemaker: object
    backend: LocalTrainingBackend
    image_uri_file: Path
    credentials: Credentials  # who launches: the local administrator (IAM is enforced)

    def launch(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.image_uri_file.parent),  # no user SageMaker/AWS config
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_access_key,
            "AWS_DEFAULT_REGION": REGION,
            "SAGEMAKER_VALIDATE_ROLE": "false",  # moto has no SimulatePrincipalPolicy (see module docstring)
        }
        command = [str(_launch_venv()), "launch", "--bucket", BUCKET, "--role", ROLE, "--region", REGION]
        return subprocess.run(
            [*command, "--image-uri-file", str(self.image_uri_file), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )

    def jobs(self) -> list[str]:
        return [j["TrainingJobName"] for j in self.sagemaker.list_training_jobs()["TrainingJobSummaries"]]


@pytest.fixture
def local_sagemaker(tmp_path: Path) -> Iterator[LocalSageMaker]:
    backend = LocalTrainingBackend(tmp_path / "jobs", train_command=[sys.executable, "-m", "facetrain.train"])
    with local_aws(REGION) as account, backend.installed():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            s3 = boto3.client("s3", region_name=REGION)
            s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
            training_job_role(ROLE.rsplit("/", 1)[-1], BUCKET, REGION)
            uri_file = tmp_path / "image_uri.txt"
            uri_file.write_text(IMAGE + "\n")
            yield LocalSageMaker(
                f"http://{host}:{port}",
                s3,
                boto3.client("sagemaker", region_name=REGION),
                backend,
                uri_file,
                account.admin,
            )
            backend.wait_all(timeout=120)
        finally:
            server.stop()


def _upload(s3, shared_data: Path, people: int = 2) -> int:
    count = 0
    for person in sorted((shared_data / "faces-dev").iterdir())[:people]:
        for photo in sorted(person.iterdir()):
            s3.put_object(Bucket=BUCKET, Key=f"face_imgs/{person.name}/{photo.name}", Body=photo.read_bytes())
            count += 1
    return count


def _record(s3, run_id: str) -> RunRecord:
    key = f"results/runs/{run_id}/run.json"
    return parse_run_record(json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()), key)


def test_launch_runs_the_start_lambdas_job_and_streams_its_log(local_sagemaker, shared_data) -> None:
    photos = _upload(local_sagemaker.s3, shared_data)
    done = local_sagemaker.launch("--run-id", "sdk-1", "-p", "weights=none", "-p", "min_face_size=40")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    [name] = local_sagemaker.jobs()
    assert name.startswith("facetrain-sdk-1-") and len(name) <= 63  # the SDK's <base>-<timestamp>
    assert f"training job {name}: Completed" in done.stdout
    # the SDK's own log streaming printed the container's lines (from CloudWatch Logs)
    assert f"{name}/algo-1-" in done.stderr and "NOT FOR PRODUCTION" in done.stderr, output

    # the same request the start Lambda builds for this run record
    record = _record(local_sagemaker.s3, "sdk-1")
    assert record.dataset.images == photos and record.sagemaker_hyperparameters()["weights"] == "none"
    expected = training_job_request(record, TrainingSettings(training_image=IMAGE, role_arn=ROLE))
    job = local_sagemaker.sagemaker.describe_training_job(TrainingJobName=name)
    for key in (
        "HyperParameters",
        "InputDataConfig",
        "ResourceConfig",
        "StoppingCondition",
        "EnableNetworkIsolation",
        "EnableInterContainerTrafficEncryption",
        "RoleArn",
    ):
        assert job[key] == expected[key], key
    assert job["HyperParameters"]["facetrain_run_id"] == "sdk-1"  # for the job's metrics.json and report
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["OutputDataConfig"]["S3OutputPath"] == expected["OutputDataConfig"]["S3OutputPath"]
    tags = local_sagemaker.sagemaker.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {(t["Key"], t["Value"]) for t in expected["Tags"]} <= {(t["Key"], t["Value"]) for t in tags}

    # its model.tar.gz at the output path, with the enrollment
    key = f"results/runs/sdk-1/training/{name}/output/model.tar.gz"
    archive = local_sagemaker.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert "final_mean_embeddings.csv" in tar.getnames()


def test_launch_no_wait_returns_once_the_job_runs(local_sagemaker, shared_data) -> None:
    _upload(local_sagemaker.s3, shared_data, people=1)
    done = local_sagemaker.launch("--run-id", "sdk-2", "-p", "weights=none", "--no-wait")
    assert done.returncode == 0, done.stdout + done.stderr
    [name] = local_sagemaker.jobs()
    assert f"training job {name}: InProgress" in done.stdout
    deadline = time.monotonic() + 300
    while local_sagemaker.sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == (
        "InProgress"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert local_sagemaker.sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == (
        "Completed"
    )


def test_bad_input_fails_before_any_job_starts(local_sagemaker, shared_data, tmp_path: Path) -> None:
    # a bucket without photos
    empty = local_sagemaker.launch("--run-id", "sdk-3", "-p", "weights=none")
    assert empty.returncode == 2 and "face_imgs/" in empty.stderr, empty.stderr
    assert "no training job was started" in empty.stderr
    _upload(local_sagemaker.s3, shared_data, people=1)
    # an unknown setting: named, with the valid ones
    unknown = local_sagemaker.launch("--run-id", "sdk-4", "-p", "min_face_sise=40")
    assert unknown.returncode == 2 and "min_face_sise" in unknown.stderr and "min_face_size" in unknown.stderr
    # no image URI file (make image writes it)
    local_sagemaker.image_uri_file.unlink()
    missing = local_sagemaker.launch("--run-id", "sdk-5")
    assert (
        missing.returncode == 2
        and "image_uri.txt not found" in missing.stderr
        and "make image" in (missing.stderr)
    )
    assert local_sagemaker.jobs() == []
    assert "Traceback" not in empty.stderr + unknown.stderr + missing.stderr


def test_read_image_uri_names_the_file_and_the_fix(tmp_path: Path) -> None:
    uri_file = tmp_path / "image_uri.txt"
    with pytest.raises(launch_checks.LaunchError, match=r"image_uri.txt not found: .*make image"):
        launch_checks.read_image_uri(uri_file)
    uri_file.write_text("facetrain:latest\n")
    with pytest.raises(launch_checks.LaunchError, match="does not hold an ECR image URI"):
        launch_checks.read_image_uri(uri_file)
    uri_file.write_text(IMAGE + "\n")
    assert launch_checks.read_image_uri(uri_file) == IMAGE


def test_base_job_name_leaves_room_for_the_sdks_timestamp() -> None:
    assert model_trainer.base_job_name("facetrain-sdk-1") == "facetrain-sdk-1"
    long = "facetrain-" + "x" * 40 + "-" + "y" * 12
    assert len(model_trainer.base_job_name(long)) + len("-20261203174501") <= 63
    assert not model_trainer.base_job_name("facetrain-" + "a" * 37 + "-b").endswith("-")
