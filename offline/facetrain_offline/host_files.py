"""Each local host's /opt/ml as SageMaker fills and empties it, through an S3 client.

In: `lay_out_host` writes one host's SAGEMAKER_BASE_DIR tree (string hyperparameters,
inputdataconfig.json, resourceconfig.json) and downloads every channel per its S3 data source
(S3Prefix or ManifestFile; `ShardedByS3Key` gives each host every n-th object of the sorted list).
Out: `upload_model` merges every host's `model/` into one model.tar.gz at the job's S3ModelArtifacts;
`failure_reason` is SageMaker's FailureReason for a host that exited non-zero (its `output/failure`).
Checkpoints (CheckpointConfig, Spot): `download_checkpoints` before the container starts,
`upload_checkpoints` once it has exited.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlparse

from facetrain.sagemaker_env import LOCAL_INSTANCE_TYPE, OptMl, channel_config, write_tree
from moto.sagemaker.models import FakeTrainingJob

FAILURE_REASON_LIMIT = 1024
# Where a ManifestFile channel's objects land (facetrain.channel_layout): "suffix", each at its key relative
# to the manifest's prefix; "full-key", each under its whole S3 key, as a report from a real job shows.
ChannelLayout = Literal["suffix", "full-key"]
CHANNEL_LAYOUTS: tuple[ChannelLayout, ...] = ("suffix", "full-key")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key/prefix') of an s3:// URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri}")
    return parsed.netloc, parsed.path.lstrip("/")


def lay_out_host(
    job: FakeTrainingJob,
    base: Path,
    s3: Any,
    hosts: list[str],
    host: str,
    channel_layout: ChannelLayout = "suffix",
) -> Path:
    """Create one host's /opt/ml as SageMaker does, downloading every channel (its shard of sharded
    ones: `ShardedByS3Key` gives each host every n-th object of the sorted list)."""
    channels: dict[str, dict[str, str]] = {}
    for channel in job.input_data_config or []:
        distribution = channel["DataSource"]["S3DataSource"].get("S3DataDistributionType", "FullyReplicated")
        channels[channel["ChannelName"]] = channel_config(
            channel.get("InputMode", "File"), distribution, channel.get("RecordWrapperType", "None")
        )
    # The instance type is this machine's truth, as SageMaker local mode writes it ("local"), not the
    # job's ResourceConfig (the template's default is ml.g4dn.xlarge): the job runs here, on whatever this
    # machine has, and a GPU type would make it refuse to run where no GPU was ever paid for. The refusal
    # of an unusable GPU on a GPU type is tested on a tree that names one (tests/container/test_gpu_check.py).
    tree = write_tree(base, job.hyper_parameters or {}, channels, host, hosts, LOCAL_INSTANCE_TYPE)
    for channel in job.input_data_config or []:
        source = channel["DataSource"]["S3DataSource"]
        sharded = source.get("S3DataDistributionType") == "ShardedByS3Key"
        shard = (hosts.index(host), len(hosts)) if sharded else (0, 1)
        download_channel(s3, source, tree.channel(channel["ChannelName"]), shard, channel_layout)
    return base


def download_channel(
    s3: Any,
    source: dict[str, Any],
    target: Path,
    shard: tuple[int, int] = (0, 1),
    channel_layout: ChannelLayout = "suffix",
) -> None:
    """Download an S3Prefix or ManifestFile data source into a channel folder, keys made relative (a
    ManifestFile's under their full key instead with channel_layout "full-key"); `shard` (index, count):
    only every count-th object of the sorted list, from index."""
    if channel_layout not in CHANNEL_LAYOUTS:
        raise ValueError(f"channel_layout {channel_layout!r}: give one of {', '.join(CHANNEL_LAYOUTS)}")
    data_type = source.get("S3DataType", "S3Prefix")
    bucket, key = split_s3_uri(source["S3Uri"])
    if data_type == "ManifestFile":
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        prefix_bucket, prefix = split_s3_uri(manifest[0]["prefix"])
        full_key = channel_layout == "full-key"
        pairs = [
            (f"{prefix}{relative}", f"{prefix if full_key else ''}{relative}") for relative in manifest[1:]
        ]
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


def upload_model(job: FakeTrainingJob, bases: list[Path], s3: Any) -> None:
    """One model.tar.gz of every host's model/, merged as SageMaker merges them (the first host's file
    of a name wins); uploaded once the containers have exited, whatever the outcome (training_backend)."""
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


def failure_reason(base: Path, exit_code: int, host: str | None = None) -> str:
    """SageMaker's FailureReason: output/failure of the (named) host, or its exit code."""
    failure = OptMl(base).failure_file
    text = failure.read_text(encoding="utf-8", errors="replace").strip() if failure.is_file() else ""
    text = text or f"the container exited with code {exit_code}"
    return f"AlgorithmError: {host + ': ' if host else ''}{text}"[:FAILURE_REASON_LIMIT]


SAGEMAKER_ROOT = PurePosixPath("/opt/ml")  # each host's base stands for it


def checkpoint_location(job: FakeTrainingJob, base: Path) -> tuple[str, str, Path] | None:
    """(bucket, key prefix ending in '/', host folder) of the job's CheckpointConfig; None without one.
    LocalPath (default /opt/ml/checkpoints) must lie under /opt/ml, which is all a host's base holds."""
    config = getattr(job, "checkpoint_config", None) or {}
    if not config.get("S3Uri"):
        return None
    local = PurePosixPath(config.get("LocalPath") or "/opt/ml/checkpoints")
    if not local.is_relative_to(SAGEMAKER_ROOT):
        raise ValueError(
            f"CheckpointConfig LocalPath {local} is outside /opt/ml: the local backend maps only /opt/ml"
        )
    bucket, prefix = split_s3_uri(config["S3Uri"])
    prefix = prefix if not prefix or prefix.endswith("/") else f"{prefix}/"
    return bucket, prefix, base / local.relative_to(SAGEMAKER_ROOT)


def download_checkpoints(job: FakeTrainingJob, base: Path, s3: Any) -> None:
    """As SageMaker does before the container starts, for a job with a CheckpointConfig: create LocalPath
    and download every object under S3Uri into it (what an interrupted Spot job had saved)."""
    location = checkpoint_location(job, base)
    if location is None:
        return
    bucket, prefix, folder = location
    folder.mkdir(parents=True, exist_ok=True)
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            destination = (folder / item["Key"][len(prefix) :]).resolve()
            if item["Key"].endswith("/") or not destination.is_relative_to(folder.resolve()):
                continue  # a folder marker, or a key that would land outside the folder
            destination.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(destination))


def upload_checkpoints(job: FakeTrainingJob, base: Path, s3: Any) -> int:
    """Upload the files of LocalPath to S3Uri (same relative keys); returns how many. SageMaker syncs the
    folder continuously while the job runs; the local backend uploads once, when the container has exited
    (done, failed or stopped): a local approximation (were `facetrain run` itself killed, the files would
    stay in the job's work folder, not in S3). Nothing is deleted in S3."""
    location = checkpoint_location(job, base)
    if location is None or not location[2].is_dir():
        return 0
    bucket, prefix, folder = location
    files = [path for path in sorted(folder.rglob("*")) if path.is_file() and not path.is_symlink()]
    for path in files:
        s3.upload_file(str(path), bucket, f"{prefix}{path.relative_to(folder).as_posix()}")
    return len(files)
