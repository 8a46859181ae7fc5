"""The files each runtime needs, found (or made) before any photo is examined, with clear refusals.

runtime=onnx reads exported networks from the cache (FACETRAIN_ONNX_DIR) or the weights channel's onnx/
folder, exports them once where torch is installed, and names the fix where it is not (the image);
runtime=torch needs torch and facenet-pytorch.
"""

from __future__ import annotations

import shutil

import pytest
from facetrain.contract.hyperparameters import Hyperparameters
from facetrain.inference import onnx_files, runtimes
from facetrain.inference.model_files import RuntimeUnavailable, WeightsError, resolve_model
from facetrain.inference.onnx_files import onnx_files as find_onnx_files

SETTINGS = Hyperparameters(weights="none", seed=0)


def _roles(files) -> list[str]:
    return [f.role for f in files]


def test_a_missing_export_without_torch_names_the_fixes(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRAIN_ONNX_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(onnx_files, "can_export", lambda: False)  # as in the image: no torch to export with
    with pytest.raises(WeightsError) as refused:
        find_onnx_files(resolve_model(SETTINGS, None), 0, None)
    message = str(refused.value)
    assert message.startswith("runtime=onnx needs the ONNX export of mtcnn and facenet-random-seed0")
    assert str(tmp_path / "empty") in message
    assert "-m facetrain.inference.export --cache" in message and "--weights none --seed 0" in message
    assert "FACETRAIN_ONNX_DIR" in message and "'weights' channel under onnx/" in message
    assert "set runtime=torch where torch is installed" in message


def test_a_missing_export_is_made_once_where_torch_is(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FACETRAIN_ONNX_DIR", str(cache))
    model = resolve_model(SETTINGS.model_copy(update={"seed": 5}), None)

    files = find_onnx_files(model, 5, None)

    assert _roles(files) == ["pnet", "rnet", "onet", "facenet"]
    assert sorted(p.name for p in cache.iterdir()) == ["facenet-random-seed5", "mtcnn"]  # no staging left
    made = {f.path: f.path.stat().st_mtime_ns for f in files}
    again = find_onnx_files(model, 5, None)
    assert {f.path: f.path.stat().st_mtime_ns for f in again} == made  # found, not exported again
    # the export is deterministic: another cache gets MTCNN byte for byte the same
    monkeypatch.setenv("FACETRAIN_ONNX_DIR", str(tmp_path / "other"))
    other = find_onnx_files(resolve_model(SETTINGS, None), 0, None)
    assert [(f.path.name, f.sha256) for f in other[:3]] == [(f.path.name, f.sha256) for f in files[:3]]


def test_the_weights_channel_onnx_folder_is_looked_in_first(tmp_path, monkeypatch):
    channel = tmp_path / "weights"
    home = tmp_path / "home"
    monkeypatch.setenv("FACETRAIN_ONNX_DIR", str(home))
    find_onnx_files(resolve_model(SETTINGS, None), 0, None)  # the cache holds seed 0's export
    shutil.copytree(home, channel / "onnx")  # a channel bringing its own exports: it wins over the cache

    files = find_onnx_files(resolve_model(SETTINGS, channel), 0, channel)

    assert all(f.path.is_relative_to(channel / "onnx") for f in files)
    assert _roles(files) == ["pnet", "rnet", "onet", "facenet"]


def test_dlib_resnet_on_onnx_needs_only_mtcnn(tmp_path, monkeypatch):
    dlib = Hyperparameters(embedder="dlib-resnet")
    model = runtimes.resolve_models(dlib, None)
    assert [f.role for f in model.runtime_files] == ["pnet", "rnet", "onet"]
    assert set(model.digests) == {f.path.name for f in (*model.files, *model.runtime_files)}


def test_runtime_torch_without_torch_names_the_fix(monkeypatch):
    real = runtimes.importlib.util.find_spec
    monkeypatch.setattr(
        runtimes.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("torch", "facenet_pytorch") else real(name, *a),
    )
    with pytest.raises(RuntimeUnavailable) as refused:
        runtimes.resolve_models(SETTINGS.model_copy(update={"runtime": "torch"}), None)
    assert str(refused.value).startswith(
        "runtime=torch needs the Python packages torch and facenet-pytorch, which are not installed here"
    )
    assert "leave runtime out (onnx, the default)" in str(refused.value)
    # runtime=onnx still resolves without torch being found
    assert runtimes.resolve_models(SETTINGS, None).runtime_files


def test_runtime_torch_uses_no_onnx_files():
    model = runtimes.resolve_models(SETTINGS.model_copy(update={"runtime": "torch"}), None)
    assert model.runtime_files == () and model.digests == {}


def test_a_network_opened_in_the_background_runs_or_raises_what_opening_raised():
    import threading

    import numpy as np
    from facetrain.inference.onnx_models import NetworkOpening

    release = threading.Event()
    released = []

    def slow_opener():
        released.append(release.wait(5))  # False if the constructor waited for the opener
        return lambda batch: [batch * 2]

    opening = NetworkOpening(slow_opener)  # returns at once: the session is built on its own thread
    release.set()
    np.testing.assert_array_equal(opening(np.ones((1, 2), np.float32))[0], np.full((1, 2), 2, np.float32))
    assert released == [True]

    def broken_opener():
        raise WeightsError("ONNX Runtime cannot open inception.onnx (bad file); re-export them")

    with pytest.raises(WeightsError, match=r"cannot open inception\.onnx"):
        NetworkOpening(broken_opener)(np.ones((1, 2), np.float32))


def test_the_export_command_fills_the_cache_it_is_told_or_the_default(tmp_path, monkeypatch, capsys):
    from facetrain.inference.export import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACETRAIN_ONNX_DIR", str(tmp_path / "default"))
    assert main(["--cache", "--weights", "none", "--seed", "0"]) == 0  # no folder: FACETRAIN_ONNX_DIR
    assert sorted(p.name for p in (tmp_path / "default").iterdir()) == ["facenet-random-seed0", "mtcnn"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default"]  # nothing in the working folder
    assert main(["--cache", str(tmp_path / "given"), "--weights", "none"]) == 0
    assert (tmp_path / "given" / "mtcnn" / "manifest.json").is_file()
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "default" / "mtcnn"),
        str(tmp_path / "default" / "facenet-random-seed0"),
        str(tmp_path / "given" / "mtcnn"),
        str(tmp_path / "given" / "facenet-random-seed0"),
    ]


def test_a_weights_file_anywhere_is_exported_by_path(tmp_path, monkeypatch):
    """The job hands the exporter the very file it resolved (--weights-file), whatever its folder is called:
    a path the `weights` setting would refuse (a space, a '+') is no problem."""
    import torch
    from facetrain.inference.torch_runtime import load_facenet

    folder = tmp_path / "my weights+v2"
    folder.mkdir()
    weights = folder / "seed3.pt"
    torch.save(load_facenet(resolve_model(SETTINGS, None), 3, torch.device("cpu")).state_dict(), weights)
    monkeypatch.setenv("FACETRAIN_ONNX_DIR", str(tmp_path / "cache"))
    model = resolve_model(Hyperparameters(weights="seed3.pt"), folder)

    files = find_onnx_files(model, 0, None)

    assert files[-1].path.parent.name == f"facenet-{model.sha256[:16]}"


def test_an_export_that_no_longer_verifies_is_made_again_where_torch_is(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRAIN_ONNX_DIR", str(tmp_path / "cache"))
    model = resolve_model(SETTINGS, None)
    files = find_onnx_files(model, 0, None)
    pnet = files[0].path
    good = pnet.read_bytes()
    pnet.write_bytes(good[:-10])  # a changed file

    assert find_onnx_files(model, 0, None)[0].sha256 == files[0].sha256  # exported again, verified
    assert pnet.read_bytes() == good

    pnet.write_bytes(good[:-10])
    monkeypatch.setattr(onnx_files, "can_export", lambda: False)  # as in the image
    with pytest.raises(
        WeightsError, match=r"the pnet model .*pnet\.onnx is not the file manifest\.json records"
    ):
        find_onnx_files(model, 0, None)


def test_a_manifest_without_a_digest_is_refused_naming_it(tmp_path):
    import json

    from facetrain.inference.manifest import read_manifest

    (tmp_path / "pnet.onnx").write_bytes(b"x")
    (tmp_path / "manifest.json").write_text(json.dumps({"files": [{"role": "pnet", "name": "pnet.onnx"}]}))
    with pytest.raises(WeightsError, match="records no sha256 for the pnet model; re-export them"):
        read_manifest(tmp_path, ("pnet",))


def test_a_cache_folder_another_export_published_first_is_kept(tmp_path):
    """Two exports of one folder at once: the one that loses the rename returns the winner's folder and
    leaves no staging folder behind."""
    from facetrain.inference.export import publish_folder

    def write(staging):
        (staging / "pnet.onnx").write_bytes(b"mine")
        winner = tmp_path / "mtcnn"
        winner.mkdir()  # the other export renames its folder into place meanwhile
        (winner / "pnet.onnx").write_bytes(b"theirs")
        (winner / "manifest.json").write_text("{}")

    assert publish_folder(tmp_path, "mtcnn", ("pnet",), write) == tmp_path / "mtcnn"
    assert (tmp_path / "mtcnn" / "pnet.onnx").read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["mtcnn"]


def test_the_runtime_is_part_of_the_embedding_fingerprint_by_itself():
    from facetrain.job_metrics import PREPROCESSING_VERSION
    from facetrain.reuse import embedding_fingerprint

    same_files = {"inception.onnx": "a" * 64}
    onnx = embedding_fingerprint(SETTINGS, same_files, PREPROCESSING_VERSION)
    torch = embedding_fingerprint(
        SETTINGS.model_copy(update={"runtime": "torch"}), same_files, PREPROCESSING_VERSION
    )
    assert onnx != torch
