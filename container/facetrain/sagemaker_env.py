"""The SageMaker training-container contract: the /opt/ml layout and its JSON files.

`OptMl` names every path of the layout, `write_tree` writes it as SageMaker does before it starts the
container (the local training backend and the tests use it), `load_environment` reads it in the job. The
root comes from `SAGEMAKER_BASE_DIR` (default `/opt/ml`), as in the SageMaker training toolkit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# The channel names are shared with the Lambdas; re-exported here for the job's modules.
from .contract.names import CONFIG_CHANNEL, IMAGES_CHANNEL, KNOWN_CHANNELS, WEIGHTS_CHANNEL

__all__ = [
    "CONFIG_CHANNEL",
    "DEFAULT_BASE_DIR",
    "IMAGES_CHANNEL",
    "KNOWN_CHANNELS",
    "LOCAL_INSTANCE_TYPE",
    "WEIGHTS_CHANNEL",
    "ContractError",
    "OptMl",
    "TrainingEnvironment",
    "base_dir_from_env",
    "load_environment",
    "write_tree",
]

DEFAULT_BASE_DIR = "/opt/ml"
LOCAL_INSTANCE_TYPE = "local"  # SageMaker local mode's current_instance_type on a machine's own CPU


class ContractError(ValueError):
    """The job's input tree does not follow the SageMaker layout."""


@dataclass(frozen=True)
class OptMl:
    """The paths of one host's /opt/ml (or SAGEMAKER_BASE_DIR)."""

    base: Path

    @property
    def config_dir(self) -> Path:
        return self.base / "input" / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def inputdataconfig_file(self) -> Path:
        return self.config_dir / "inputdataconfig.json"

    @property
    def resourceconfig_file(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    @property
    def data_dir(self) -> Path:
        return self.base / "input" / "data"

    def channel(self, name: str) -> Path:
        return self.data_dir / name

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        """CheckpointConfig's LocalPath (/opt/ml/checkpoints): present only for a job with checkpoints."""
        return self.base / "checkpoints"


def channel_config(
    input_mode: str = "File", distribution: str = "FullyReplicated", record_wrapper: str = "None"
) -> dict[str, str]:
    """One channel's entry of inputdataconfig.json."""
    return {
        "TrainingInputMode": input_mode,
        "S3DistributionType": distribution,
        "RecordWrapperType": record_wrapper,
    }


def write_json(path: Path, value: object) -> None:
    """A JSON file of the layout (UTF-8)."""
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")


def write_tree(
    base: Path,
    hyperparameters: Mapping[str, str],
    channels: Mapping[str, Mapping[str, str]],
    current_host: str = "algo-1",
    hosts: Sequence[str] = ("algo-1",),
    instance_type: str = LOCAL_INSTANCE_TYPE,
) -> OptMl:
    """Lay out /opt/ml as SageMaker does before it starts the container: the three config files (string
    hyperparameters; resourceconfig.json's current_instance_type is `instance_type`, 'local' as SageMaker
    local mode writes it by default), an empty input/data/<channel>/ per channel, model/ and output/data/."""
    tree = OptMl(base)
    tree.config_dir.mkdir(parents=True, exist_ok=True)
    for name in channels:
        tree.channel(name).mkdir(parents=True, exist_ok=True)
    tree.data_dir.mkdir(parents=True, exist_ok=True)
    tree.model_dir.mkdir(parents=True, exist_ok=True)
    (tree.output_dir / "data").mkdir(parents=True, exist_ok=True)
    write_json(tree.hyperparameters_file, dict(hyperparameters))
    write_json(tree.inputdataconfig_file, {name: dict(config) for name, config in channels.items()})
    resources = {
        "current_host": current_host,
        "current_instance_type": instance_type,
        "hosts": list(hosts),
        "network_interface_name": "eth0",
    }
    write_json(tree.resourceconfig_file, resources)
    return tree


@dataclass(frozen=True)
class TrainingEnvironment:
    """Paths and settings SageMaker hands the container."""

    base_dir: Path
    hyperparameters: dict[str, object]
    channels: dict[str, Path]
    current_host: str
    hosts: tuple[str, ...]
    instance_type: str | None = None  # resourceconfig.json's current_instance_type; None when absent

    @property
    def model_dir(self) -> Path:
        return OptMl(self.base_dir).model_dir

    @property
    def output_dir(self) -> Path:
        return OptMl(self.base_dir).output_dir

    @property
    def failure_file(self) -> Path:
        return OptMl(self.base_dir).failure_file

    @property
    def checkpoint_dir(self) -> Path:
        return OptMl(self.base_dir).checkpoint_dir

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
    tree = OptMl(base)
    data = tree.data_dir
    hyperparameters = _read_json(tree.hyperparameters_file, {})
    if not isinstance(hyperparameters, dict):
        raise ContractError("hyperparameters.json must hold an object of string values")
    declared = _read_json(tree.inputdataconfig_file, None)
    if declared is None:
        names = sorted(p.name for p in data.iterdir() if p.is_dir()) if data.is_dir() else []
    elif isinstance(declared, dict):
        names = sorted(declared)
    else:
        raise ContractError("inputdataconfig.json must hold an object keyed by channel name")
    channels = {name: tree.channel(name) for name in names}
    for name, path in channels.items():
        if not path.is_dir():
            raise ContractError(f"channel '{name}' is declared in inputdataconfig.json but {path} is missing")
    resources = _read_json(tree.resourceconfig_file, {})
    if not isinstance(resources, dict):
        raise ContractError("resourceconfig.json must hold an object")
    current_host = str(resources.get("current_host", "algo-1"))
    hosts = tuple(str(h) for h in resources.get("hosts", [current_host])) or (current_host,)
    instance_type = resources.get("current_instance_type")
    return TrainingEnvironment(
        base_dir=base,
        hyperparameters=hyperparameters,
        channels=channels,
        current_host=current_host,
        hosts=hosts,
        instance_type=instance_type if isinstance(instance_type, str) and instance_type else None,
    )
