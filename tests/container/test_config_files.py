"""facetrain.contract.config_files: the cfg channel is read as data, never run (no torch)."""

from __future__ import annotations

import json
import textwrap

import pytest
from facetrain.contract.config_files import ConfigError, parse_constants, parse_data_file, read_config_dir


def test_constants_literals_docstring_and_comments():
    source = textwrap.dedent(
        '''\
        """Settings of the Lisbon office."""
        # comments are fine
        IMAGE_SIZE = 128
        DETECTION_THRESHOLDS = [0.5, 0.6, 0.7]
        FACE_SELECTION: str = "most_probable"
        WEIGHTS = "none"
        EXTRA = {"a": (1, 2), "b": None, "c": True}
        '''
    )
    assert parse_constants(source) == {
        "image_size": 128,
        "detection_thresholds": [0.5, 0.6, 0.7],
        "face_selection": "most_probable",
        "weights": "none",
        "extra": {"a": (1, 2), "b": None, "c": True},
    }


@pytest.mark.parametrize(
    ("source", "line", "words"),
    [
        ('import os\nos.system("touch PWNED")\n', 1, "Import"),
        ("IMAGE_SIZE = 128\nimport os\n", 2, "Import"),
        ('IMAGE_SIZE = 128\n\nos.system("touch PWNED")\n', 3, "Expr"),
        ('"""doc"""\nIMAGE_SIZE = __import__("os").system("touch PWNED")\n', 2, "not a literal"),
        ("def image_size():\n    return 128\n", 1, "FunctionDef"),
        ("class C:\n    pass\n", 1, "ClassDef"),
        ("IMAGE_SIZE = 64 * 2\n", 1, "not a literal"),
        ("IMAGE_SIZE = SEED = 1\n", 1, "Assign"),
        ("if True:\n    IMAGE_SIZE = 1\n", 1, "If"),
        ("IMAGE_SIZE = 128\nfrom os import system\n", 2, "ImportFrom"),
        ('IMAGE_SIZE = f"{1}"\n', 1, "not a literal"),
        ("IMAGE_SIZE = (\n", 1, "not valid Python syntax"),
        ("X = 1\n\nY = [x for x in range(3)]\n", 3, "not a literal"),
    ],
)
def test_code_is_refused_with_its_line(source, line, words):
    with pytest.raises(ConfigError) as error:
        parse_constants(source)
    message = str(error.value)
    assert message.startswith(f"constants.py line {line}:"), message
    assert words in message


def test_refusal_names_the_given_file():
    with pytest.raises(ConfigError, match=r"^cfg/constants\.py line 1:"):
        parse_constants("import os\n", filename="cfg/constants.py")


@pytest.mark.parametrize("source", ["X = {[1]: 2}\n", "X = {[]}\n"])
def test_unhashable_literal_is_a_config_error(source):
    with pytest.raises(ConfigError, match=r"constants\.py line 1"):
        parse_constants(source)


def test_yaml_and_json_files(tmp_path):
    (tmp_path / "a.yaml").write_text("margin: 10\ndetection_thresholds: [0.5, 0.6, 0.7]\n", encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps({"seed": 3}), encoding="utf-8")
    (tmp_path / "empty.yml").write_text("# nothing\n", encoding="utf-8")
    assert parse_data_file(tmp_path / "a.yaml") == {"margin": 10, "detection_thresholds": [0.5, 0.6, 0.7]}
    assert parse_data_file(tmp_path / "b.json") == {"seed": 3}
    assert parse_data_file(tmp_path / "empty.yml") == {}


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("bad.json", "{not json", "not valid JSON"),
        ("bad.yaml", "a: [1,\n", "not valid YAML"),
        ("list.yaml", "- 1\n- 2\n", "must hold a mapping"),
        ("python.yaml", "x: !!python/object/apply:os.system ['touch PWNED']\n", "not valid YAML"),
    ],
)
def test_bad_data_files(tmp_path, name, text, words):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        parse_data_file(tmp_path / name)
    assert str(error.value).startswith(name)
    assert words in str(error.value)
    assert not (tmp_path / "PWNED").exists()


def test_read_config_dir_layers_in_fixed_order(tmp_path):
    (tmp_path / "constants.py").write_text("IMAGE_SIZE = 128\n", encoding="utf-8")
    (tmp_path / "z.yaml").write_text("margin: 10\n", encoding="utf-8")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "a.json").write_text('{"seed": 5}', encoding="utf-8")
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    layers = read_config_dir(tmp_path)
    assert layers == [
        ("cfg/constants.py", {"image_size": 128}),
        ("cfg/nested/a.json", {"seed": 5}),
        ("cfg/z.yaml", {"margin": 10}),
    ]


def test_same_value_in_two_files_is_fine(tmp_path):
    (tmp_path / "constants.py").write_text("IMAGE_SIZE = 128\n", encoding="utf-8")
    (tmp_path / "settings.yaml").write_text("image_size: 128\n", encoding="utf-8")
    assert [values for _, values in read_config_dir(tmp_path)] == [{"image_size": 128}, {"image_size": 128}]


def test_conflicting_values_across_files_name_both(tmp_path):
    (tmp_path / "constants.py").write_text("IMAGE_SIZE = 128\n", encoding="utf-8")
    (tmp_path / "settings.yaml").write_text("image_size: 160\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        read_config_dir(tmp_path)
    message = str(error.value)
    assert "'image_size'" in message
    assert "cfg/constants.py" in message
    assert "cfg/settings.yaml" in message


@pytest.mark.parametrize(
    ("constants", "yaml_value"),
    [
        ("BATCH_SIZE = 1", "yes"),
        ("BATCH_SIZE = 0", "off"),
        ("BATCH_SIZE = True", "1"),
        ("SEED = [1]", "[true]"),
    ],
)
def test_a_boolean_and_a_number_in_two_files_are_a_conflict_not_the_same_value(
    tmp_path, constants, yaml_value
):
    # Python's True == 1 would let the boolean pass unseen whichever file's value is used.
    key = constants.split(" =")[0].lower()
    (tmp_path / "constants.py").write_text(constants + "\n", encoding="utf-8")
    (tmp_path / "settings.yaml").write_text(f"{key}: {yaml_value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        read_config_dir(tmp_path)
    assert f"'{key}' is set to different values in cfg/constants.py and cfg/settings.yaml" in str(error.value)
