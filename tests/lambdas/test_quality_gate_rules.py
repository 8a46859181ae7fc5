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


def _open_set(errors: int, trials: int, upper: float | None) -> dict:
    """metrics.json's evaluation with an open-set part (as the job writes it, through the contract)."""
    from facetrain.contract.metrics import ErrorRate, OpenSetEvaluation

    fpir = ErrorRate(
        errors=errors,
        trials=trials,
        rate=errors / trials if trials else None,
        lower_95=0.0 if trials else None,
        upper_95=upper,
    )
    fnir = ErrorRate(errors=0, trials=24, rate=0.0, lower_95=0.0, upper_95=0.142)
    open_set = OpenSetEvaluation(
        gallery_size=4,
        target_fpir=0.01,
        fpir=fpir,
        fnir=fnir,
        known_strangers=None,
        smallest_supported_fpir=1 - 0.025 ** (1 / trials) if trials else None,
        nearest_non_mated_distance=0.42 if trials else None,
    )
    return {"identification_accuracy": 1.0, "threshold": 0.39, "open_set": open_set.model_dump()}


# 0 false positives in 72 searches: the exact two-sided 95 % bound is 1 - 0.025 ** (1 / 72) = 4.99 %.
NONE_IN_72 = _open_set(0, 72, 1 - 0.025 ** (1 / 72))


def test_max_fpir_passes_when_the_bound_is_within_it() -> None:
    assert gate_problems(QualityGate(max_fpir=0.05), NONE_IN_72, None) == []
    assert gate_problems(QualityGate(max_fpir=0.02), _open_set(3, 2000, 0.0044), None) == []


def test_max_fpir_checks_the_bound_not_the_rate() -> None:
    # The rate is 0, but 72 searches only vouch for an FPIR below 4.99 %: a 1 % limit is not shown.
    (problem,) = gate_problems(QualityGate(max_fpir=0.01), NONE_IN_72, None)
    assert "0 of 72 non-mated searches accepted someone at threshold 0.39 (FPIR 0.00%)" in problem
    assert "95 % upper bound 4.99% is above max_fpir 1.00%" in problem
    # 1 - 0.025 ** (1 / n) <= 0.01 needs n >= ln(0.025) / ln(0.99) = 367.04: 368 searches.
    assert "about 368 non-mated searches" in problem
    assert "_strangers/" in problem and "raise max_fpir" in problem
    assert "a stricter accept_threshold cannot lower" in problem


def test_max_fpir_with_false_positives_names_a_stricter_threshold() -> None:
    (problem,) = gate_problems(QualityGate(max_fpir=0.05), _open_set(6, 100, 0.126), None)
    assert "6 of 100 non-mated searches" in problem and "FPIR 6.00%" in problem
    assert "upper bound 12.60% is above max_fpir 5.00%" in problem
    assert "set a stricter (lower) accept_threshold" in problem and "raise max_fpir" in problem


def test_max_fpir_refuses_a_metrics_document_without_open_set() -> None:
    old_image = {"identification_accuracy": 1.0, "threshold": 0.39}
    for evaluation in (old_image, {**old_image, "open_set": None}, None):
        (problem,) = gate_problems(QualityGate(max_fpir=0.05), evaluation, None)
        assert "no open-set evaluation" in problem and "rebuild and redeploy the training image" in problem
        assert "remove max_fpir" in problem
    assert gate_problems(QualityGate(min_identification_accuracy=0.9), old_image, None) == []


def test_max_fpir_without_any_non_mated_search_is_refused() -> None:
    (problem,) = gate_problems(QualityGate(max_fpir=0.05), _open_set(0, 0, None), None)
    assert "no non-mated search" in problem and "_strangers/" in problem


def test_accuracy_and_fpir_problems_are_all_named() -> None:
    gate = QualityGate(min_identification_accuracy=0.99, max_fpir=0.01)
    problems = gate_problems(gate, {**NONE_IN_72, "identification_accuracy": 0.9}, None)
    assert len(problems) == 2 and "below min_identification_accuracy" in problems[0]
    assert "max_fpir" in problems[1]
    # An fpir-only gate does not need an accuracy.
    assert (
        gate_problems(QualityGate(max_fpir=0.05), {**NONE_IN_72, "identification_accuracy": None}, None) == []
    )


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5])
def test_max_fpir_bounds_are_checked(value: float) -> None:
    with pytest.raises(ValidationError):
        QualityGate(max_fpir=value)
    assert QualityGate(max_fpir=1.0).max_fpir == 1.0


def test_the_decision_records_the_bound_and_reads_decisions_written_before_it() -> None:
    from facetrain_lambdas.quality_gate import QualityGateDecision, fpir_upper_bound

    assert fpir_upper_bound(NONE_IN_72) == pytest.approx(0.0499, abs=1e-4)
    assert fpir_upper_bound({"identification_accuracy": 1.0}) is None and fpir_upper_bound(None) is None
    before = {  # a quality_gate.json (and latest.json's quality_gate) of a stack without max_fpir
        "format": "facetrain.quality-gate",
        "version": 1,
        "run_id": "old",
        "gate": {"min_identification_accuracy": 0.9, "max_accuracy_drop": None},
        "identification_accuracy": 0.95,
        "published_identification_accuracy": None,
        "passed": True,
        "problems": [],
    }
    decision = QualityGateDecision.model_validate(before)
    assert decision.fpir_upper_95 is None and decision.gate.max_fpir is None
