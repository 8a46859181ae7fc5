"""Settings, channels, weights and failures of the job, run in-process through facetrain.train.main."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import numpy as np
import pytest
from facetrain.contract.hyperparameters import VALID_KEYS

KATE = "faces-small/kate_siegel/1.jpg"
VGGFACE2_FILE = "20180402-114759-vggface2.pt"


@pytest.fixture
def kate_tree(sagemaker_tree, shared_data):
    """A tree with one small photo (fast runs)."""
    sagemaker_tree.add_photo("kate", "1.jpg", shared_data / KATE)
    return sagemaker_tree


def assert_failed(tree, run, *words: str) -> str:
    assert run.rc == 1
    failure = tree.failure()
    assert failure is not None, "output/failure was not written"
    for word in words:
        assert word in failure, failure
    return failure


# ---- cfg channel -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "line", "words"),
    [
        ('import os; os.system("touch PWNED")\n', 1, "only `NAME = value`"),
        ('"""Office settings."""\nIMAGE_SIZE = __import__("os").system("touch PWNED")\n', 2, "not a literal"),
        ("MARGIN = 4\nexec(\"import os; os.system('touch PWNED')\")\n", 2, "only `NAME = value`"),
    ],
)
def test_cfg_constants_with_code_fail_and_never_run(
    kate_tree, run_job, assert_not_pwned, source, line, words
):
    (kate_tree.channel("cfg") / "constants.py").write_text(source, encoding="utf-8")
    run = run_job(kate_tree)
    failure = assert_failed(kate_tree, run, f"constants.py line {line}:", words)
    assert "never run" in failure
    assert kate_tree.model_files() == []
    assert_not_pwned(run.cwd, kate_tree.base)


def test_cfg_constants_with_unhashable_literal_name_file_and_line(kate_tree, run_job):
    (kate_tree.channel("cfg") / "constants.py").write_text("IMAGE_SIZE = {[1]: 2}\n", encoding="utf-8")
    failure = assert_failed(kate_tree, run_job(kate_tree))
    assert failure.startswith("constants.py line 1")


def test_cfg_values_apply_and_hyperparameters_win(kate_tree, run_job):
    cfg = kate_tree.channel("cfg")
    (cfg / "constants.py").write_text(
        '"""Office settings."""\nIMAGE_SIZE = 128\nMARGIN = 10\n', encoding="utf-8"
    )
    (cfg / "detection.yaml").write_text("detection_max_side: 640\nmin_face_size: 30\n", encoding="utf-8")
    (cfg / "rules.json").write_text('{"accept_threshold": 0.8}', encoding="utf-8")
    kate_tree.update_hyperparameters(margin="4")
    run = run_job(kate_tree)
    assert run.rc == 0, kate_tree.failure()
    used = kate_tree.metrics()["hyperparameters"]
    assert used["image_size"] == 128
    assert used["margin"] == 4  # hyperparameters.json wins over cfg/constants.py
    assert used["detection_max_side"] == 640
    assert used["min_face_size"] == 30
    assert used["accept_threshold"] == 0.8
    rules = kate_tree.rules()
    assert (rules["image_size"], rules["margin"], rules["accept_threshold"]) == (128, 4, 0.8)
    assert kate_tree.embeddings()["metadata"]["hyperparameters"]["image_size"] == 128


def test_cfg_conflict_fails_naming_both_files(kate_tree, run_job):
    cfg = kate_tree.channel("cfg")
    (cfg / "constants.py").write_text("IMAGE_SIZE = 128\n", encoding="utf-8")
    (cfg / "settings.yml").write_text("image_size: 96\n", encoding="utf-8")
    assert_failed(kate_tree, run_job(kate_tree), "'image_size'", "cfg/constants.py", "cfg/settings.yml")


def test_cfg_value_out_of_range_names_its_file(kate_tree, run_job):
    (kate_tree.channel("cfg") / "settings.yaml").write_text("image_size: 4096\n", encoding="utf-8")
    assert_failed(kate_tree, run_job(kate_tree), "'image_size' (from cfg/settings.yaml)")


# ---- hyperparameters ----------------------------------------------------------------------------------


def test_unknown_hyperparameter_fails_listing_valid_keys(kate_tree, run_job):
    kate_tree.update_hyperparameters(learning_rate="0.01")
    failure = assert_failed(kate_tree, run_job(kate_tree), "unknown key 'learning_rate'", "Valid keys:")
    for key in VALID_KEYS:
        assert key in failure
    assert kate_tree.model_files() == []


def test_invalid_hyperparameter_value_names_the_key(kate_tree, run_job):
    kate_tree.update_hyperparameters(image_size="abc")
    failure = assert_failed(kate_tree, run_job(kate_tree), "'image_size'", "'abc'")
    assert failure.startswith("Invalid settings:")


def test_arguments_other_than_train_are_refused(kate_tree, run_job, capsys):
    assert run_job(kate_tree, ["fit"]).rc == 2
    assert "train takes no arguments" in capsys.readouterr().err
    assert kate_tree.model_files() == []


def test_train_argument_is_accepted(kate_tree, run_job):
    assert run_job(kate_tree, ["train"]).rc == 0, kate_tree.failure()
    assert "final_mean_embeddings.csv" in kate_tree.model_files()


# ---- channels -----------------------------------------------------------------------------------------


def test_missing_face_imgs_channel_fails(sagemaker_tree_class, tmp_path, run_job):
    tree = sagemaker_tree_class(tmp_path / "opt_ml", images=False)
    tree.channel("cfg")
    failure = assert_failed(tree, run_job(tree), "No 'face_imgs' channel", "Channels given: cfg.")
    assert failure.startswith("No 'face_imgs' channel")


def test_declared_but_absent_channel_fails(kate_tree, run_job):
    kate_tree.channel("weights")
    (kate_tree.data / "weights").rmdir()
    assert_failed(kate_tree, run_job(kate_tree), "channel 'weights' is declared in inputdataconfig.json")


def test_channel_with_only_top_level_files_fails(sagemaker_tree, run_job):
    sagemaker_tree.add_photo("", "photo.jpg", b"x")
    assert_failed(sagemaker_tree, run_job(sagemaker_tree), "holds no photo", "photo.jpg")


def test_zero_usable_identities_fails_but_reports(sagemaker_tree, run_job, shared_data, forge):
    data = (shared_data / KATE).read_bytes()
    sagemaker_tree.add_photo("alice", "half.jpg", forge.truncated(data))
    sagemaker_tree.add_photo("bob", "notes.jpg", b"not a photo")
    failure = assert_failed(sagemaker_tree, run_job(sagemaker_tree))
    first_sentence = failure.split(":")[0]
    assert first_sentence == "No identity could be enrolled"
    assert "unreadable: 1" in failure
    assert "not_an_image: 1" in failure
    assert "rejected.csv" in failure
    assert sagemaker_tree.model_files() == ["metrics.json", "rejected.csv"]
    metrics = sagemaker_tree.metrics()
    assert metrics["status"] == "failed"
    assert metrics["identities"] == 0
    assert set(metrics["identities_excluded"]) == {"alice", "bob"}
    assert metrics["images_total"] == 2
    assert metrics["images_rejected"] == 2
    assert {row["photo"]: row["reason"] for row in sagemaker_tree.rejected()} == {
        "alice/half.jpg": "unreadable",
        "bob/notes.jpg": "not_an_image",
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_host_whose_master_never_answers_fails_clearly(
    sagemaker_tree_class, tmp_path, run_job, shared_data, monkeypatch
):
    # Two hosts declared, only algo-2 runs: it cannot meet algo-1, and says so within the rendezvous bound,
    # before it embeds anything (it used to embed its share, then wait up to the gather's 6 h).
    tree = sagemaker_tree_class(tmp_path / "opt_ml", hosts=("algo-1", "algo-2"), current_host="algo-2")
    tree.add_photo("kate", "1.jpg", shared_data / KATE)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "9")  # nothing listens there
    monkeypatch.setenv("FACETRAIN_RENDEZVOUS_TIMEOUT", "3")
    monkeypatch.setenv("FACETRAIN_GATHER_TIMEOUT", "90")  # the meeting must not wait this long
    started = time.monotonic()
    failure = assert_failed(tree, run_job(tree))
    assert time.monotonic() - started < 60
    assert failure.startswith(
        "host algo-2 could not reach the first host algo-1 at 127.0.0.1:9 within 3 s"
    ), failure
    assert "FACETRAIN_RENDEZVOUS_TIMEOUT" in failure and "MaxRuntime" in failure
    assert tree.model_files() == []  # only the master writes outputs


@pytest.mark.parametrize(
    ("hosts", "missing"),
    [
        (("algo-1", "algo-2"), "1 of the 2 hosts, which never arrived: algo-2;"),
        (("algo-1", "algo-2", "algo-3"), "2 of the 3 hosts, which never arrived: algo-2, algo-3;"),
    ],
)
def test_a_master_whose_hosts_never_come_names_them_within_the_rendezvous_bound(
    sagemaker_tree_class, tmp_path, run_job, shared_data, monkeypatch, hosts, missing
):
    tree = sagemaker_tree_class(tmp_path / "opt_ml", hosts=hosts, current_host="algo-1")
    tree.add_photo("kate", "1.jpg", shared_data / KATE)
    port = _free_port()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("FACETRAIN_RENDEZVOUS_TIMEOUT", "2")
    monkeypatch.setenv("FACETRAIN_GATHER_TIMEOUT", "90")
    started = time.monotonic()
    failure = assert_failed(tree, run_job(tree))
    assert time.monotonic() - started < 60
    assert failure.startswith(f"host algo-1 waited 2 s at 127.0.0.1:{port} for {missing}"), failure
    assert "This is a facetrain bug" not in failure
    assert tree.model_files() == []


@pytest.mark.parametrize("value", ["soon", "0", "-5", "inf", "nan"])
def test_a_wait_that_is_no_positive_number_of_seconds_is_named(
    sagemaker_tree_class, tmp_path, run_job, shared_data, monkeypatch, value
):
    tree = sagemaker_tree_class(tmp_path / "opt_ml", hosts=("algo-1", "algo-2"), current_host="algo-1")
    tree.add_photo("kate", "1.jpg", shared_data / KATE)
    monkeypatch.setenv("FACETRAIN_RENDEZVOUS_TIMEOUT", value)
    assert_failed(tree, run_job(tree), f"FACETRAIN_RENDEZVOUS_TIMEOUT={value!r} must be a positive number")


def test_unexpected_exception_is_reported_as_internal_error(kate_tree, run_job, monkeypatch):
    import facetrain.job

    def explode(env):
        raise KeyError("boom")

    monkeypatch.setattr(facetrain.job, "run_job", explode)  # train.main imports it when it runs
    failure = assert_failed(kate_tree, run_job(kate_tree))
    assert failure.startswith("Internal error (KeyError: 'boom')")
    assert "facetrain bug" in failure


def test_cuda_without_gpu_fails(kate_tree, run_job):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    kate_tree.update_hyperparameters(device="cuda")
    assert_failed(kate_tree, run_job(kate_tree), "device=cuda", "no CUDA GPU")


# ---- weights ------------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Record (and refuse) every attempt to open a network connection."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted by the test subject")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_named_weights_missing_fail_without_download(kate_tree, run_job, tmp_path, monkeypatch, no_network):
    torch_home = tmp_path / "empty_torch_home"
    torch_home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    kate_tree.update_hyperparameters(weights="vggface2")
    failure = assert_failed(kate_tree, run_job(kate_tree))
    assert failure.startswith(f"The vggface2 weights file {VGGFACE2_FILE} was not found")
    assert str(torch_home / "checkpoints" / VGGFACE2_FILE) in failure  # where it looked
    assert "does not download" in failure
    assert "'weights' channel" in failure  # how to provide them
    assert "TORCH_HOME" in failure
    assert no_network == []
    assert list(torch_home.iterdir()) == []
    assert kate_tree.model_files() == []


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """InceptionResnetV1 state dict of a seeded random init, with a classifier head like the real file."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(7)
    state = InceptionResnetV1(pretrained=None, classify=False).state_dict()
    state["logits.weight"] = torch.zeros(10, 512)
    state["logits.bias"] = torch.zeros(10)
    path = tmp_path_factory.mktemp("weights") / "seed7.pt"
    torch.save(state, path)
    return path


