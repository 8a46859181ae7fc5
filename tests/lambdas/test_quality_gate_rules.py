"""gate_problems: the quality gate's rules, without AWS."""

from __future__ import annotations

import pytest
from facetrain_lambdas.quality_gate import QualityGate, gate_problems
from pydantic import ValidationError


def test_no_gate_passes_anything() -> None:
    assert gate_problems(QualityGate(), None, None) == []


def test_minimum_accuracy() -> None:
    gate = QualityGate(min_identification_accuracy=0.9)
    assert gate_problems(gate, {"identification_accuracy": 0.9}, None) == []
    (problem,) = gate_problems(gate, {"identification_accuracy": 0.85}, None)
    assert "0.8500 is below min_identification_accuracy 0.9000" in problem


def test_drop_against_the_published_run() -> None:
    gate = QualityGate(max_accuracy_drop=0.02)
    assert gate_problems(gate, {"identification_accuracy": 0.95}, 0.96) == []
    assert gate_problems(gate, {"identification_accuracy": 0.95}, None) == []  # nothing published yet
    (problem,) = gate_problems(gate, {"identification_accuracy": 0.90}, 0.96)
    assert "dropped 0.0600" in problem


def test_an_unmeasurable_accuracy_fails_a_set_gate() -> None:
    (problem,) = gate_problems(
        QualityGate(min_identification_accuracy=0.5), {"identification_accuracy": None}, 1.0
    )
    assert "could not be measured" in problem


def test_bounds_are_checked() -> None:
    with pytest.raises(ValidationError):
        QualityGate(min_identification_accuracy=1.5)
