"""Copying a run's results out of the local bucket into the output folder, laid out as the bucket is
(RunLayout: the current files and latest.json at the top, the run's own files under runs/<run id>/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facetrain_lambdas.layout import LATEST_JSON, RunLayout


def copy_results(s3: Any, bucket: str, results_prefix: str, out_dir: Path) -> list[str]:
    """latest.json, the current files and the published run's own files, into out_dir at the places
    RunLayout gives them under the results prefix; the paths copied (relative to out_dir)."""
    copied: list[str] = []
    latest_key = f"{results_prefix}{LATEST_JSON}"
    try:
        data = json.loads(s3.get_object(Bucket=bucket, Key=latest_key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return copied
    from facetrain_lambdas.published import parse_latest  # lazy: the Lambdas' modules read env at import

    latest = parse_latest(data, f"s3://{bucket}/{latest_key}")
    layout = RunLayout(bucket=bucket, results_prefix=results_prefix, run_id=latest.run_id)
    keys = [
        layout.latest_key,
        *(layout.current_file_key(name) for name in latest.current_files),
        *(layout.run_file_key(name) for name in latest.run_files),
    ]
    for key in keys:
        relative = key.removeprefix(results_prefix)
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
        copied.append(relative)
    return copied