def test_weights_file_in_channel_is_used(kate_tree, run_job, weights_file, sagemaker_tree_class, tmp_path):
    (kate_tree.channel("weights") / "custom.pt").symlink_to(weights_file)
    kate_tree.update_hyperparameters(weights="custom.pt", seed="0")
    assert run_job(kate_tree).rc == 0, kate_tree.failure()
    metrics = kate_tree.metrics()
    assert metrics["weights"] == "custom.pt"
    assert metrics["weights_sha256"] == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert metrics["not_for_production"] is False

    # the file's weights are the seed-7 random init: the same embedding as weights=none seed=7
    reference = sagemaker_tree_class(tmp_path / "reference", {"weights": "none", "seed": "7"})
    reference.add_photo("kate", "1.jpg", kate_tree.images / "kate" / "1.jpg")
    assert run_job(reference).rc == 0, reference.failure()
    np.testing.assert_allclose(
        kate_tree.records()["kate/1.jpg"]["embedding"],
        reference.records()["kate/1.jpg"]["embedding"],
        atol=1e-6,
    )


def test_named_weights_from_channel_are_production_outputs(kate_tree, run_job, weights_file):
    (kate_tree.channel("weights") / VGGFACE2_FILE).symlink_to(weights_file)
    kate_tree.update_hyperparameters(weights="vggface2")
    assert run_job(kate_tree).rc == 0, kate_tree.failure()
    metrics = kate_tree.metrics()
    assert metrics["weights"] == "vggface2"
    assert metrics["weights_sha256"] == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert metrics["not_for_production"] is False
    assert metrics["warning"] is None
    assert not kate_tree.enrollment_text().startswith("#")
    assert "NOT FOR PRODUCTION" not in kate_tree.rules_text()
    assert kate_tree.rules()["not_for_production"] is False
    assert kate_tree.rules()["weights_sha256"] == metrics["weights_sha256"]
    assert kate_tree.rejected_text().startswith('"identity","photo","reason","message"')
    assert kate_tree.embeddings()["metadata"]["warning"] is None


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _bad_weights(kind: str, path) -> None:
    import torch

    if kind == "garbage":
        path.write_bytes(b"this is not a torch file")
    elif kind == "truncated":
        torch.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "exploit":
        torch.save({"w": _Exploit()}, path)
    elif kind == "list":
        torch.save([torch.zeros(3)], path)
    elif kind == "wrong_shapes":
        torch.save({"conv2d_1a.conv.weight": torch.zeros(2, 2)}, path)


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("garbage", "cannot be loaded as PyTorch weights"),
        ("truncated", "cannot be loaded as PyTorch weights"),
        ("exploit", "cannot be loaded as PyTorch weights"),
        ("list", "holds no state dict"),
        ("wrong_shapes", "does not fit InceptionResnetV1"),
    ],
)
def test_bad_weights_file_fails_clearly(kate_tree, run_job, assert_not_pwned, kind, words):
    _bad_weights(kind, kate_tree.channel("weights") / "bad.pt")
    kate_tree.update_hyperparameters(weights="bad.pt")
    run = run_job(kate_tree)
    failure = assert_failed(kate_tree, run, "weights file bad.pt", words)
    assert not failure.startswith("Internal error")
    assert kate_tree.model_files() == []
    assert_not_pwned(run.cwd, kate_tree.base)


