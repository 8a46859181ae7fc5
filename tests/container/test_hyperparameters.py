"""facetrain.contract.hyperparameters: SageMaker string decoding, validation, error messages (no torch)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import facetrain.contract
import pytest
from facetrain.contract.hyperparameters import (
    VALID_KEYS,
    Hyperparameters,
    SettingsError,
    decode_sagemaker_value,
    parse_settings,
    to_sagemaker_strings,
)


def settings(**values: str) -> Hyperparameters:
    return parse_settings([("hyperparameters", values)])


def test_torch_free_modules_do_not_import_torch():
    """The validate Lambda imports the contract without torch: importing it (every module of the package)
    and the job's torch-free readers must not pull torch in."""
    contract = [
        f"facetrain.contract.{module.name}" for module in pkgutil.iter_modules(facetrain.contract.__path__)
    ]
    assert {"facetrain.contract.hyperparameters", "facetrain.contract.enrollment_csv"} <= set(contract)
    code = (
        "import sys, importlib\n"
        f"for name in {contract!r}: importlib.import_module(name)\n"
        "import facetrain.sagemaker_env, facetrain.photos\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.5", 0.5),
        ("160", 160),
        ("[0.5,0.6,0.7]", [0.5, 0.6, 0.7]),
        ("vggface2", "vggface2"),
        ("none", "none"),
        ('"quoted"', "quoted"),
        ("true", True),
        ("models/custom.pt", "models/custom.pt"),
        (3, 3),
    ],
)
def test_decode_sagemaker_value_is_json_else_string(raw, expected):
    assert decode_sagemaker_value(raw) == expected


def test_defaults_are_production_settings():
    defaults = parse_settings([])
    assert defaults.weights == "vggface2"
    assert defaults.not_for_production is False
    assert defaults.image_size == 160
    assert defaults.detection_thresholds == (0.6, 0.7, 0.7)


def test_strings_are_decoded_to_typed_settings():
    parsed = settings(
        weights="none",
        image_size="128",
        detection_thresholds="[0.5,0.6,0.7]",
        accept_threshold="0.9",
        face_selection="most_probable",
        seed="42",
    )
    assert parsed.weights == "none"
    assert parsed.not_for_production is True
    assert parsed.image_size == 128
    assert parsed.detection_thresholds == (0.5, 0.6, 0.7)
    assert parsed.accept_threshold == pytest.approx(0.9)
    assert parsed.face_selection == "most_probable"
    assert parsed.seed == 42


def test_later_layers_win_and_errors_name_their_origin():
    parsed = parse_settings(
        [("cfg/constants.py", {"margin": 10, "image_size": 128}), ("hyperparameters", {"margin": "4"})]
    )
    assert parsed.margin == 4
    assert parsed.image_size == 128
    with pytest.raises(SettingsError) as error:
        parse_settings([("cfg/settings.yaml", {"image_size": 9999}), ("hyperparameters", {"seed": "1"})])
    assert "'image_size' (from cfg/settings.yaml)" in str(error.value)


def test_unknown_key_is_named_and_valid_keys_are_listed():
    with pytest.raises(SettingsError) as error:
        settings(weights="none", learning_rate="0.1")
    message = str(error.value)
    assert "unknown key 'learning_rate'" in message
    assert "Valid keys: " + ", ".join(VALID_KEYS) + "." in message
    for key in ("weights", "image_size", "face_selection", "min_images_per_identity", "seed"):
        assert key in VALID_KEYS


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as error:
        settings(image_size="abc", face_selection="all", bogus="1")
    assert len(error.value.problems) == 3
    message = str(error.value)
    assert "'image_size'" in message
    assert "'abc'" in message
    assert "'face_selection'" in message
    assert "unknown key 'bogus'" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("image_size", "abc"),
        ("image_size", "32"),
        ("detection_thresholds", "[0.5,0.6]"),
        ("detection_thresholds", "[0.5,0.6,1.0]"),
        ("device", "tpu"),
        ("min_images_per_identity", "0"),
        ("max_image_pixels", "100"),
        ("seed", "-1"),
        ("accept_threshold", "0"),
    ],
)
def test_invalid_values_are_refused_naming_the_key(key, value):
    with pytest.raises(SettingsError) as error:
        settings(**{key: value})
    assert f"'{key}'" in str(error.value)


