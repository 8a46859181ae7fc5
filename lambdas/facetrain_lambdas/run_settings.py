"""Read the config prefix from S3 and resolve the run's settings exactly as the training container does.

The cfg channel's files are read into memory and layered by facetrain.contract.config_files (the
container's own reader), then the run's hyperparameters are layered on top (hyperparameters win) and
validated by facetrain.contract.hyperparameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from facetrain.contract.config_files import (
    MAX_CONFIG_BYTES,
    ConfigError,
    config_layers,
    decode_text,
    is_config_file,
)
from facetrain.contract.hyperparameters import (
    Hyperparameters,
    SettingsError,
    parse_settings,
    sagemaker_limit_problems,
)

from .dataset import ListedObject, key_problem
from .errors import transient_aws_errors
from .layout import s3_uri


@dataclass
class ResolvedSettings:
    """The run's settings, the config keys that make the cfg channel, and what is wrong with them."""

    settings: Hyperparameters | None
    config_keys: list[str] = field(default_factory=list)  # relative to the config prefix
    problems: list[str] = field(default_factory=list)


def config_files(objects: list[ListedObject], prefix: str) -> list[ListedObject]:
    """The objects the container reads from the cfg channel: constants.py at the top, JSON/YAML anywhere."""
    return [obj for obj in objects if is_config_file(obj.key[len(prefix) :])]


def _read_text(s3: Any, bucket: str, key: str) -> str:
    with transient_aws_errors(f"reading {s3_uri(bucket, key)}"):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read(MAX_CONFIG_BYTES + 1)
    return decode_text(body, s3_uri(bucket, key))


def resolve_settings(
    s3: Any, bucket: str, prefix: str, objects: list[ListedObject], hyperparameters: dict[str, Any]
) -> ResolvedSettings:
    """Read the config files, parse them with the container's reader and merge the hyperparameters."""
    result = ResolvedSettings(settings=None)
    # SageMaker's limits apply to the strings CreateTrainingJob will get
    result.problems.extend(sagemaker_limit_problems(hyperparameters))
    texts: dict[str, str] = {}
    for obj in config_files(objects, prefix):
        relative = obj.key[len(prefix) :]
        if any(part in ("", ".", "..") for part in relative.split("/")):
            result.problems.append(f"{s3_uri(bucket, obj.key)}: rename it without empty, '.' or '..' folders")
            continue
        if problem := key_problem(relative):
            result.problems.append(f"{s3_uri(bucket, obj.key)}: {problem}")
            continue
        if "/" in relative and relative.split("/")[0] == prefix.split("/")[0]:
            # The job tells the two layouts of the channel apart by that folder (facetrain.channel_layout).
            result.problems.append(
                f"{s3_uri(bucket, obj.key)}: its folder {relative.split('/')[0]}/ has the name of the first "
                f"folder of the config prefix '{prefix}': the training job could not tell it from config "
                f"files SageMaker writes under their full key ({prefix}<file>); rename the folder"
            )
            continue
        if obj.size > MAX_CONFIG_BYTES:
            result.problems.append(
                f"{s3_uri(bucket, obj.key)} is {obj.size} bytes; "
                f"config files must be at most {MAX_CONFIG_BYTES} bytes"
            )
            continue
        try:
            texts[relative] = _read_text(s3, bucket, obj.key)
        except ConfigError as exc:
            result.problems.append(str(exc))
            continue
        result.config_keys.append(relative)
    if result.problems:
        return result
    try:
        layers = config_layers(texts)
    except ConfigError as exc:
        result.problems.append(f"config {s3_uri(bucket, prefix)}: {exc}")
        return result
    layers.append(("hyperparameters", hyperparameters))
    try:
        result.settings = parse_settings(layers)
    except SettingsError as exc:
        result.problems.extend(with_valid_keys(exc.problems))
    return result


UNKNOWN_KEY = "unknown key "  # how facetrain.contract.hyperparameters names a key that is no setting


def with_valid_keys(problems: list[str]) -> list[str]:
    """The settings problems, an unknown key's line followed by the valid keys (the fix): one problem per
    line, so that the count of problems is the count of things to fix."""
    valid = f"; valid setting keys: {', '.join(Hyperparameters.model_fields)}"
    return [problem + valid if problem.startswith(UNKNOWN_KEY) else problem for problem in problems]