def test_relative_weights_without_channel_fail(kate_tree, run_job):
    kate_tree.update_hyperparameters(weights="custom.pt")
    assert_failed(kate_tree, run_job(kate_tree), "no 'weights' channel")


def test_missing_weights_file_fails(kate_tree, run_job):
    kate_tree.channel("weights")
    kate_tree.update_hyperparameters(weights="missing.pt")
    assert_failed(kate_tree, run_job(kate_tree), "missing.pt does not exist")


# ---- request mistakes the job names (issue 25) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "meant"), [("cfgs", "cfg"), ("face_img", "face_imgs"), ("weight", "weights")]
)
def test_a_misspelt_channel_fails_the_job_with_the_name_it_meant(kate_tree, run_job, typo, meant):
    (kate_tree.channel(typo) / "constants.py").write_text("IMAGE_SIZE = 128\n", encoding="utf-8")
    failure = assert_failed(kate_tree, run_job(kate_tree))
    assert failure.startswith(f"Unknown input channel '{typo}' (did you mean '{meant}'?)"), failure
    assert kate_tree.model_files() == []


@pytest.mark.parametrize(
    ("current", "hosts"),
    [("algo-3", ["algo-1", "algo-2"]), ("ALGO-1", ["algo-1"]), ("algo-1", "algo-1"), ("algo-1", [])],
)
def test_a_resourceconfig_that_does_not_place_this_host_fails_as_bad_input(
    kate_tree, run_job, current, hosts
):
    kate_tree.tree.resourceconfig_file.write_text(
        json.dumps({"current_host": current, "hosts": hosts}), encoding="utf-8"
    )
    failure = assert_failed(kate_tree, run_job(kate_tree))
    assert failure.startswith(f"resourceconfig.json ({kate_tree.tree.resourceconfig_file}): "), failure
    assert "facetrain bug" not in failure
    assert kate_tree.model_files() == []


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("hyperparameters", "true"),
        ("settings.yaml", "batch_size: yes\n"),
        ("settings.yaml", "batch_size: On\n"),
        ("constants.py", "BATCH_SIZE = True\n"),
        ("rules.json", '{"batch_size": false}'),
    ],
)
def test_a_boolean_batch_size_fails_the_job_naming_key_and_origin(kate_tree, run_job, where, text):
    if where == "hyperparameters":
        kate_tree.update_hyperparameters(batch_size=text)
    else:
        (kate_tree.channel("cfg") / where).write_text(text, encoding="utf-8")
    origin = where if where == "hyperparameters" else f"cfg/{where}"
    assert_failed(
        kate_tree, run_job(kate_tree), f"'batch_size' (from {origin}): must be a number, not a boolean"
    )
    assert kate_tree.model_files() == []
