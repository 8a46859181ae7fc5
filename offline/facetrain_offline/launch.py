"""`facetrain launch`: start the training job directly with the SageMaker Python SDK (v3 `ModelTrainer`),
without the state machine.

The job is the start Lambda's, built by the same code: the bucket is checked and the CreateTrainingJob
request built as an execution does it (launch_checks.py), then that request is handed to ModelTrainer
field by field (model_trainer.py). Every problem is reported before any job starts. The SDK's telemetry
is off. `add_parser` and `main` are the command in `facetrain` (cli.py); `launch` is what it runs.

The SDK lives in its own venv (`.venv-launch`, `requirements/launch.txt`; see pyproject.toml's `launch`
extra for why); `make setup` makes it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .launch_checks import DEFAULT_IMAGE_URI_FILE, LaunchError, LaunchOptions, prepare, read_image_uri
from .model_trainer import trainer_arguments

EXIT_BAD_INPUT = 2
# Outside Lambda: no X-Ray segment to trace into, and validate's INFO lines are the Lambda's, not ours.
POWERTOOLS_ENV = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"}
NO_TELEMETRY = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


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
            f"no job started; pass --force to retrain anyway (run record: s3://{record.request.bucket}/"
            f"{record.layout.run_record_key})"
        )
        return "", "NoChange"
    arguments = trainer_arguments(request)
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.train import ModelTrainer

    sdk_session = Session(
        boto_session=session, default_bucket=record.request.bucket, sagemaker_config=NO_TELEMETRY
    )
    trainer = ModelTrainer(sagemaker_session=sdk_session, **arguments)
    say(
        f"run {record.request.run_id}: {record.dataset.images} photos of {record.dataset.identities} people, "
        f"{record.request.instance_count} x {record.request.instance_type}, image {image_uri}"
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
