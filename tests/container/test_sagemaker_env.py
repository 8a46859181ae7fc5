"""facetrain.sagemaker_env: the /opt/ml contract (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from facetrain.contract.names import KNOWN_CHANNELS
from facetrain.sagemaker_env import ContractError, base_dir_from_env, load_environment


def test_base_dir_defaults_to_opt_ml(monkeypatch):
    monkeypatch.delenv("SAGEMAKER_BASE_DIR", raising=False)
    assert base_dir_from_env() == Path("/opt/ml")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", "/tmp/elsewhere")
    assert base_dir_from_env() == Path("/tmp/elsewhere")


def test_declared_channels_and_resources(sagemaker_tree):
    sagemaker_tree.channel("cfg")
    sagemaker_tree.channel("undeclared", declare=False)
    sagemaker_tree.update_hyperparameters(image_size="128")
    env = load_environment(sagemaker_tree.base)
    assert env.base_dir == sagemaker_tree.base
    assert env.channels == {"cfg": sagemaker_tree.data / "cfg", "face_imgs": sagemaker_tree.images}
    assert env.hyperparameters == {"weights": "none", "seed": "0", "image_size": "128"}
    assert env.current_host == "algo-1"
    assert env.hosts == ("algo-1",)
    assert env.is_master
    assert env.model_dir == sagemaker_tree.model
    assert env.failure_file == sagemaker_tree.failure_file


def test_base_dir_comes_from_the_environment(sagemaker_tree, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(sagemaker_tree.base))
    assert load_environment().base_dir == sagemaker_tree.base


def test_without_inputdataconfig_the_folders_are_the_channels(sagemaker_tree):
    (sagemaker_tree.config / "inputdataconfig.json").unlink()
    sagemaker_tree.channel("cfg", declare=False)
    (sagemaker_tree.data / "stray.txt").write_text("x", encoding="utf-8")
    assert sorted(load_environment(sagemaker_tree.base).channels) == ["cfg", "face_imgs"]


def test_declared_channel_without_folder_is_a_contract_error(sagemaker_tree):
    sagemaker_tree.channel("cfg")
    (sagemaker_tree.data / "cfg").rmdir()
    with pytest.raises(ContractError) as error:
        load_environment(sagemaker_tree.base)
    assert "channel 'cfg' is declared in inputdataconfig.json" in str(error.value)
    assert str(sagemaker_tree.data / "cfg") in str(error.value)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("hyperparameters.json", "{broken", "hyperparameters.json is not valid JSON"),
        ("hyperparameters.json", "[1, 2]", "hyperparameters.json must hold an object"),
        ("inputdataconfig.json", '["face_imgs"]', "inputdataconfig.json must hold an object"),
        ("resourceconfig.json", '"algo-1"', "resourceconfig.json must hold an object"),
    ],
)
def test_malformed_config_files(sagemaker_tree, name, content, words):
    (sagemaker_tree.config / name).write_text(content, encoding="utf-8")
    with pytest.raises(ContractError, match=words):
        load_environment(sagemaker_tree.base)


def test_second_host_is_not_master(sagemaker_tree):
    (sagemaker_tree.config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}), encoding="utf-8"
    )
    env = load_environment(sagemaker_tree.base)
    assert env.hosts == ("algo-1", "algo-2")
    assert not env.is_master


def test_missing_config_files_have_defaults(tmp_path):
    env = load_environment(tmp_path)
    assert env.hyperparameters == {}
    assert env.channels == {}
    assert env.current_host == "algo-1"
    assert env.is_master


def test_write_tree_lays_out_what_load_environment_reads(tmp_path):
    from facetrain.sagemaker_env import OptMl, channel_config, load_environment, write_tree

    tree = write_tree(
        tmp_path,
        {"seed": "1"},
        {"face_imgs": channel_config(distribution="ShardedByS3Key")},
        "algo-2",
        ("algo-1", "algo-2"),
    )
    assert tree == OptMl(tmp_path) and tree.model_dir.is_dir() and (tree.output_dir / "data").is_dir()
    env = load_environment(tmp_path)
    assert env.hyperparameters == {"seed": "1"}
    assert env.channels == {"face_imgs": tmp_path / "input" / "data" / "face_imgs"}
    assert (env.current_host, env.hosts, env.is_master) == ("algo-2", ("algo-1", "algo-2"), False)
    assert env.model_dir == tree.model_dir and env.failure_file == tmp_path / "output" / "failure"


# ---- unknown channels: a misspelled channel is refused, naming the closest known one -----------------


def misspellings(channel: str) -> list[str]:
    """Typos a person makes of a channel name: a plural, a letter dropped, capitals, '-' for '_'."""
    variants = [channel + "s", channel[:-1], channel.upper(), channel.capitalize(), channel.replace("_", "-")]
    return sorted({variant for variant in variants if variant != channel})


MISSPELT = [(typo, channel) for channel in KNOWN_CHANNELS for typo in misspellings(channel)]


@pytest.mark.parametrize(("typo", "meant"), MISSPELT)
def test_a_misspelt_declared_channel_is_refused_with_the_name_it_meant(sagemaker_tree, typo, meant):
    sagemaker_tree.channel(typo)
    with pytest.raises(ContractError) as error:
        load_environment(sagemaker_tree.base)
    message = str(error.value)
    assert message.startswith(
        f"Unknown input channel '{typo}' (did you mean '{meant}'?) in inputdataconfig.json"
    )
    assert f"the job reads only the channels {', '.join(KNOWN_CHANNELS)}" in message
    assert "InputDataConfig" in message


@pytest.mark.parametrize(("typo", "meant"), MISSPELT[::3])
def test_a_misspelt_channel_folder_of_a_tree_without_inputdataconfig_is_refused(sagemaker_tree, typo, meant):
    sagemaker_tree.config.joinpath("inputdataconfig.json").unlink()
    sagemaker_tree.channel(typo, declare=False)
    (sagemaker_tree.data / ".ipynb_checkpoints").mkdir()  # hidden folders are no channels
    with pytest.raises(ContractError) as error:
        load_environment(sagemaker_tree.base)
    assert f"Unknown input channel '{typo}' (did you mean '{meant}'?)" in str(error.value)
    assert "rename or remove the folder" in str(error.value)


def test_every_unknown_channel_is_named_and_an_unlike_name_gets_no_guess(sagemaker_tree):
    for name in ("train", "cfgs", "validation"):
        sagemaker_tree.channel(name)
    with pytest.raises(ContractError) as error:
        load_environment(sagemaker_tree.base)
    assert "Unknown input channel 'cfgs' (did you mean 'cfg'?), 'train', 'validation' in" in str(error.value)


def test_the_known_channels_are_accepted(sagemaker_tree):
    for name in KNOWN_CHANNELS:
        sagemaker_tree.channel(name)
    assert sorted(load_environment(sagemaker_tree.base).channels) == sorted(KNOWN_CHANNELS)


# ---- resourceconfig.json that does not place this host among the hosts ------------------------------


def broken_resources(hosts: list[str]) -> dict[str, tuple[object, object, str]]:
    """name → (current_host, hosts, words of the refusal), derived from a good host list."""
    first, *_ = hosts
    return {
        "current host not among hosts": (f"algo-{len(hosts) + 1}", hosts, "is not among hosts"),
        "current host in other case": (first.upper(), hosts, "is not among hosts"),
        "current host with a space": (first + " ", hosts, "is not among hosts"),
        "hosts a string": (first, first, "hosts must be a non-empty list of host names"),
        "hosts empty": (first, [], "hosts must be a non-empty list of host names"),
        "hosts with a number": (first, [*hosts, 3], "hosts must be a non-empty list of host names"),
        "hosts twice": (first, [*hosts, first], "names a host twice"),
        "current host a number": (1, hosts, "current_host must be this host's name"),
        "current host empty": ("", hosts, "current_host must be this host's name"),
    }


@pytest.mark.parametrize("case", sorted(broken_resources(["algo-1", "algo-2"])))
def test_a_resourceconfig_that_does_not_place_this_host_is_refused_naming_file_and_field(
    sagemaker_tree, case
):
    current, hosts, words = broken_resources(["algo-1", "algo-2"])[case]
    path = sagemaker_tree.config / "resourceconfig.json"
    path.write_text(json.dumps({"current_host": current, "hosts": hosts}), encoding="utf-8")
    with pytest.raises(ContractError) as error:
        load_environment(sagemaker_tree.base)
    message = str(error.value)
    assert message.startswith(f"resourceconfig.json ({path}): ")
    assert words in message
