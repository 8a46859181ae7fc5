"""Where a ManifestFile channel's files lie: at each manifest entry's suffix, or under its full key.

start gives three channels as ManifestFiles (lambdas: training_job, dataset.manifest): the photos
(`face_imgs`), the config files (`cfg`) and the published run's saved_embeddings.pkl (`previous`). Each is a
`{"prefix": "s3://bucket/face_imgs/"}` entry, then keys relative to it. SageMaker's API reference says only
that it "appends the suffix elements to the prefix to get a full set of S3Uri" (S3DataSource.S3Uri,
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_S3DataSource.html), not where each object
lands in /opt/ml/input/data/<channel>/. The offline backend writes each at its suffix
(`face_imgs/alice/1.jpg` → `<channel>/alice/1.jpg`) or, asked to, under its full key; a report from a real
job shows them under their full key (`<channel>/face_imgs/alice/1.jpg`), and SageMaker's own local mode
names S3Prefix files differently from real jobs (https://github.com/aws/sagemaker-python-sdk/issues/3612)
and does not support ManifestFile at all (https://github.com/aws/amazon-sagemaker-feedback/issues/201): no
emulator settles it. Read under the suffix rule, a full-key tree is one identity named after the prefix,
a cfg channel without its constants.py, a previous channel without saved_embeddings.pkl: all silently.

So the job is told each manifest's prefix (contract.names.MANIFEST_PREFIX_HYPERPARAMETERS, one plain
string per channel, never decoded or run) and reads each channel, the same way, in either layout:
- no folder named like the prefix's first part at the top → the suffix layout, the channel as it is;
- the prefix's folders alone down to `<channel>/<prefix>` → the full-key layout, read from there;
- anything else (the prefix's folders and other entries beside them, or a broken chain) → ContractError.
Relative paths are the manifest's entries in both (`<identity>/<photo>`, `constants.py`,
`saved_embeddings.pkl`), so incremental reuse, sharded hosts and the config reader see the same names.
validate refuses a photo or config folder named like its prefix's first part, so the two cannot be
confused; the previous channel's one entry is a file, never such a folder. The known strangers' folder
(`_strangers/`, contract.names.STRANGERS_FOLDER) counts as an entry of the images channel although its name
starts with `_`: beside the prefix's folder it is a mixed tree, refused, not strangers silently dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .contract.names import (
    CONFIG_CHANNEL,
    EMBEDDINGS_PKL,
    IMAGES_CHANNEL,
    MANIFEST_PREFIX_HYPERPARAMETERS,
    PREVIOUS_CHANNEL,
    STRANGERS_FOLDER,
    is_skipped,
)
from .contract.shorten import clip
from .sagemaker_env import ContractError

if TYPE_CHECKING:
    from .sagemaker_env import TrainingEnvironment

log = logging.getLogger("facetrain")
_SHOWN = 3  # entries named in a refusal

# Per manifest channel: what its prefix is (in messages), an example, and what its entries look like (at
# the top of the channel, and under the prefix).
_PREFIX_NAMES = {
    IMAGES_CHANNEL: ("the images prefix", "face_imgs/"),
    CONFIG_CHANNEL: ("the config prefix", "config/"),
    PREVIOUS_CHANNEL: ("the published run's folder", "results/runs/<run id>/"),
}
_ENTRIES = {
    IMAGES_CHANNEL: ("<identity>/<photo> folders", "<identity>/<photo>"),
    CONFIG_CHANNEL: ("the config files (constants.py, *.json, *.yaml)", "<config file>"),
    PREVIOUS_CHANNEL: (EMBEDDINGS_PKL, EMBEDDINGS_PKL),
}


def _hyperparameter(channel: str) -> str:
    if channel not in MANIFEST_PREFIX_HYPERPARAMETERS:
        raise ValueError(
            f"{channel!r} is not a manifest channel: {', '.join(MANIFEST_PREFIX_HYPERPARAMETERS)}"
        )
    return MANIFEST_PREFIX_HYPERPARAMETERS[channel]


def manifest_prefix(hyperparameters: Mapping[str, object], channel: str = IMAGES_CHANNEL) -> str | None:
    """A manifest channel's key prefix from hyperparameters.json (the images' by default), or None when
    start did not give one (a hand-made tree, `make job`, an older start): raw, never JSON-decoded (a prefix
    like `2024/` is not a number)."""
    name = _hyperparameter(channel)
    value = hyperparameters.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        what, example = _PREFIX_NAMES[channel]
        raise ContractError(
            f"hyperparameter {name} must be {what} as a string (e.g. '{example}'), got "
            f"{clip(repr(value), 80)}; it is set by the start function"
        )
    return value


def _prefix_parts(prefix: str, channel: str) -> list[str]:
    parts = [part for part in prefix.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise ContractError(
            f"hyperparameter {_hyperparameter(channel)}={clip(prefix, 80)!r} is not a usable key prefix "
            f"('.' or '..' in it); it is {_PREFIX_NAMES[channel][0]} of the run, set by the start function"
        )
    return parts


def _entries(folder: Path, keep: str, channel: str) -> list[str]:
    """Names in a folder the job would read (not `_*`/`.*`, but the images channel's `_strangers`), plus
    `keep` whatever its name."""
    read = {keep, STRANGERS_FOLDER} if channel == IMAGES_CHANNEL else {keep}
    return sorted(p.name for p in folder.iterdir() if p.name in read or not is_skipped(p.name))


def _shown(names: list[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(repr(clip(name, 60)) for name in names[:_SHOWN]) + more


def channel_root(folder: Path, prefix: str | None, channel: str = IMAGES_CHANNEL) -> Path:
    """The folder that holds a manifest channel's entries at their relative paths: the channel folder
    itself (suffix layout), or `<folder>/<prefix>` (full-key layout). ContractError, naming what was found
    and what was expected, for a tree that is neither cleanly."""
    parts = _prefix_parts(prefix, channel) if prefix else []
    if not parts or not (folder / parts[0]).exists():
        return folder
    where = f"input/data/{channel}"
    full = "/".join(parts)
    at_top, under = _ENTRIES[channel]
    expected = (
        f"expected either {at_top} at the top (each manifest entry at its suffix) or only {full}/{under} "
        "(each under its full key)"
    )
    root = folder
    for index, part in enumerate(parts):
        others = [name for name in _entries(root, part, channel) if name != part]
        if others:
            inside = f"{where}/{'/'.join(parts[:index])}" if index else where
            raise ContractError(
                f"The '{channel}' channel mixes layouts: {inside}/ holds {part}/ (the manifest prefix "
                f"{prefix}) and also {_shown(others)}; {expected}. Check how the channel was downloaded; "
                "start a new run."
            )
        root = root / part
        if not root.is_dir() or root.is_symlink():
            raise ContractError(
                f"The '{channel}' channel has {where}/{'/'.join(parts[: index + 1])} but it is not a "
                f"folder leading to {where}/{full}/; {expected}. Check how the channel was downloaded."
            )
    log.info(
        "%s channel: entries under their full S3 key (prefix %s): read from %s/%s/",
        channel,
        prefix,
        where,
        full,
    )
    return root


def photos_root(channel: Path, prefix: str | None) -> Path:
    """The folder whose subfolders are the identities, in either layout (channel_root of `face_imgs`)."""
    return channel_root(channel, prefix, IMAGES_CHANNEL)


def channel_dir(env: TrainingEnvironment, channel: str) -> Path | None:
    """Where a manifest channel's entries lie at their relative paths, in either layout, with the prefix
    start gave for it; None when the job has no such channel."""
    folder = env.channels.get(channel)
    if folder is None:
        return None
    return channel_root(folder, manifest_prefix(env.hyperparameters, channel), channel)
