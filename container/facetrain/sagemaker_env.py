"""The SageMaker training-container contract: the /opt/ml layout and its JSON files.

The root comes from `SAGEMAKER_BASE_DIR` (default `/opt/ml`), as in the SageMaker training toolkit.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

# The channel names are shared with the Lambdas; re-exported here for the job's modules.
from .contract.names import CONFIG_CHANNEL, IMAGES_CHANNEL, KNOWN_CHANNELS, WEIGHTS_CHANNEL

__all__ = [
    "CONFIG_CHANNEL",
    "DEFAULT_BASE_DIR",
    "IMAGES_CHANNEL",
    "KNOWN_CHANNELS",
    "WEIGHTS_CHANNEL",
    "ContractError",
    "TrainingEnvironment",
    "base_dir_from_env",
    "load_environment",
]

DEFAULT_BASE_DIR = "/opt/ml"


class ContractError(ValueError):
    """The job's input tree does not follow the SageMaker layout."""


@dataclass(frozen=True)
class TrainingEnvironment:
    """Paths and settings SageMaker hands the container."""

    base_dir: Path
    hyperparameters: dict[str, object]
    channels: dict[str, Path]
    current_host: str
    hosts: tuple[str, ...]

    @property
    def model_dir(self) -> Path:
        return self.base_dir / "model"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def is_master(self) -> bool:
        return self.current_host == self.hosts[0]


def base_dir_from_env() -> Path:
    """The /opt/ml root, overridable with SAGEMAKER_BASE_DIR."""
    return Path(os.environ.get("SAGEMAKER_BASE_DIR", DEFAULT_BASE_DIR))


def _read_json(path: Path, default: object) -> object:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ContractError(f"{path.name} is not valid JSON ({exc})") from None


def load_environment(base_dir: Path | None = None) -> TrainingEnvironment:
    """Read hyperparameters.json, inputdataconfig.json and resourceconfig.json under the base dir.

    Channels are those named in inputdataconfig.json; without that file (a hand-made local tree), the
    folders present under input/data/ are the channels.
    """
    base = base_dir or base_dir_from_env()
    config = base / "input" / "config"
    data = base / "input" / "data"
    hyperparameters = _read_json(config / "hyperparameters.json", {})
    if not isinstance(hyperparameters, dict):
        raise ContractError("hyperparameters.json must hold an object of string values")
    declared = _read_json(config / "inputdataconfig.json", None)
    if declared is None:
        names = sorted(p.name for p in data.iterdir() if p.is_dir()) if data.is_dir() else []
    elif isinstance(declared, dict):
        names = sorted(declared)
    else:
        raise ContractError("inputdataconfig.json must hold an object keyed by channel name")
    channels = {name: data / name for name in names}
    for name, path in channels.items():
        if not path.is_dir():
            raise ContractError(f"channel '{name}' is declared in inputdataconfig.json but {path} is missing")
    resources = _read_json(config / "resourceconfig.json", {})
    if not isinstance(resources, dict):
        raise ContractError("resourceconfig.json must hold an object")
    current_host = str(resources.get("current_host", "algo-1"))
    hosts = tuple(str(h) for h in resources.get("hosts", [current_host])) or (current_host,)
    return TrainingEnvironment(
        base_dir=base,
        hyperparameters=hyperparameters,
        channels=channels,
        current_host=current_host,
        hosts=hosts,
    )
