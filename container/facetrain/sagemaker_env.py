"""The SageMaker training-container contract: the /opt/ml layout and its JSON files.

`OptMl` names every path of the layout, `write_tree` writes it as SageMaker does before it starts the
container (the local training backend and the tests use it), `load_environment` reads it in the job. The
root comes from `SAGEMAKER_BASE_DIR` (default `/opt/ml`), as in the SageMaker training toolkit.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# The channel names are shared with the Lambdas; re-exported here for the job's modules.
from .contract.names import CONFIG_CHANNEL, IMAGES_CHANNEL, KNOWN_CHANNELS, WEIGHTS_CHANNEL
from .contract.shorten import shorten

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


def _check_channel_names(names: Sequence[str], source: str, remedy: str) -> None:
    """ContractError naming each channel the job does not know (with the closest known name). SageMaker
    hands the container exactly the channels the CreateTrainingJob request names, so an unknown name is a
    mistake in that request (or in a hand-made tree) and the channel it meant is missing: ignoring it would
    train without the cfg settings, the weights or the previous run the user thought they gave."""
    unknown = [name for name in names if name not in KNOWN_CHANNELS]
    if not unknown:
        return
    parts = []
    for name in unknown:  # compared lower-cased: `CFG` means cfg as much as `cfgs` does
        close = difflib.get_close_matches(name.lower(), KNOWN_CHANNELS, n=1, cutoff=0.6)
        parts.append(shorten(name) + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise ContractError(
        f"Unknown input channel {', '.join(parts)} in {source}: the job reads only the channels "
        f"{', '.join(KNOWN_CHANNELS)}; {remedy}"
    )


def _hosts(resources: Mapping[str, object], path: Path) -> tuple[str, tuple[str, ...]]:
    """resourceconfig.json's current_host and hosts, checked: SageMaker writes `hosts` as a non-empty list of
    distinct names that holds `current_host`; anything else is a broken file (a hand-made tree, another
    platform), named here rather than failing later as an internal error."""
    current = resources.get("current_host", "algo-1")
    hosts = resources.get("hosts", [current])
    where = f"{path.name} ({path})"
    if not isinstance(current, str) or not current:
        raise ContractError(
            f"{where}: current_host must be this host's name as a non-empty string (e.g. 'algo-1'), got "
            f"{shorten(current)}"
        )
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise ContractError(
            f"{where}: hosts must be a non-empty list of host names (e.g. ['algo-1', 'algo-2']), got "
            f"{shorten(hosts)}"
        )
    if len(set(hosts)) != len(hosts):
        raise ContractError(f"{where}: hosts names a host twice ({shorten(hosts)}); each name must be unique")
    if current not in hosts:
        raise ContractError(
            f"{where}: current_host {shorten(current)} is not among hosts {shorten(hosts)}; "
            "this host cannot find its place among the job's hosts. SageMaker writes this file: check the "
            "tree the job was started with"
        )
    return current, tuple(hosts)


def load_environment(base_dir: Path | None = None) -> TrainingEnvironment:
    """Read hyperparameters.json, inputdataconfig.json and resourceconfig.json under the base dir.

    Channels are those named in inputdataconfig.json; without that file (a hand-made local tree), the
    folders present under input/data/ are the channels. ContractError for a channel the job does not know
    (KNOWN_CHANNELS; with the closest known name) and for a resourceconfig.json whose current_host is not
    one of its hosts.
    """
    base = base_dir or base_dir_from_env()
    tree = OptMl(base)
    data = tree.data_dir
    hyperparameters = _read_json(tree.hyperparameters_file, {})
    if not isinstance(hyperparameters, dict):
        raise ContractError("hyperparameters.json must hold an object of string values")
    declared = _read_json(tree.inputdataconfig_file, None)
    if declared is None:  # hidden folders (.ipynb_checkpoints, …) are no channels
        folders = data.iterdir() if data.is_dir() else ()
        names = sorted(p.name for p in folders if p.is_dir() and not p.name.startswith("."))
        where = f"{data}/ (without inputdataconfig.json its folders are the channels)"
        _check_channel_names(names, where, "rename or remove the folder")
    elif isinstance(declared, dict):
        names = sorted(declared)
        remedy = "rename the channel (ChannelName) in the training job's InputDataConfig"
        _check_channel_names(names, tree.inputdataconfig_file.name, remedy)
    else:
        raise ContractError("inputdataconfig.json must hold an object keyed by channel name")
    channels = {name: tree.channel(name) for name in names}
    for name, path in channels.items():
        if not path.is_dir():
            raise ContractError(f"channel '{name}' is declared in inputdataconfig.json but {path} is missing")
    resources = _read_json(tree.resourceconfig_file, {})
    if not isinstance(resources, dict):
        raise ContractError("resourceconfig.json must hold an object")
    current_host, hosts = _hosts(resources, tree.resourceconfig_file)
    instance_type = resources.get("current_instance_type")
    return TrainingEnvironment(
        base_dir=base,
        hyperparameters=hyperparameters,
        channels=channels,
        current_host=current_host,
        hosts=hosts,
        instance_type=instance_type if isinstance(instance_type, str) and instance_type else None,
    )
