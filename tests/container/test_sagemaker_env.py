"""facetrain.sagemaker_env: the /opt/ml contract (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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
