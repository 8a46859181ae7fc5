"""What `facetrain launch` checks and builds before any job starts, with the start Lambda's own code.

`prepare` checks the bucket with validate's functions (`resolve_request`, `validate_run`): the settings of
the config prefix and `-p` values (an unknown one is refused), the photos under the images prefix (none is
refused); they write the run record and the photo/config manifests under `<results prefix>runs/<run id>/`,
as an execution does, and nothing else. It then builds the CreateTrainingJob request with
`training_job_request` (facetrain_lambdas.training_job): channel names, hyperparameter strings, stopping
condition, network isolation, tags, output path. `read_image_uri` reads the image URI `make image` wrote.
Every problem is raised as one LaunchError naming them all, each with what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_IMAGE_URI_FILE = REPO_ROOT / "container" / "image_uri.txt"
# ECR image URIs as build_and_push.sh writes them (account.dkr.ecr.region.amazonaws.com[.cn]/name:tag).
_IMAGE_URI = re.compile(
    r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$"
)


class LaunchError(Exception):
    """The launch cannot start: every reason, each with what to do."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class LaunchOptions:
    """One launch: where the data is, the job's shape, and whether to wait for it."""

    bucket: str
    role_arn: str
    run_id: str = field(default_factory=lambda: "launch-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    hyperparameters: dict[str, str] = field(default_factory=dict)
    images_prefix: str | None = None
    config_prefix: str | None = None
    results_prefix: str | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    image_uri_file: Path = DEFAULT_IMAGE_URI_FILE
    volume_size_gb: int = 50
    max_runtime_seconds: int = 21600
    use_spot: bool = False
    force: bool = False
    region: str | None = None


def read_image_uri(path: Path) -> str:
    """The training image URI that `make image` (container/build_and_push.sh) wrote to `path`."""
    try:
        uri = path.read_text().strip()
    except FileNotFoundError:
        raise LaunchError(
            [f"{path} not found: build and push the training image (make image), or pass --image-uri-file"]
        ) from None
    if not _IMAGE_URI.fullmatch(uri):
        raise LaunchError(
            [f"{path} does not hold an ECR image URI (got {uri[:80]!r}): run make image, which writes it"]
        )
    return uri


def prepare(s3: Any, options: LaunchOptions, image_uri: str) -> tuple[Any, dict[str, Any]]:
    """Validate the bucket as an execution does and build the start Lambda's request: (RunRecord, request).
    Raises LaunchError naming every problem (nothing is started)."""
    from facetrain_lambdas.errors import InvalidInput
    from facetrain_lambdas.run_record import load_run_record
    from facetrain_lambdas.run_request import StackDefaults, resolve_request
    from facetrain_lambdas.training_job import TrainingSettings, training_job_request
    from facetrain_lambdas.validate import validate_run

    console: dict[str, Any] = {"run_id": options.run_id, "hyperparameters": dict(options.hyperparameters)}
    for name in ("images_prefix", "config_prefix", "results_prefix", "instance_type", "instance_count"):
        if getattr(options, name) is not None:
            console[name] = getattr(options, name)
    if options.force:
        console["force"] = True
    defaults = StackDefaults(bucket=options.bucket)
    try:
        request = resolve_request(console, execution=options.run_id, defaults=defaults)
        pointer = validate_run(s3, request)
        record = load_run_record(s3, pointer)
        training = TrainingSettings(
            training_image=image_uri,
            role_arn=options.role_arn,
            volume_size_gb=options.volume_size_gb,
            max_runtime_seconds=options.max_runtime_seconds,
            use_spot=options.use_spot,
        )
        return record, training_job_request(record, training)
    except InvalidInput as exc:
        raise LaunchError(list(exc.problems)) from None
