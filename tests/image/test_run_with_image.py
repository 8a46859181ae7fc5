"""`facetrain run --image`: the offline workflow with its training job inside the image, one podman
container per host (facetrain_offline.host_containers), and StopTrainingJob reaching `train` in it."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import boto3
from facetrain_offline.host_containers import ContainerEngine, job_resources
from facetrain_offline.local_aws import local_aws
from facetrain_offline.training_backend import LocalTrainingBackend
from support.podman_image import Image
from support.testkit import training_job_role

FACETRAIN = Path(sys.executable).with_name("facetrain")


def _left_over(image: Image, job_name: str, hosts: int) -> list[str]:
    """The job's containers and network (host_containers.job_resources) that are still there."""
    network, names = job_resources(job_name, hosts)
    containers = image.podman_cmd("ps", "--all", "--format", "{{.Names}}").stdout.split()
    networks = image.podman_cmd("network", "ls", "--format", "{{.Name}}").stdout.split()
    return [name for name in [*names, network] if name in containers or name in networks]


def test_facetrain_run_with_the_image_publishes_from_two_host_containers(image, shared_data, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "CONTAINERS_CONF": image.env["CONTAINERS_CONF"]}
    run = subprocess.run(
        [
            FACETRAIN,
            "run",
            "--image",
            image.name,
            shared_data / "faces-dev",
            "--out",
            out,
            "--instance-count",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((out / "run.json").read_text())
    assert summary["status"] == "SUCCEEDED"
    published = (out / "final_mean_embeddings.csv").read_text().splitlines()
    assert len(published) == 1 + 4  # a header and the 4 people of faces-dev
    # The hosts met at the first host's name, which only the job's podman network resolves (processes
    # meet on loopback, 127.0.0.1): the job ran in containers.
    met = "[algo-2]" in run.stdout and "meeting the other hosts at algo-1:7777" in run.stdout
    assert met, run.stdout[-3000:]
    assert "Traceback" not in run.stdout + run.stderr
    job_name = re.search(r"^job +(\S+): InProgress", run.stdout, re.MULTILINE)
    assert job_name, run.stdout[-3000:]
    assert _left_over(image, job_name[1], hosts=2) == []  # no container or network outlives the job


def test_an_image_podman_does_not_have_is_refused_before_anything_runs(image, shared_data, tmp_path):
    env = {**os.environ, "CONTAINERS_CONF": image.env["CONTAINERS_CONF"]}
    run = subprocess.run(
        [
            FACETRAIN,
            "run",
            "--image",
            "localhost/facetrain:no-such-tag",
            shared_data / "faces-dev",
            "--out",
            tmp_path,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "localhost/facetrain:no-such-tag is not in podman's local store" in run.stderr
    assert "make image-local" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "run.json").exists()


JOB_ROLE_ARN = "arn:aws:iam::123456789012:role/image-job"


def test_stop_training_job_sigterms_train_inside_its_container(image, shared_data, tmp_path):
    with local_aws():
        training_job_role("image-job", "photos-bkt", "eu-west-1")
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket="photos-bkt", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        for photo in sorted((shared_data / "faces-dev").glob("*/*")):
            s3.upload_file(str(photo), "photos-bkt", f"face_imgs/{photo.parent.name}/{photo.name}")
        sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
        backend = LocalTrainingBackend(tmp_path / "jobs", containers=ContainerEngine(image.name))
        with backend.installed():
            sagemaker.create_training_job(
                TrainingJobName="stopped-in-image",
                AlgorithmSpecification={"TrainingImage": image.name, "TrainingInputMode": "File"},
                RoleArn=JOB_ROLE_ARN,
                HyperParameters={"embedder": "dlib-resnet"},
                InputDataConfig=[
                    {
                        "ChannelName": "face_imgs",
                        "DataSource": {
                            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://photos-bkt/face_imgs/"}
                        },
                    }
                ],
                OutputDataConfig={"S3OutputPath": "s3://photos-bkt/out"},
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
                StoppingCondition={"MaxRuntimeInSeconds": 600},
            )
            log = backend.jobs["stopped-in-image"].log
            deadline = time.monotonic() + 300
            while not any("photos to examine" in line for line in log) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert any("photos to examine" in line for line in log), log[-20:]
            sagemaker.stop_training_job(TrainingJobName="stopped-in-image")
            backend.wait_all(timeout=120)
            job = sagemaker.describe_training_job(TrainingJobName="stopped-in-image")
            listed = s3.list_objects_v2(Bucket="photos-bkt", Prefix="out/").get("Contents", [])
            keys = [item["Key"] for item in listed]
            archives = {key: s3.get_object(Bucket="photos-bkt", Key=key)["Body"].read() for key in keys}
    assert job["TrainingJobStatus"] == "Stopped", job.get("FailureReason")
    assert backend.jobs["stopped-in-image"].exit_code == 143  # train's own SIGTERM exit, not a SIGKILL
    # SageMaker uploads a stopped job's model/ too (the SIGTERM grace period is there to save it), and
    # train leaves nothing there when stopped: the archive holds no partial outputs
    assert list(archives) == ["out/stopped-in-image/output/model.tar.gz"]
    with tarfile.open(fileobj=io.BytesIO(archives["out/stopped-in-image/output/model.tar.gz"])) as archive:
        assert [member.name for member in archive.getmembers() if member.isfile()] == []
    model_dir = tmp_path / "jobs" / "stopped-in-image" / "algo-1" / "model"
    assert not any(model_dir.iterdir())
    assert _left_over(image, "stopped-in-image", hosts=1) == []
