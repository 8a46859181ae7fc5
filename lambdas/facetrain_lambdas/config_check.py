"""Read the config prefix from S3 and resolve the run's settings exactly as the training container does.

The cfg channel's files are copied into a temporary folder and read by facetrain.config_files, then the
run's hyperparameters are layered on top (hyperparameters win) and validated by facetrain.hyperparameters.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facetrain.config_files import CONSTANTS_FILE, DATA_SUFFIXES, ConfigError, read_config_dir
from facetrain.hyperparameters import Hyperparameters, SettingsError, parse_settings

from .dataset import ListedObject
from .layout import s3_uri

MAX_CONFIG_BYTES = 1024 * 1024


@dataclass
class ResolvedSettings:
    """The run's settings, the config keys that make the cfg channel, and what is wrong with them."""

    settings: Hyperparameters | None
    config_keys: list[str] = field(default_factory=list)  # relative to the config prefix
    problems: list[str] = field(default_factory=list)


def config_files(objects: list[ListedObject], prefix: str) -> list[ListedObject]:
    """The objects the container reads from the cfg channel: constants.py at the top, JSON/YAML anywhere."""
    chosen = []
    for obj in objects:
        relative = obj.key[len(prefix) :]
        if relative == CONSTANTS_FILE or relative.lower().endswith(DATA_SUFFIXES):
            chosen.append(obj)
    return chosen


def resolve_settings(
    s3: Any, bucket: str, prefix: str, objects: list[ListedObject], hyperparameters: dict[str, Any]
) -> ResolvedSettings:
    """Download the config files, parse them with the container's reader and merge the hyperparameters."""
    result = ResolvedSettings(settings=None)
    layers: list[tuple[str, dict[str, object]]] = []
    chosen = config_files(objects, prefix)
    with tempfile.TemporaryDirectory(prefix="facetrain-cfg-") as tmp:
        root = Path(tmp)
        for obj in chosen:
            relative = obj.key[len(prefix) :]
            parts = relative.split("/")
            if any(part in ("", ".", "..") for part in parts):
                result.problems.append(
                    f"{s3_uri(bucket, obj.key)}: rename it without empty, '.' or '..' folders"
                )
                continue
            if obj.size > MAX_CONFIG_BYTES:
                result.problems.append(
                    f"{s3_uri(bucket, obj.key)} is {obj.size} bytes; "
                    f"config files must stay under {MAX_CONFIG_BYTES}"
                )
                continue
            target = root.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj.key, str(target))
            result.config_keys.append(relative)
        if result.problems:
            return result
        try:
            layers.extend(read_config_dir(root))
        except (ConfigError, UnicodeDecodeError) as exc:
            result.problems.append(f"config {s3_uri(bucket, prefix)}: {exc}")
            return result
    layers.append(("hyperparameters", hyperparameters))
    try:
        result.settings = parse_settings(layers)
    except SettingsError as exc:
        result.problems.extend(exc.problems)
        result.problems.append(f"valid setting keys: {', '.join(Hyperparameters.model_fields)}")
    return result