@pytest.mark.parametrize(
    "weights", ["vggface2", "casia-webface", "none", "custom.pt", "sub/dir/w.pth", "/opt/w.pt"]
)
def test_weights_accepts_names_and_pt_paths(weights):
    assert settings(weights=weights).weights == weights


@pytest.mark.parametrize(
    "weights",
    ["../secret.pt", "a/../../b.pt", "/opt/../etc/w.pt", "vgg", "weights.bin", "w.pt; rm -rf /", "w .pt"],
)
def test_weights_refuses_parent_paths_and_other_values(weights):
    with pytest.raises(SettingsError) as error:
        settings(weights=weights)
    assert "'weights'" in str(error.value)
    if ".." in weights:
        assert "'..'" in str(error.value)


def test_settings_are_frozen():
    parsed = settings(weights="none")
    with pytest.raises(ValueError, match="frozen"):
        parsed.seed = 3  # type: ignore[misc]


def test_to_sagemaker_strings_round_trips():
    values = {
        "weights": "none",
        "image_size": 128,
        "detection_thresholds": [0.5, 0.6, 0.7],
        "accept_threshold": 0.9,
    }
    encoded = to_sagemaker_strings(values)
    assert all(isinstance(value, str) for value in encoded.values())
    assert encoded["detection_thresholds"] == "[0.5, 0.6, 0.7]"
    parsed = settings(**encoded)
    assert parsed.image_size == 128
    assert parsed.detection_thresholds == (0.5, 0.6, 0.7)
    assert parsed.accept_threshold == pytest.approx(0.9)


def test_embedder_defaults_its_weights_and_fallback_threshold():
    # behaviour changed (issue 24): accept_threshold left out is None ("calibrate"), so an explicit value is
    # told apart from the embedder's fallback, which is now `fallback_threshold` (re-derived: 0.96 / 0.34)
    facenet, dlib_resnet = settings(), settings(embedder="dlib-resnet")
    assert (facenet.embedder, facenet.weights, facenet.accept_threshold) == ("facenet", "vggface2", None)
    assert (dlib_resnet.weights, dlib_resnet.accept_threshold, dlib_resnet.jitter) == (
        "dlib-resnet-v1",
        None,
        0,
    )
    assert (facenet.fallback_threshold, dlib_resnet.fallback_threshold) == (0.96, 0.34)
    assert settings(embedder="dlib-resnet", accept_threshold="0.5", jitter="3").accept_threshold == 0.5
    # a dumped settings document reads back to the same settings (identify does this)
    assert settings(**dlib_resnet.model_dump(mode="json")) == dlib_resnet


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"embedder": "dlib-resnet", "weights": "none"}, "weights='none' is for embedder=facenet"),
        (
            {"embedder": "dlib-resnet", "weights": "vggface2"},
            "embedder=dlib-resnet uses weights='dlib-resnet-v1'",
        ),
        ({"weights": "dlib-resnet-v1"}, "weights='dlib-resnet-v1' needs embedder=dlib-resnet"),
        ({"jitter": "2"}, "jitter applies to embedder=dlib-resnet only"),
        (
            {"embedder": "arcface"},
            "'embedder' (from hyperparameters): Input should be 'facenet' or 'dlib-resnet'",
        ),
        ({"embedder": "dlib-resnet", "jitter": "101"}, "'jitter'"),
    ],
)
def test_embedder_combinations_that_cannot_work_are_refused_with_the_fix(values, expected):
    with pytest.raises(SettingsError) as error:
        settings(**values)
    assert expected in str(error.value)
    assert "Valid keys: embedder, weights" in str(error.value)


# ---- a boolean is no number, however it arrives ------------------------------------------------------


