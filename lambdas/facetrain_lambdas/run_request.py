"""The execution input: the console JSON (every field optional, unknown fields refused) or an S3 event."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .erasure_record import ErasurePointer
from .errors import InvalidInput
from .function_settings import FunctionSettings
from .quality_gate import QualityGate
from .upload_batch import UploadBatch

# S3 key prefixes: relative, non-empty, '/'-separated safe characters, normalised to end with '/'.
_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()=+-]+(/[A-Za-z0-9!_.*'()=+-]+)*/?$")
# Run ids become S3 key parts and (sanitised) training job names.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")

ConsoleHyperparameters = dict[str, str | int | float | bool | list[Any] | None]


class ConsoleInput(BaseModel):
    """What an operator may pass to StartExecution. Missing fields take the stack's defaults."""

    model_config = ConfigDict(extra="forbid")

    bucket: str | None = Field(None, description="Data bucket; must be the stack's bucket.")
    images_prefix: str | None = Field(
        None, description="Prefix holding <identity>/<photo> (default face_imgs/)."
    )
    config_prefix: str | None = Field(None, description="Prefix of the cfg channel files (default config/).")
    results_prefix: str | None = Field(None, description="Prefix the results go under (default results/).")
    hyperparameters: ConsoleHyperparameters = Field(
        default_factory=dict,
        description="Training settings (facetrain.contract.hyperparameters); win over config files.",
    )
    instance_type: str | None = Field(
        None, description="SageMaker training instance type, e.g. ml.g4dn.xlarge."
    )
    instance_count: Annotated[int, Field(ge=1, le=20)] | None = Field(None, description="Training instances.")
    run_id: str | None = Field(None, description="Id of this run (default: the execution name).")
    force: bool = Field(
        False, description="Retrain even when photos, config and settings match the published run."
    )
    quality_gate: QualityGate | None = Field(
        None, description="Figures the run must reach to be published (otherwise QualityGateFailed)."
    )
    upload_batch: UploadBatch | None = Field(
        None, description="Set by the upload trigger: the batch of uploads this execution trains on."
    )
    forget: list[str] | None = Field(
        None,
        description="Names (person folders) to erase from everything the bucket keeps; no other field: the "
        "enrollment is republished with the published run's settings (facetrain_lambdas.forget).",
    )
    erasure: ErasurePointer | None = Field(None, description="Set by the state machine's BeginForget.")


VALID_FIELDS: tuple[str, ...] = tuple(ConsoleInput.model_fields)


class StackDefaults(FunctionSettings):
    """Defaults from the stack (template.yaml Environment of the validate and stop functions)."""

    bucket: str = Field(validation_alias="DATA_BUCKET")
    images_prefix: str = Field("face_imgs/", validation_alias="IMAGES_PREFIX")
    config_prefix: str = Field("config/", validation_alias="CONFIG_PREFIX")
    results_prefix: str = Field("results/", validation_alias="RESULTS_PREFIX")
    instance_type: str = Field("ml.g4dn.xlarge", validation_alias="TRAINING_INSTANCE_TYPE")
    instance_count: int = Field(1, validation_alias="TRAINING_INSTANCE_COUNT")


