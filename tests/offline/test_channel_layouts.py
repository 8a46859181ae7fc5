"""The local training backend lays out ManifestFile channels either way SageMaker may (each entry at its
suffix, or under its full S3 key), and the job finds the photos in both (facetrain.channel_layout)."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import boto3
import pytest
from facetrain.contract.enrollment_csv import parse_csv
from facetrain.contract.names import IMAGES_PREFIX_HYPERPARAMETER
from facetrain_offline.execution_status_events import ExecutionStatusEvents
from facetrain_offline.local_aws import DEFAULT_TEMPLATE, local_aws
from facetrain_offline.parameter_checks import OFFLINE_SHORT_WAITS
from facetrain_offline.stack import deploy
from facetrain_offline.training_backend import LocalTrainingBackend
from support.testkit import FakeSageMaker, training_job_role
from support.workflow import REGION, STACK_NAME, TEST_ENVIRONMENT, TEST_PARAMETERS, WorkflowStack

BUCKET = "photos-bkt"
JOB_ROLE = "training-job"
JOB_ROLE_ARN = f"arn:aws:iam::123456789012:role/{JOB_ROLE}"
ENTRIES = [f"p{i}/{j}.jpg" for i in range(3) for j in range(2)]

# Stand-in for `train` (no torch): where the photos landed, and what the job's own listing makes of them.
LISTING_TRAIN = textwrap.dedent(
    """
    import json, os, pathlib
    from facetrain.channel_layout import manifest_prefix
    from facetrain.photos import list_channel
    from facetrain.sagemaker_env import load_environment
    env = load_environment()
    channel = env.channels["face_imgs"]
    listing = list_channel(channel, manifest_prefix(env.hyperparameters))
    record = {
        "files": sorted(p.relative_to(channel).as_posix() for p in channel.rglob("*") if p.is_file()),
        "keys": [photo.key for photo in listing.photos],
    }
    (env.model_dir / f"{env.current_host}.json").write_text(json.dumps(record))
    """
)


def _sharded_job(tmp_path: Path, layout: str) -> list[dict]:
    """A two-host ShardedByS3Key job on a ManifestFile channel; each host's record."""
    script = tmp_path / "listing_train.py"
    script.write_text(LISTING_TRAIN)
    with local_aws():
        training_job_role(JOB_ROLE, BUCKET, "eu-west-1")
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        for entry in ENTRIES:
            s3.put_object(Bucket=BUCKET, Key=f"face_imgs/{entry}", Body=b"x")
        s3.put_object(
            Bucket=BUCKET, Key="m.json", Body=json.dumps([{"prefix": f"s3://{BUCKET}/face_imgs/"}, *ENTRIES])
        )
        sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
        backend = LocalTrainingBackend(
            tmp_path / "jobs", train_command=[sys.executable, str(script)], channel_layout=layout
        )
        with backend.installed():
            sagemaker.create_training_job(
                TrainingJobName="two-hosts",
                AlgorithmSpecification={"TrainingImage": "local", "TrainingInputMode": "File"},
                RoleArn=JOB_ROLE_ARN,
                HyperParameters={IMAGES_PREFIX_HYPERPARAMETER: "face_imgs/"},
                InputDataConfig=[
                    {
                        "ChannelName": "face_imgs",
                        "DataSource": {
                            "S3DataSource": {
                                "S3DataType": "ManifestFile",
                                "S3Uri": f"s3://{BUCKET}/m.json",
                                "S3DataDistributionType": "ShardedByS3Key",
                            }
                        },
                    }
                ],
                OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/out"},
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
                StoppingCondition={"MaxRuntimeInSeconds": 120},
            )
            deadline = time.monotonic() + 60
            while (job := sagemaker.describe_training_job(TrainingJobName="two-hosts"))[
                "TrainingJobStatus"
            ] == "InProgress" and time.monotonic() < deadline:
                time.sleep(0.1)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        archive = s3.get_object(Bucket=BUCKET, Key="out/two-hosts/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return [json.loads(tar.extractfile(f"algo-{i}.json").read()) for i in (1, 2)]


@pytest.mark.parametrize(("layout", "written_under"), [("suffix", ""), ("full-key", "face_imgs/")])
def test_each_host_finds_its_shard_with_the_same_keys_in_either_layout(
    tmp_path: Path, layout: str, written_under: str
) -> None:
    hosts = _sharded_job(tmp_path, layout)
    for host in hosts:
        assert host["files"] == [written_under + key for key in host["keys"]]  # laid out as asked
        assert len(host["keys"]) == 3  # ShardedByS3Key: half each
    assert sorted(key for host in hosts for key in host["keys"]) == ENTRIES  # keys never carry the prefix


def test_an_unknown_layout_is_refused_when_the_backend_is_made(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="channel_layout 'full': give one of suffix, full-key"):
        LocalTrainingBackend(tmp_path, channel_layout="full")  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_full_key_channel_publishes_one_row_per_person(shared_data: Path, tmp_path: Path) -> None:
    """The whole workflow (validate, start, the real job, publish) with SageMaker writing the photos under
    their full key: the published enrollment has the people, not one identity named after the prefix. The
    config files too (config/constants.py takes effect: with one photo per person the threshold cannot be
    calibrated, so the published one is its accept_threshold), and a second, forced run reuses every
    embedding from the published run's saved_embeddings.pkl, also written under its full key."""
    people = sorted(p for p in (shared_data / "faces-small").iterdir() if p.is_dir())
    with local_aws(REGION):
        local = deploy(
            DEFAULT_TEMPLATE,
            TEST_PARAMETERS,
            stack_name=STACK_NAME,
            region=REGION,
            extra_environment=TEST_ENVIRONMENT,
            short_waits=OFFLINE_SHORT_WAITS,
        )
        backend = LocalTrainingBackend(tmp_path / "jobs", channel_layout="full-key")
        with local.lambdas.installed(), backend.installed(), ExecutionStatusEvents(local).running():
            stack = WorkflowStack(local, FakeSageMaker())  # FakeSageMaker stays uninstalled
            for person in people:
                for photo in sorted(person.iterdir()):
                    stack.s3.upload_file(str(photo), stack.bucket, f"face_imgs/{person.name}/{photo.name}")
            stack.s3.put_object(
                Bucket=stack.bucket, Key="config/constants.py", Body=b"ACCEPT_THRESHOLD = 0.77\n"
            )
            result = stack.run(
                {"run_id": "full-key-1", "hyperparameters": {"weights": "none", "seed": 0}},
                name="full-key-1",
                timeout=300,
            )
            data = tmp_path / "jobs" / "facetrain-full-key-1" / "algo-1" / "input" / "data"
            laid_out = {
                name: sorted(p.name for p in (data / name).iterdir()) for name in ("face_imgs", "cfg")
            }
            csv = stack.read("results/final_mean_embeddings.csv").decode()
            first = json.loads(stack.read("results/latest.json"))
            again = stack.run(
                {"run_id": "full-key-2", "force": True, "hyperparameters": {"weights": "none", "seed": 0}},
                name="full-key-2",
                timeout=300,
            )
            previous = tmp_path / "jobs" / "facetrain-full-key-2" / "algo-1" / "input" / "data" / "previous"
            previous_laid_out = sorted(p.relative_to(previous).as_posix() for p in previous.rglob("*.pkl"))
            metrics = json.loads(stack.read("results/runs/full-key-2/metrics.json"))
    assert result["status"] == "SUCCEEDED", backend.jobs["facetrain-full-key-1"].log[-20:]
    # SageMaker's full-key layout, not <person>/ folders or constants.py at the top
    assert laid_out == {"face_imgs": ["face_imgs"], "cfg": ["config"]}
    assert sorted(identity for identity, _, _ in parse_csv(csv, 512)) == [p.name for p in people]
    assert first["accept_threshold"] == 0.77  # config/constants.py read, not the default 1.1
    assert again["status"] == "SUCCEEDED", backend.jobs["facetrain-full-key-2"].log[-20:]
    assert previous_laid_out == ["results/runs/full-key-1/saved_embeddings.pkl"]
    assert (metrics["embeddings_computed"], metrics["embeddings_reused"]) == (0, len(people))
