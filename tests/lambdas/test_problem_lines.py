"""InvalidInput's message: one problem per line, counted right; an unknown setting's line carries the
valid keys (its fix) instead of a line of its own (issue 27)."""

from __future__ import annotations

from facetrain.contract.hyperparameters import VALID_KEYS, SettingsError, parse_settings
from facetrain_lambdas.errors import InvalidInput
from facetrain_lambdas.run_settings import with_valid_keys


def test_one_problem_is_one_problem() -> None:
    assert str(InvalidInput(["photo.jpg is empty (0 bytes): upload the photo again"])) == (
        "The retraining input has 1 problem to fix:\n- photo.jpg is empty (0 bytes): upload the photo again"
    )


def test_problems_are_counted_with_the_warnings_apart() -> None:
    message = str(InvalidInput(["a: fix a", "b: fix b"], warnings=["c.txt: skipped"]))
    assert message == (
        "The retraining input has 2 problems to fix:\n- a: fix a\n- b: fix b\n"
        "Warnings, not errors (1):\n- c.txt: skipped"
    )


def test_settings_problems_keep_their_count_and_unknown_keys_name_the_valid_ones() -> None:
    try:
        parse_settings([("cfg/settings.yaml", {"batch_sise": 3}), ("hyperparameters", {"device": "tpu"})])
    except SettingsError as exc:
        problems = exc.problems
    lines = with_valid_keys(problems)
    assert len(lines) == len(problems) == 2
    [unknown] = [line for line in lines if line.startswith("unknown key")]
    [bad_value] = [line for line in lines if line.startswith("'device'")]
    assert (
        unknown
        == f"unknown key 'batch_sise' (from cfg/settings.yaml); valid setting keys: {', '.join(VALID_KEYS)}"
    )
    assert bad_value.startswith("'device' (from hyperparameters): ") and "valid setting keys" not in bad_value
    assert str(InvalidInput(lines)).startswith("The retraining input has 2 problems to fix:\n- ")