class RunRequest(BaseModel):
    """The resolved request of one run: input fields over stack defaults, checked (kept in run.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    execution: str
    source: Literal["console", "s3-event", "upload-batch", "forget"]
    bucket: str
    images_prefix: str
    config_prefix: str
    results_prefix: str
    hyperparameters: dict[str, Any]
    instance_type: str
    instance_count: int
    trigger_key: str | None = None
    force: bool = False
    quality_gate: QualityGate | None = None
    # A forget's retrain: the erasure receipt's key (the names are never kept in run.json).
    erasure_record_key: str | None = None


def _describe(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "input"
    if error["type"] == "extra_forbidden":
        return f"unknown field '{location}' in the execution input; valid fields: {', '.join(VALID_FIELDS)}"
    return f"field '{location}': {error['msg']} (got {error['input']!r})"


def _normalise_prefix(name: str, value: str, problems: list[str]) -> str:
    if not _PREFIX.fullmatch(value) or ".." in value.split("/"):
        problems.append(
            f"{name} '{value}' is not a usable S3 prefix: give a relative folder such as 'face_imgs/' "
            "(letters, digits and !_.*'()=+- separated by '/', no leading '/', no '..')"
        )
        return value
    return value if value.endswith("/") else value + "/"


def is_s3_event(raw: Mapping[str, Any]) -> bool:
    """True for an EventBridge event from S3 (rather than the console input)."""
    return raw.get("source") == "aws.s3" and "detail-type" in raw


def resolve_request(raw: object, execution: str, defaults: StackDefaults) -> RunRequest:
    """Parse the execution input and apply the stack defaults; raise InvalidInput naming every problem."""
    if not isinstance(raw, Mapping):
        raise InvalidInput(
            [f"the execution input must be a JSON object with fields {', '.join(VALID_FIELDS)}"]
        )
    trigger_key = None
    source: Literal["console", "s3-event", "upload-batch", "forget"] = "console"
    try:
        if is_s3_event(raw):
            event = S3EventNotificationEventBridgeModel.model_validate(raw)
            console = ConsoleInput(bucket=event.detail.bucket.name)
            trigger_key, source = event.detail.object.key, "s3-event"
        else:
            console = ConsoleInput.model_validate(raw)
            if console.upload_batch is not None:
                source = "upload-batch"
            elif console.forget is not None:
                source = "forget"
    except ValidationError as exc:
        raise InvalidInput([_describe(error) for error in exc.errors()]) from None

    problems: list[str] = []
    bucket = console.bucket or defaults.bucket
    if bucket != defaults.bucket:
        problems.append(
            f"bucket '{bucket}' is not this stack's data bucket '{defaults.bucket}': "
            "the stack's roles can only "
            "read and write that one; leave 'bucket' out or upload the photos there"
        )
    run_id = console.run_id or execution
    if not RUN_ID.fullmatch(run_id):
        what = "run_id" if console.run_id else f"the execution name '{execution}' (the default run_id)"
        problems.append(
            f"{what} cannot name a run: use 1-80 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit" + ("" if console.run_id else "; pass a run_id")
        )
    prefixes = {
        name: _normalise_prefix(name, getattr(console, name) or getattr(defaults, name), problems)
        for name in ("images_prefix", "config_prefix", "results_prefix")
    }
    for first, second in (
        ("images_prefix", "results_prefix"),
        ("images_prefix", "config_prefix"),
        ("config_prefix", "results_prefix"),
    ):
        a, b = prefixes[first], prefixes[second]
        if a.startswith(b) or b.startswith(a):
            problems.append(f"{first} '{a}' and {second} '{b}' overlap: give them separate folders")
    instance_type = console.instance_type or defaults.instance_type
    if not _INSTANCE_TYPE.fullmatch(instance_type):
        problems.append(
            f"instance_type '{instance_type}' is not a SageMaker instance type such as 'ml.g4dn.xlarge'"
        )
    if source == "forget":
        problems.extend(_forget_problems(console))
    elif console.erasure is not None:
        problems.append("'erasure' is set by the state machine for a forget input only: leave it out")
    if problems:
        raise InvalidInput(problems)
    return RunRequest(
        run_id=run_id,
        execution=execution,
        source=source,
        bucket=bucket,
        hyperparameters=dict(console.hyperparameters),
        instance_type=instance_type,
        instance_count=console.instance_count or defaults.instance_count,
        trigger_key=trigger_key,
        # A forget always retrains (its photos changed) and is never held back by a quality gate: the
        # erasure must not wait on the figures of the people who remain.
        force=console.force or source == "forget",
        quality_gate=console.quality_gate,
        erasure_record_key=console.erasure.record_key if console.erasure else None,
        **prefixes,
    )


def _forget_problems(console: ConsoleInput) -> list[str]:
    """A forget input holds `forget` alone (the state machine adds `erasure`)."""
    problems = []
    others = sorted(console.model_fields_set - {"forget", "erasure"})
    if others:
        problems.append(
            f"a forget input takes no other field ({', '.join(others)}): the enrollment is republished with "
            "the published run's settings; start a retraining for other changes"
        )
    if console.erasure is None:
        problems.append(
            "a forget is begun by the state machine's BeginForget state, which adds 'erasure' to the input: "
            'start an execution of the retraining state machine with {"forget": [...]}'
        )
    return problems
