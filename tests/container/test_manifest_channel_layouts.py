"""The config and previous-run channels in either layout, as the photos channel (test_channel_layout.py).

start gives each ManifestFile channel's key prefix as a hyperparameter (contract.names
MANIFEST_PREFIX_HYPERPARAMETERS); the job reads cfg/ and previous/ with the same relative names whether
SageMaker wrote each entry at its suffix or under its full key, and refuses a tree that mixes the two.
Read under the suffix rule alone, a full-key cfg/ loses its constants.py and a full-key previous/ its
saved_embeddings.pkl, silently.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from facetrain.channel_layout import channel_dir, manifest_prefix
from facetrain.contract.embeddings_file import dump_embeddings
from facetrain.contract.names import (
    CONFIG_CHANNEL,
    EMBEDDINGS_PKL,
    IMAGES_CHANNEL,
    MANIFEST_PREFIX_HYPERPARAMETERS,
    PREVIOUS_CHANNEL,
)
from facetrain.reuse import load_previous
from facetrain.sagemaker_env import ContractError, load_environment

CFG_PREFIX = "config/"
PREVIOUS_PREFIX = "results/runs/r0/"
FINGERPRINT = "f" * 64
# The cfg manifest's entries (relative to its prefix): constants.py at the top, a data file deeper.
CONFIG_FILES = {
    "constants.py": b"MIN_IMAGES_PER_IDENTITY = 3\n",
    "thresholds/accept.yaml": b"accept_threshold: 0.55\n",
}


def _write(root: Path, files: dict[str, bytes]) -> None:
    for relative, body in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


def _pickle() -> bytes:
    record = {
        "identity": "alice",
        "key": "alice/1.jpg",
        "sha256": "ab" * 32,
        "box": [1.0, 2.0, 30.5, 40.25],
        "probability": 0.999,
        "faces_found": 1,
        "embedding": np.eye(1, 512, dtype=np.float32)[0],
    }
    buffer = io.BytesIO()
    dump_embeddings({"embedding_fingerprint": FINGERPRINT}, [record], buffer)
    return buffer.getvalue()


def _settings(tree):
    from facetrain.job import resolve_settings

    return resolve_settings(load_environment(tree.base))


def _under(layout: str, prefix: str) -> str:
    return prefix if layout == "full-key" else ""


@pytest.mark.parametrize("layout", ["suffix", "full-key"])
def test_the_config_files_take_effect_in_either_layout(sagemaker_tree, layout: str) -> None:
    under = _under(layout, CFG_PREFIX)
    _write(
        sagemaker_tree.channel(CONFIG_CHANNEL), {under + name: body for name, body in CONFIG_FILES.items()}
    )
    sagemaker_tree.update_hyperparameters(**{MANIFEST_PREFIX_HYPERPARAMETERS[CONFIG_CHANNEL]: CFG_PREFIX})

    settings = _settings(sagemaker_tree)

    assert (settings.min_images_per_identity, settings.accept_threshold) == (3, 0.55)
    assert MANIFEST_PREFIX_HYPERPARAMETERS[CONFIG_CHANNEL] not in settings.model_dump()


def test_a_deeper_config_prefix_in_the_full_key_layout(sagemaker_tree) -> None:
    prefix = "teams/berlin/config/"
    _write(sagemaker_tree.channel(CONFIG_CHANNEL), {prefix + "constants.py": CONFIG_FILES["constants.py"]})
    sagemaker_tree.update_hyperparameters(**{MANIFEST_PREFIX_HYPERPARAMETERS[CONFIG_CHANNEL]: prefix})
    assert _settings(sagemaker_tree).min_images_per_identity == 3


def test_a_config_channel_mixing_the_layouts_is_refused(sagemaker_tree) -> None:
    # constants.py at its suffix, and a data file under its full key: neither reading would be what
    # validate checked, so the job refuses rather than dropping one of them.
    _write(
        sagemaker_tree.channel(CONFIG_CHANNEL),
        {"constants.py": CONFIG_FILES["constants.py"], "config/accept.yaml": b"accept_threshold: 0.55\n"},
    )
    sagemaker_tree.update_hyperparameters(**{MANIFEST_PREFIX_HYPERPARAMETERS[CONFIG_CHANNEL]: CFG_PREFIX})
    with pytest.raises(ContractError, match="The 'cfg' channel mixes layouts") as refused:
        _settings(sagemaker_tree)
    message = str(refused.value)
    assert "input/data/cfg/ holds config/ (the manifest prefix config/) and also 'constants.py'" in message
    assert "expected either the config files (constants.py, *.json, *.yaml) at the top" in message
    assert "or only config/<config file>" in message


@pytest.mark.parametrize("layout", ["suffix", "full-key"])
def test_the_previous_embeddings_are_found_in_either_layout(sagemaker_tree, layout: str, caplog) -> None:
    _write(
        sagemaker_tree.channel(PREVIOUS_CHANNEL),
        {_under(layout, PREVIOUS_PREFIX) + EMBEDDINGS_PKL: _pickle()},
    )
    sagemaker_tree.update_hyperparameters(
        **{MANIFEST_PREFIX_HYPERPARAMETERS[PREVIOUS_CHANNEL]: PREVIOUS_PREFIX}
    )
    env = load_environment(sagemaker_tree.base)

    with caplog.at_level(logging.INFO, logger="facetrain"):
        previous = load_previous(channel_dir(env, PREVIOUS_CHANNEL), FINGERPRINT, 512)

    assert previous is not None and list(previous.by_sha256) == ["ab" * 32]  # reused, not recomputed
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    info = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert "alice" not in info  # no identity or photo name at INFO


def test_a_previous_channel_mixing_the_layouts_is_refused(sagemaker_tree) -> None:
    _write(
        sagemaker_tree.channel(PREVIOUS_CHANNEL),
        {EMBEDDINGS_PKL: _pickle(), PREVIOUS_PREFIX + EMBEDDINGS_PKL: _pickle()},
    )
    sagemaker_tree.update_hyperparameters(
        **{MANIFEST_PREFIX_HYPERPARAMETERS[PREVIOUS_CHANNEL]: PREVIOUS_PREFIX}
    )
    with pytest.raises(ContractError, match="The 'previous' channel mixes layouts") as refused:
        channel_dir(load_environment(sagemaker_tree.base), PREVIOUS_CHANNEL)
    message = str(refused.value)
    assert f"holds results/ (the manifest prefix {PREVIOUS_PREFIX}) and also '{EMBEDDINGS_PKL}'" in message
    assert f"expected either {EMBEDDINGS_PKL} at the top" in message


def test_a_previous_channel_under_another_runs_folder_is_refused(sagemaker_tree) -> None:
    # The prefix start gave and the folder SageMaker wrote disagree: say so, never reuse nothing silently.
    _write(sagemaker_tree.channel(PREVIOUS_CHANNEL), {"results/runs/r9/" + EMBEDDINGS_PKL: _pickle()})
    sagemaker_tree.update_hyperparameters(
        **{MANIFEST_PREFIX_HYPERPARAMETERS[PREVIOUS_CHANNEL]: PREVIOUS_PREFIX}
    )
    with pytest.raises(ContractError, match=r"input/data/previous/results/runs/ holds r0/ .* and also 'r9'"):
        channel_dir(load_environment(sagemaker_tree.base), PREVIOUS_CHANNEL)


def test_without_a_prefix_each_channel_is_read_as_it_is(sagemaker_tree) -> None:
    # A hand-made tree (`make job`) or an older start: no layout detection, as before.
    _write(sagemaker_tree.channel(CONFIG_CHANNEL), {"config/constants.py": CONFIG_FILES["constants.py"]})
    env = load_environment(sagemaker_tree.base)
    assert channel_dir(env, CONFIG_CHANNEL) == env.channels[CONFIG_CHANNEL]
    assert channel_dir(env, PREVIOUS_CHANNEL) is None  # no such channel
    assert _settings(sagemaker_tree).min_images_per_identity == 1  # the default: constants.py not at the top


def test_each_channels_prefix_comes_raw_from_its_own_hyperparameter() -> None:
    hyperparameters = {
        MANIFEST_PREFIX_HYPERPARAMETERS[IMAGES_CHANNEL]: "face_imgs/",
        MANIFEST_PREFIX_HYPERPARAMETERS[CONFIG_CHANNEL]: "2024/",
        MANIFEST_PREFIX_HYPERPARAMETERS[PREVIOUS_CHANNEL]: PREVIOUS_PREFIX,
    }
    assert manifest_prefix(hyperparameters) == "face_imgs/"  # the photos', as before
    assert manifest_prefix(hyperparameters, CONFIG_CHANNEL) == "2024/"  # never JSON-decoded
    assert manifest_prefix(hyperparameters, PREVIOUS_CHANNEL) == PREVIOUS_PREFIX
    assert manifest_prefix({}, CONFIG_CHANNEL) is None
    with pytest.raises(ContractError, match="facetrain_cfg_prefix must be the config prefix as a string"):
        manifest_prefix({MANIFEST_PREFIX_HYPERPARAMETERS[CONFIG_CHANNEL]: ["config/"]}, CONFIG_CHANNEL)
    with pytest.raises(ValueError, match="'weights' is not a manifest channel"):
        manifest_prefix(hyperparameters, "weights")


def test_a_config_prefix_with_dot_dot_is_refused(sagemaker_tree) -> None:
    _write(sagemaker_tree.channel(CONFIG_CHANNEL), {"constants.py": CONFIG_FILES["constants.py"]})
    sagemaker_tree.update_hyperparameters(**{MANIFEST_PREFIX_HYPERPARAMETERS[CONFIG_CHANNEL]: "../etc/"})
    with pytest.raises(ContractError, match=r"facetrain_cfg_prefix='\.\./etc/' is not a usable key prefix"):
        _settings(sagemaker_tree)


def test_no_prefix_hyperparameter_is_read_as_a_setting(sagemaker_tree) -> None:
    sagemaker_tree.update_hyperparameters(**{name: "x/" for name in MANIFEST_PREFIX_HYPERPARAMETERS.values()})
    settings = _settings(sagemaker_tree)  # no "unknown key" SettingsError
    assert not set(MANIFEST_PREFIX_HYPERPARAMETERS.values()) & set(settings.model_dump())