def numeric_keys() -> list[str]:
    """The settings that take numbers: those whose default is a number or a tuple of numbers, and
    accept_threshold (a number or left out)."""
    defaults = Hyperparameters().model_dump()
    numeric = [
        key
        for key, value in defaults.items()
        if not isinstance(value, (bool, str))
        and (isinstance(value, (int, float)) or (isinstance(value, tuple) and value))
    ]
    return [*numeric, "accept_threshold"]


def boolean_like(key: str, value: object) -> object:
    """The boolean in the shape the key takes: a list for the thresholds, the value itself otherwise."""
    default = Hyperparameters().model_dump()[key]
    return [0.6, value, 0.7] if isinstance(default, tuple) else value


# Every spelling that reaches the settings as a boolean: JSON, Python, and YAML 1.1's (PyYAML's SafeLoader).
YAML_BOOLEANS = ["true", "True", "TRUE", "false", "False", "yes", "Yes", "no", "NO", "on", "On", "off", "OFF"]


def boolean_routes(tmp_path, key: str) -> dict[str, list[tuple[str, dict[str, object]]]]:
    """route → settings layers holding `key` as a boolean, written and read the way the job reads them."""
    from facetrain.contract.config_files import read_config_dir

    routes: dict[str, list[tuple[str, dict[str, object]]]] = {
        "hyperparameter string true": [("hyperparameters", {key: json.dumps(boolean_like(key, True))})],
        "hyperparameter string false": [("hyperparameters", {key: json.dumps(boolean_like(key, False))})],
        "request JSON boolean": [("hyperparameters", {key: boolean_like(key, True)})],
    }
    files = {
        "constants.py True": ("constants.py", f"{key.upper()} = {boolean_like(key, True)!r}\n"),
        "constants.py False": ("constants.py", f"{key.upper()} = {boolean_like(key, False)!r}\n"),
        "JSON file": ("settings.json", json.dumps({key: boolean_like(key, False)})),
    }
    for spelling in YAML_BOOLEANS:
        text = f"{key}: {spelling}\n" if key != "detection_thresholds" else f"{key}: [0.6, {spelling}, 0.7]\n"
        files[f"YAML {spelling}"] = ("settings.yaml", text)
    for route, (name, text) in files.items():
        folder = tmp_path / route.replace(" ", "_")
        folder.mkdir()
        (folder / name).write_text(text, encoding="utf-8")
        routes[route] = read_config_dir(folder)
    return routes


@pytest.mark.parametrize("key", numeric_keys())
def test_a_boolean_for_a_number_is_refused_naming_key_and_origin_by_every_route(tmp_path, key):
    routes = boolean_routes(tmp_path, key)
    assert len(routes) == 6 + len(YAML_BOOLEANS)
    for route, layers in routes.items():
        with pytest.raises(SettingsError) as error:
            parse_settings(layers)
        message = str(error.value)
        origin = layers[0][0]
        assert f"'{key}' (from {origin}): must be a number, not a boolean" in message, (route, message)
        assert len(error.value.problems) == 1, (route, message)


@pytest.mark.parametrize("key", ["batch_size", "seed", "target_fpir", "detection_thresholds"])
def test_numbers_and_strings_that_only_look_boolean_are_not_taken_for_one(key, tmp_path):
    # YAML's y/n are strings (PyYAML resolves y and n as plain strings): refused as not a number, not as 1/0
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "settings.yaml").write_text(f"{key}: y\n", encoding="utf-8")
    from facetrain.contract.config_files import read_config_dir

    with pytest.raises(SettingsError) as error:
        parse_settings(read_config_dir(folder))
    assert f"'{key}' (from cfg/settings.yaml)" in str(error.value)
    assert "(got 'y')" in str(error.value)
    # and 1 / 0.5 / [0.6, 0.7, 0.8] as numbers still pass
    good = {"batch_size": 1, "seed": 0, "target_fpir": 0.05, "detection_thresholds": [0.6, 0.7, 0.8]}[key]
    assert parse_settings([("hyperparameters", {key: json.dumps(good)})]).model_dump()[key] == (
        tuple(good) if isinstance(good, list) else good
    )
