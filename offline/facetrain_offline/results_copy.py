"""The published results in the local bucket: which run they are, whether latest.json names only files the
bucket holds, and copying them out into the output folder, laid out as the bucket is (RunLayout: the
current files and latest.json at the top, the run's own files under runs/<run id>/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facetrain_lambdas.layout import LATEST_JSON, RunLayout

if TYPE_CHECKING:
    from facetrain_lambdas.published import LatestRecord


def read_latest(s3: Any, bucket: str, results_prefix: str) -> LatestRecord | None:
    """The published run's latest.json, or None when nothing is published."""
    latest_key = f"{results_prefix}{LATEST_JSON}"
    try:
        data = json.loads(s3.get_object(Bucket=bucket, Key=latest_key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None
    from facetrain_lambdas.published import parse_latest  # lazy: the Lambdas' modules read env at import

    return parse_latest(data, f"s3://{bucket}/{latest_key}")


def published_keys(latest: LatestRecord, bucket: str, results_prefix: str) -> list[str]:
    """The keys latest.json names (the current files, the run's own files), latest.json itself last."""
    layout = RunLayout(bucket=bucket, results_prefix=results_prefix, run_id=latest.run_id)
    return [
        *(layout.current_file_key(name) for name in latest.current_files),
        *(layout.run_file_key(name) for name in latest.run_files),
        layout.latest_key,
    ]


def missing_published_files(s3: Any, bucket: str, results_prefix: str) -> list[str]:
    """The keys latest.json names that the bucket does not hold ([] when nothing is published)."""
    latest = read_latest(s3, bucket, results_prefix)
    if latest is None:
        return []
    held = {
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=results_prefix)
        for obj in page.get("Contents", [])
    }
    return [key for key in published_keys(latest, bucket, results_prefix) if key not in held]


def copy_results(s3: Any, bucket: str, results_prefix: str, out_dir: Path) -> list[str]:
    """The current files, the published run's own files and latest.json (last: an interrupted copy never
    leaves a latest.json naming files that are not there), into out_dir at the places RunLayout gives them
    under the results prefix; the paths copied (relative to out_dir)."""
    latest = read_latest(s3, bucket, results_prefix)
    if latest is None:
        return []
    copied: list[str] = []
    for key in published_keys(latest, bucket, results_prefix):
        relative = key.removeprefix(results_prefix)
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
        copied.append(relative)
    return copied
