"""`facetrain launch`: start the training job directly with the SageMaker Python SDK (v3 `ModelTrainer`),
without the state machine.

The job is the start Lambda's, built by the same code:
1. the bucket is checked by validate's own functions (`resolve_request`, `validate_run`): the settings of
   the config prefix and `-p` values (an unknown one is refused), the photos under the images prefix (none
   is refused); they write the run record and the photo/config manifests under
   `<results prefix>runs/<run id>/`, as an execution does, and nothing else;
2. `training_job_request` (facetrain_lambdas.training_job) makes the CreateTrainingJob request: channel
   names, hyperparameter strings, stopping condition, network isolation, tags, output path;
3. `trainer_arguments` hands that request to ModelTrainer field by field; a field it does not know fails
   the launch instead of being dropped. The SDK names the job `<base>-<timestamp>` (ModelTrainer takes
   no fixed name): the base is the start Lambda's name, cut to leave room for the timestamp.
Every problem is reported before any job starts. The SDK's telemetry is off.

The SDK lives in its own venv (`.venv-launch`, `requirements/launch.txt`; see pyproject.toml's `launch`
extra for why); `make setup` makes it.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
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
SDK_TIMESTAMP = len("-YYYYmmddHHMMSS")  # what ModelTrainer appends to base_job_name (-%Y%m%d%H%M%S)
MAX_JOB_NAME = 63
EXIT_BAD_INPUT = 2
# Outside Lambda: no X-Ray segment to trace into, and validate's INFO lines are the Lambda's, not ours.
POWERTOOLS_ENV = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"}
NO_TELEMETRY = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


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
    from facetrain_lambdas.run_input import StackDefaults, resolve_request
    from facetrain_lambdas.run_record import load_run_record
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
        pointer = validate_run(s3, request, defaults.max_photo_bytes)
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


def base_job_name(name: str) -> str:
    """The start Lambda's job name, cut so that the SDK's `-<timestamp>` keeps it within 63 characters."""
    return name[: MAX_JOB_NAME - SDK_TIMESTAMP].rstrip("-")


def trainer_arguments(request: Mapping[str, Any]) -> dict[str, Any]:
    """ModelTrainer's arguments for a CreateTrainingJob request, every field carried over."""
    from sagemaker.core.training.configs import (
        Channel,
        CheckpointConfig,
        Compute,
        DataSource,
        Networking,
        OutputDataConfig,
        S3DataSource,
        StoppingCondition,
        Tag,
    )

    known = {
        "TrainingJobName",
        "AlgorithmSpecification",
        "RoleArn",
        "HyperParameters",
        "InputDataConfig",
        "OutputDataConfig",
        "ResourceConfig",
        "StoppingCondition",
        "EnableNetworkIsolation",
        "EnableInterContainerTrafficEncryption",
        "Tags",
        "EnableManagedSpotTraining",
        "CheckpointConfig",
    }
    unknown = sorted(set(request) - known)
    if unknown:
        raise LaunchError(
            [f"the training job request has {', '.join(unknown)}, which launch does not pass on"]
        )
    algorithm, resources, stopping = (
        request["AlgorithmSpecification"],
        request["ResourceConfig"],
        request["StoppingCondition"],
    )
    channels = [
        Channel(
            channel_name=channel["ChannelName"],
            input_mode=channel["InputMode"],
            data_source=DataSource(
                s3_data_source=S3DataSource(
                    s3_data_type=channel["DataSource"]["S3DataSource"]["S3DataType"],
                    s3_uri=channel["DataSource"]["S3DataSource"]["S3Uri"],
                    s3_data_distribution_type=channel["DataSource"]["S3DataSource"]["S3DataDistributionType"],
                )
            ),
        )
        for channel in request["InputDataConfig"]
    ]
    arguments: dict[str, Any] = {
        "base_job_name": base_job_name(request["TrainingJobName"]),
        "training_image": algorithm["TrainingImage"],
        "training_input_mode": algorithm["TrainingInputMode"],
        "role": request["RoleArn"],
        "hyperparameters": dict(request["HyperParameters"]),
        "input_data_config": channels,
        "output_data_config": OutputDataConfig(s3_output_path=request["OutputDataConfig"]["S3OutputPath"]),
        "compute": Compute(
            instance_type=resources["InstanceType"],
            instance_count=resources["InstanceCount"],
            volume_size_in_gb=resources["VolumeSizeInGB"],
            enable_managed_spot_training=request.get("EnableManagedSpotTraining", False),
        ),
        "stopping_condition": StoppingCondition(
            max_runtime_in_seconds=stopping["MaxRuntimeInSeconds"],
            max_wait_time_in_seconds=stopping.get("MaxWaitTimeInSeconds"),
        ),
        "networking": Networking(
            enable_network_isolation=request["EnableNetworkIsolation"],
            enable_inter_container_traffic_encryption=request["EnableInterContainerTrafficEncryption"],
        ),
        "tags": [Tag(key=tag["Key"], value=tag["Value"]) for tag in request["Tags"]],
    }
    if "CheckpointConfig" in request:
        checkpoint = request["CheckpointConfig"]
        arguments["checkpoint_config"] = CheckpointConfig(
            s3_uri=checkpoint["S3Uri"], local_path=checkpoint["LocalPath"]
        )
    return arguments


