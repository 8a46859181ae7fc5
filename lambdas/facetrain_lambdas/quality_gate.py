"""The quality gate: the figures a run must reach before its results replace the published ones."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# What to do when metrics.json has no open-set evaluation: it was written by a training image older than
# max_fpir (issue 24), which measured per-pair rates only.
NO_OPEN_SET = (
    "the FPIR could not be checked against max_fpir: metrics.json has no open-set evaluation "
    "(evaluation.open_set), so the training image is older than max_fpir; rebuild and redeploy the training "
    "image with this stack (make image, then make deploy), or remove max_fpir from the quality_gate"
)


class QualityGate(BaseModel):
    """Part of the execution input (`quality_gate`); every bound optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_identification_accuracy: float | None = Field(
        None, ge=0.0, le=1.0, description="Leave-one-out identification accuracy the run must reach."
    )
    max_accuracy_drop: float | None = Field(
        None, ge=0.0, le=1.0, description="Largest accuracy drop allowed against the published run."
    )
    max_fpir: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Largest false-positive identification rate the run's data must vouch for: the 95 % "
        "upper bound of the FPIR at the published threshold (metrics.json open_set.fpir.upper_95).",
    )


class QualityGateDecision(BaseModel):
    """What the gate decided for a run: runs/<run id>/quality_gate.json, written by publish whether the run
    passed or not, and latest.json's `quality_gate` (the published run's decision).

    `fpir_upper_95` was added without a new version: it is optional, so the decisions written before it
    (inside every published latest.json) still read, as metrics.json's `open_set` does; a version 2 would
    have made each upgraded stack refuse its own latest.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["facetrain.quality-gate"] = "facetrain.quality-gate"
    version: Literal[1] = 1
    run_id: str
    gate: QualityGate
    identification_accuracy: float | None
    published_identification_accuracy: float | None  # of the run published before, if any
    # The run's FPIR 95 % upper bound at its threshold, the figure max_fpir is checked against (None when
    # metrics.json has no open-set evaluation or no non-mated search; absent in decisions written before it).
    fpir_upper_95: float | None = None
    passed: bool
    problems: list[str]  # why it did not pass (empty when it passed)


class QualityGateFailed(Exception):
    """The run's evaluation is below the gate; its files stay under runs/<run_id>/, nothing is published."""


def fpir_upper_bound(evaluation: dict[str, Any] | None) -> float | None:
    """The FPIR's 95 % upper bound at the run's threshold (None without an open-set evaluation)."""
    open_set = (evaluation or {}).get("open_set") or {}
    return (open_set.get("fpir") or {}).get("upper_95")


def _accuracy_problems(
    gate: QualityGate, evaluation: dict[str, Any] | None, published: float | None
) -> list[str]:
    if gate.min_identification_accuracy is None and gate.max_accuracy_drop is None:
        return []
    accuracy = (evaluation or {}).get("identification_accuracy")
    if accuracy is None:
        return [
            "identification accuracy could not be measured (no identity has 2 usable photos for the "
            "leave-one-out evaluation): add photos or remove the quality_gate"
        ]
    problems = []
    if gate.min_identification_accuracy is not None and accuracy < gate.min_identification_accuracy:
        problems.append(
            f"identification accuracy {accuracy:.4f} is below min_identification_accuracy "
            f"{gate.min_identification_accuracy:.4f}"
        )
    if (
        gate.max_accuracy_drop is not None
        and published is not None
        and published - accuracy > gate.max_accuracy_drop
    ):
        problems.append(
            f"identification accuracy {accuracy:.4f} dropped {published - accuracy:.4f} from the published "
            f"{published:.4f}, more than max_accuracy_drop {gate.max_accuracy_drop:.4f}"
        )
    return problems


def _fpir_problems(max_fpir: float | None, evaluation: dict[str, Any] | None) -> list[str]:
    """The bound, not the point estimate: 0 false positives in 72 searches is a rate of 0, but 72 searches
    only vouch for an FPIR below about 4-5 % (95 % confidence); the gate asks what the data can show."""
    if max_fpir is None:
        return []
    open_set = (evaluation or {}).get("open_set")
    if not open_set:
        return [NO_OPEN_SET]
    fpir = open_set["fpir"]
    upper, errors, trials = fpir.get("upper_95"), fpir["errors"], fpir["trials"]
    if upper is None or not trials:
        return [
            f"the FPIR could not be measured for max_fpir {max_fpir:.2%}: there was no non-mated search "
            "(a single enrolled identity and no known strangers); enroll more people or add photos of "
            "people who must be refused under _strangers/, or remove max_fpir from the quality_gate"
        ]
    if upper <= max_fpir:
        return []
    threshold = (evaluation or {}).get("threshold")
    measured = (
        f"{errors} of {trials} non-mated searches accepted someone at threshold {threshold} "
        f"(FPIR {errors / trials:.2%}); its 95 % upper bound {upper:.2%} is above max_fpir {max_fpir:.2%}"
    )
    if errors == 0:
        # The bound of 0 errors in n searches is 1 - a ** (1 / n) (Clopper-Pearson); a comes from the bound
        # itself, so the count needed to show max_fpir follows whatever confidence level metrics.json used.
        needed = math.ceil(trials * math.log1p(-upper) / math.log1p(-max_fpir) - 1e-9)
        return [
            f"{measured}: with no false positive, {trials} searches cannot vouch for less; about {needed} "
            "non-mated searches without one would (each enrolled photo and each known stranger's photo is "
            "one): add photos (more people, or photos of strangers under _strangers/), or raise max_fpir "
            "(a stricter accept_threshold cannot lower a bound that no false positive set)"
        ]
    return [
        f"{measured}: set a stricter (lower) accept_threshold, add photos (more people, or photos of "
        "strangers under _strangers/) so that more non-mated searches can show a lower FPIR, or raise "
        "max_fpir"
    ]


def gate_problems(gate: QualityGate, evaluation: dict[str, Any] | None, published: float | None) -> list[str]:
    """Why the run fails the gate (empty when it passes). `evaluation`: metrics.json's `evaluation`;
    `published`: the current run's accuracy."""
    return _accuracy_problems(gate, evaluation, published) + _fpir_problems(gate.max_fpir, evaluation)
