"""The quality gate: the figures a run must reach before its results replace the published ones."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class QualityGate(BaseModel):
    """Part of the execution input (`quality_gate`); every bound optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_identification_accuracy: float | None = Field(
        None, ge=0.0, le=1.0, description="Leave-one-out identification accuracy the run must reach."
    )
    max_accuracy_drop: float | None = Field(
        None, ge=0.0, le=1.0, description="Largest accuracy drop allowed against the published run."
    )


class QualityGateDecision(BaseModel):
    """What the gate decided for a run: runs/<run id>/quality_gate.json, written by publish whether the run
    passed or not, and latest.json's `quality_gate` (the published run's decision)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["facetrain.quality-gate"] = "facetrain.quality-gate"
    version: Literal[1] = 1
    run_id: str
    gate: QualityGate
    identification_accuracy: float | None
    published_identification_accuracy: float | None  # of the run published before, if any
    passed: bool
    problems: list[str]  # why it did not pass (empty when it passed)


class QualityGateFailed(Exception):
    """The run's evaluation is below the gate; its files stay under runs/<run_id>/, nothing is published."""


def gate_problems(gate: QualityGate, evaluation: dict[str, Any] | None, published: float | None) -> list[str]:
    """Why the run fails the gate (empty when it passes). `published`: the current run's accuracy."""
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