def launch(options: LaunchOptions, wait: bool, say: Callable[[str], None] = print) -> tuple[str, str]:
    """Check, then start the job; with `wait`, stream its log (the SDK's own streaming) until it ends.
    Returns (job name, status: InProgress when not waiting)."""
    for name, value in POWERTOOLS_ENV.items():
        os.environ.setdefault(name, value)
    if options.region:
        # The SDK's log streaming makes its CloudWatch Logs client from the default session's region.
        os.environ.setdefault("AWS_DEFAULT_REGION", options.region)
    import boto3

    image_uri = read_image_uri(options.image_uri_file)  # first: no listing, no writes without an image
    session = boto3.Session(region_name=options.region)
    record, request = prepare(session.client("s3"), options, image_uri)
    if record.no_change:
        say(
            f"nothing changed since the published run (photos, config files and settings are the same): "
            f"no job started; pass --force to retrain anyway (run record: s3://{record.bucket}/"
            f"{record.layout.run_record_key})"
        )
        return "", "NoChange"
    arguments = trainer_arguments(request)
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.train import ModelTrainer

    sdk_session = Session(boto_session=session, default_bucket=record.bucket, sagemaker_config=NO_TELEMETRY)
    trainer = ModelTrainer(sagemaker_session=sdk_session, **arguments)
    say(
        f"run {record.run_id}: {record.dataset.images} photos of {record.dataset.identities} people, "
        f"{record.instance_count} x {record.instance_type}, image {image_uri}"
    )
    trainer.train(wait=wait, logs=wait)
    job = trainer._latest_training_job  # the SDK keeps the job it started here (sagemaker-train 1.x)
    job.refresh()
    say(f"training job {job.training_job_name}: {job.training_job_status}")
    say(f"output: {request['OutputDataConfig']['S3OutputPath']}{job.training_job_name}/output/model.tar.gz")
    return job.training_job_name, str(job.training_job_status)


HELP = """\
Start the training job directly with the SageMaker Python SDK (ModelTrainer), without the state machine:
the bucket is checked as an execution checks it (settings, photos), then the start Lambda's own request
is sent (same channels, hyperparameters, stopping condition, network isolation, tags, output under the
results prefix's runs/<run id>/training/). The image URI comes from container/image_uri.txt (make image).
Waits and streams the job's log (--no-wait: returns once it started). Exit codes: 0 Completed (or started,
with --no-wait); 1 the job Failed or was Stopped; 2 bad input, nothing started. Needs .venv-launch.
"""


def add_parser(commands: argparse._SubParsersAction, key_value: Callable[[str], tuple[str, str]]) -> None:
    """`facetrain launch` in the facetrain command."""
    parser = commands.add_parser(
        "launch",
        help="start the training job with the SageMaker SDK",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bucket", required=True, help="the data bucket (photos, config, results)")
    parser.add_argument("--role", dest="role_arn", required=True, help="the SageMaker execution role ARN")
    parser.add_argument("--run-id", help="id of the run (default: launch-<UTC time>)")
    parser.add_argument(
        "-p",
        "--hyperparameter",
        dest="hyperparameters",
        metavar="KEY=VALUE",
        type=key_value,
        action="append",
        default=[],
        help="a training setting, repeatable",
    )
    parser.add_argument("--images-prefix", help="prefix of <person>/<photo> (face_imgs/)")
    parser.add_argument("--config-prefix", help="prefix of the cfg channel's files (config/)")
    parser.add_argument("--results-prefix", help="prefix the run's files go under (results/)")
    parser.add_argument("--instance-type", help="training instance type (ml.g4dn.xlarge)")
    parser.add_argument("--instance-count", type=int, help="training instances (1)")
    parser.add_argument("--volume-size-gb", type=int, default=50, help="(50)")
    parser.add_argument("--max-runtime-seconds", type=int, default=21600, help="(21600)")
    parser.add_argument("--spot", action="store_true", help="managed Spot training, with checkpoints")
    parser.add_argument("--force", action="store_true", help="train even when nothing changed")
    parser.add_argument(
        "--image-uri-file",
        type=Path,
        default=DEFAULT_IMAGE_URI_FILE,
        help="file holding the image URI (container/image_uri.txt)",
    )
    parser.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    parser.add_argument("--no-wait", action="store_true", help="return once the job has started")


def main(args: argparse.Namespace) -> int:
    """Run `facetrain launch`; the exit code."""
    try:
        import sagemaker.train  # noqa: F401
    except ImportError:
        print(
            "facetrain launch: the SageMaker Python SDK is not in this environment; use "
            ".venv-launch/bin/facetrain launch (make setup makes .venv-launch)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    logging.getLogger("sagemaker").setLevel(logging.INFO)  # the SDK's log streaming logs at INFO
    options = LaunchOptions(
        bucket=args.bucket,
        role_arn=args.role_arn,
        hyperparameters=dict(args.hyperparameters),
        images_prefix=args.images_prefix,
        config_prefix=args.config_prefix,
        results_prefix=args.results_prefix,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        image_uri_file=args.image_uri_file,
        volume_size_gb=args.volume_size_gb,
        max_runtime_seconds=args.max_runtime_seconds,
        use_spot=args.spot,
        force=args.force,
        region=args.region,
        **({"run_id": args.run_id} if args.run_id else {}),
    )
    try:
        _, status = launch(options, wait=not args.no_wait)
    except LaunchError as exc:
        for problem in exc.problems:
            print(f"facetrain launch: {problem}", file=sys.stderr)
        print("facetrain launch: no training job was started", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # the SDK's FailedStatusError and the like: the job ended badly
        if type(exc).__name__ in ("FailedStatusError", "UnexpectedStatusException"):
            print(f"facetrain launch: {exc}", file=sys.stderr)
            return 1
        raise
    return 0 if status in ("Completed", "InProgress", "NoChange") else 1
