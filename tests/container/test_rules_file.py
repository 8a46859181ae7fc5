"""facetrain.contract.rules_file: rules.py is literal data plus fixed helpers; loading never executes it
(no torch)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
from facetrain.contract.decision import accepts, search
from facetrain.contract.rules_file import FORMAT, VERSION, RulesError, load_rules, render_rules

HOSTILE_NAMES = [
    'x"];import os;os.system("touch PWNED")#',
    "x'];import os;os.system('touch PWNED')#",
    '"""\nimport os\nos.system("touch PWNED")\n"""',
    "Zoë Ñúñez",
    "名前",
    'O\'Brien "Bob"',
    "Smith, John, Jr.",
    "back\\slash\\",
    "tab\tand\nnewline",
]


def rules(identities: list[str], not_for_production: bool = False) -> dict[str, object]:
    return {
        "metric": "euclidean",
        "accept_threshold": 1.1,
        "embedding_dim": 512,
        "identities": identities,
        "image_size": 160,
        "margin": 0,
        "weights": "none" if not_for_production else "vggface2",
        "weights_sha256": None,
        "not_for_production": not_for_production,
        "dataset_fingerprint": "0" * 64,
        "created_at": "2026-01-01T00:00:00+00:00",
    }


def run_module(path, cwd):
    """Import rules.py for real in a fresh interpreter (cwd = tmp) and print its identities."""
    code = textwrap.dedent(
        """\
        import importlib.util, json, sys
        spec = importlib.util.spec_from_file_location("rules", sys.argv[1])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        a, b = [0.0] * 512, [0.0] * 511 + [1.0]
        print(json.dumps({"identities": module.RULES["identities"], "d": module.distance(a, b),
                          "accept": module.accept(module.distance(a, b))}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=cwd, capture_output=True, text=True, check=True
    )
    return result.stdout


@pytest.mark.parametrize("not_for_production", [False, True])
def test_render_load_round_trip(not_for_production):
    data = rules(["alice", "bob"], not_for_production)
    text = render_rules(data)
    loaded = load_rules(text)
    assert loaded == {"format": FORMAT, "version": VERSION, **data}
    assert ("NOT FOR PRODUCTION" in text) is not_for_production


def test_hostile_names_stay_data(tmp_path):
    text = render_rules(rules(HOSTILE_NAMES, True))
    assert load_rules(text)["identities"] == HOSTILE_NAMES
    path = tmp_path / "rules.py"
    path.write_text(text, encoding="utf-8")
    result = json.loads(run_module(path, tmp_path))
    assert result["identities"] == HOSTILE_NAMES
    assert result["d"] == pytest.approx(1.0)
    assert result["accept"] is True  # 1.0 <= 1.1
    assert not (tmp_path / "PWNED").exists()
    assert {p.name for p in tmp_path.iterdir()} <= {"rules.py", "__pycache__"}


def test_extra_import_is_refused():
    text = render_rules(rules(["alice"]))
    with pytest.raises(RulesError, match="statements other than RULES"):
        load_rules(text + "\nimport os\nos.system('touch PWNED')\n")


def test_statement_before_rules_is_refused():
    text = render_rules(rules(["alice"]))
    tampered = text.replace("RULES = {", "import os\nRULES = {", 1)
    with pytest.raises(RulesError, match="must start with `RULES"):
        load_rules(tampered)


def test_changed_helper_is_refused():
    text = render_rules(rules(["alice"]))
    tampered = text.replace('return dist <= RULES["accept_threshold"]', "return True")
    assert tampered != text
    with pytest.raises(RulesError, match="statements other than RULES"):
        load_rules(tampered)


def test_helper_with_side_effect_is_refused():
    text = render_rules(rules(["alice"]))
    tampered = text.replace(
        "def accept(dist):", "def accept(dist, _=__import__('os').system('touch PWNED')):"
    )
    with pytest.raises(RulesError):
        load_rules(tampered)


def test_non_literal_rules_are_refused():
    text = render_rules(rules(["alice"]))
    tampered = text.replace("'metric': 'euclidean'", "'metric': __import__('os').getcwd()")
    assert tampered != text
    with pytest.raises(RulesError, match="not a literal"):
        load_rules(tampered)


def test_missing_key_and_wrong_format_are_refused():
    text = render_rules(rules(["alice"]))
    with pytest.raises(RulesError, match="lacks accept_threshold"):
        load_rules(text.replace("'accept_threshold': 1.1,", ""))
    with pytest.raises(RulesError, match=r"not a facetrain\.rules mapping"):
        load_rules(text.replace("'facetrain.rules'", "'other'"))
    with pytest.raises(RulesError, match="not valid Python"):
        load_rules(text + "\n)(\n")
    with pytest.raises(RulesError, match="holds no RULES"):
        load_rules('"""only a docstring"""\n')


def test_render_refuses_non_plain_data_and_missing_keys():
    with pytest.raises(RulesError, match="not plain data"):
        render_rules({**rules(["alice"]), "identities": {"alice"}})
    with pytest.raises(RulesError, match="non-finite"):
        render_rules({**rules(["alice"]), "accept_threshold": float("nan")})
    incomplete = rules(["alice"])
    del incomplete["created_at"]
    with pytest.raises(RulesError, match="lack created_at"):
        render_rules(incomplete)


@pytest.mark.parametrize(
    "value", ["1e999", "-1e999", "'abc'", "None", "True", "2.0001", "0", "-0.5", "[1.0]"]
)
def test_every_reader_refuses_an_unsound_accept_threshold(value):
    """identify and publish read rules.py through load_rules: a threshold that would accept anyone (or
    crash the comparison) is refused there, whoever wrote the file."""
    text = render_rules(rules(["alice"])).replace("'accept_threshold': 1.1,", f"'accept_threshold': {value},")
    with pytest.raises(RulesError, match="accept_threshold"):
        load_rules(text)


def test_a_sound_threshold_at_the_edge_is_kept():
    text = render_rules({**rules(["alice"]), "accept_threshold": 2.0})
    assert load_rules(text)["accept_threshold"] == 2.0
    with pytest.raises(RulesError, match="outside"):
        render_rules({**rules(["alice"]), "accept_threshold": 3.0})


def _shipped_accept(threshold: float):
    """rules.py's own `accept`, as a consumer importing the file runs it (our own text: exec'd here)."""
    namespace: dict[str, object] = {}
    text = render_rules({**rules(["alice"]), "accept_threshold": threshold})
    exec(compile(text, "rules.py", "exec"), namespace)
    return namespace["accept"]


@pytest.mark.parametrize("threshold", [0.3604, 0.39, 0.6, 1.1, 2.0**0.5, 2.0])
def test_the_shipped_accept_is_the_decision_rule_at_its_boundary(threshold):
    """rules.py's `accept(dist)`, contract/decision.py's `accepts` and `search` (identify, the evaluation)
    are one rule: `dist <= threshold`, the threshold itself accepted, the next float above it refused."""
    accept = _shipped_accept(threshold)
    below, above = math.nextafter(threshold, 0.0), math.nextafter(threshold, math.inf)
    cases = {
        0.0: True,
        threshold / 2: True,
        below: True,
        threshold: True,
        above: False,
        2.0: threshold == 2.0,
    }
    for distance, expected in cases.items():
        assert accept(distance) is expected, (threshold, distance)
        assert accepts(distance, threshold) is expected, (threshold, distance)
        assert search([distance], threshold).accepted is expected, (threshold, distance)
        found = search([distance + 0.25, distance], threshold)  # the nearest is the second identity
        assert (found.nearest, found.accepted) == (1, expected)
        assert found.margin == pytest.approx(0.25)


@pytest.mark.parametrize("version", [1, 3, "2"])
def test_a_rules_py_of_another_version_is_refused_naming_it(version):
    """Version 1 (pprint's layout) was written by an earlier facetrain: retrain; another is unknown."""
    text = render_rules(rules(["alice"])).replace(f"'version': {VERSION},", f"'version': {version!r},")
    with pytest.raises(RulesError, match="version") as refused:
        load_rules(text)
    assert ("earlier facetrain" in str(refused.value)) is (version == 1)
