"""Each local host's /opt/ml as SageMaker fills and empties it, through an S3 client.

In: `lay_out_host` writes one host's SAGEMAKER_BASE_DIR tree (string hyperparameters,
inputdataconfig.json, resourceconfig.json) and downloads every channel per its S3 data source
(S3Prefix or ManifestFile; `ShardedByS3Key` gives each host every n-th object of the sorted list).
Out: `upload_model` merges every host's `model/` into one model.tar.gz at the job's S3ModelArtifacts;
`failure_reason` is SageMaker's FailureReason for a host that exited non-zero (its `output/failure`).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from facetrain.sagemaker_env import OptMl, channel_config, write_tree
from moto.sagemaker.models import FakeTrainingJob

FAILURE_REASON_LIMIT = 1024


def split_s3_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key/prefix') of an s3:// URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri}")
    return parsed.netloc, parsed.path.lstrip("/")


def lay_out_host(job: FakeTrainingJob, base: Path, s3: Any, hosts: list[str], host: str) -> Path:
    """Create one host's /opt/ml as SageMaker does, downloading every channel (its shard of sharded
    ones: `ShardedByS3Key` gives each host every n-th object of the sorted list)."""
    channels: dict[str, dict[str, str]] = {}
    for channel in job.input_data_config or []:
        distribution = channel["DataSource"]["S3DataSource"].get("S3DataDistributionType", "FullyReplicated")
        channels[channel["ChannelName"]] = channel_config(
            channel.get("InputMode", "File"), distribution, channel.get("RecordWrapperType", "None")
        )
    tree = write_tree(base, job.hyper_parameters or {}, channels, host, hosts)
    for channel in job.input_data_config or []:
        source = channel["DataSource"]["S3DataSource"]
        sharded = source.get("S3DataDistributionType") == "ShardedByS3Key"
        shard = (hosts.index(host), len(hosts)) if sharded else (0, 1)
        download_channel(s3, source, tree.channel(channel["ChannelName"]), shard)
    return base


def download_channel(s3: Any, source: dict[str, Any], target: Path, shard: tuple[int, int] = (0, 1)) -> None:
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


def upload_model(job: FakeTrainingJob, bases: list[Path], s3: Any) -> None:
    """One model.tar.gz of every host's model/, merged as SageMaker merges them (the first host's file
    of a name wins)."""
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
