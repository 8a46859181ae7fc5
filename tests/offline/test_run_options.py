"""`facetrain run`'s quality-gate options become the console input's `quality_gate`, as documented."""

from __future__ import annotations

from pathlib import Path

from facetrain_lambdas.run_request import ConsoleInput
from facetrain_offline.cli import main
from facetrain_offline.run_options import RunOptions, console_input


def _options(**gate: float) -> RunOptions:
    return RunOptions(images_dir=Path("photos"), out_dir=Path("out"), **gate)


def test_gate_options_become_the_console_inputs_quality_gate() -> None:
    assert "quality_gate" not in console_input(_options(), {})
    both = console_input(_options(min_accuracy=0.9, max_fpir=0.01), {})
    assert both["quality_gate"] == {"min_identification_accuracy": 0.9, "max_fpir": 0.01}
    only = console_input(_options(max_fpir=0.05), {"embedder": "dlib-resnet"})
    assert only["quality_gate"] == {"max_fpir": 0.05}
    gate = ConsoleInput.model_validate(only).quality_gate  # what the validate Lambda accepts
    assert gate is not None and gate.max_fpir == 0.05 and gate.min_identification_accuracy is None


def test_max_fpir_is_refused_with_the_upload_trigger(tmp_path, capsys) -> None:
    code = main(
        ["run", str(tmp_path), "--out", str(tmp_path / "out"), "--trigger", "upload", "--max-fpir", "0.1"]
    )
    assert code == 2
    assert "--max-fpir is part of the console input" in capsys.readouterr().err


def test_options_given_reach_the_console_input_even_when_falsy() -> None:
    """0 and '' are values to check, not "not given": validate refuses them instead of using defaults."""
    payload = console_input(RunOptions(images_dir=Path("p"), out_dir=Path("o"), instance_count=0), {})
    assert payload["instance_count"] == 0
    assert ConsoleInput.model_json_schema()["properties"]["instance_count"]["anyOf"][0]["minimum"] == 1
    blank = RunOptions(images_dir=Path("p"), out_dir=Path("o"), run_id="", instance_type="")
    empty = console_input(blank, {})
    assert empty["run_id"] == "" and empty["instance_type"] == ""
    assert "instance_count" not in console_input(_options(), {})
