"""docs/architecture.md and docs/workflow.md against the code: every offline module is in the module table,
and the run.json row names every field of RunRecord; a module or field added without the docs fails here,
naming it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from facetrain_lambdas.quality_gate import QualityGateDecision
from facetrain_lambdas.run_record import RunRecord, ValidationProblems

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = ROOT / "offline" / "facetrain_offline"


def _section(path: Path, heading: str) -> str:
    text = path.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end > 0 else None]


def test_the_module_table_lists_every_offline_module() -> None:
    table = _section(ROOT / "docs" / "architecture.md", "## The offline stack, module by module")
    documented = set(re.findall(r"`([a-z_]+)\.py`", table))
    modules = {path.stem for path in OFFLINE.glob("*.py")} - {"__init__"}
    assert modules == documented, (modules - documented, documented - modules)


def test_the_run_record_row_names_every_field() -> None:
    row = next(
        line for line in (ROOT / "docs" / "workflow.md").read_text().splitlines() if "/run.json` |" in line
    )
    documented = set(re.findall(r"`([a-z_]+)`", row))
    fields = set(RunRecord.model_fields) - {"format", "version"}
    assert fields <= documented, fields - documented


@pytest.mark.parametrize(
    ("key", "model"),
    [("/problems.json` |", ValidationProblems), ("`quality_gate.json` |", QualityGateDecision)],
)
def test_the_workflow_guide_names_every_field_of_validates_and_publishs_decisions(key: str, model) -> None:
    row = next(line for line in (ROOT / "docs" / "workflow.md").read_text().splitlines() if key in line)
    documented = set(re.findall(r"`([a-z_][a-z0-9_]*)`", row))
    fields = set(model.model_fields) - {"format", "version"}
    assert fields <= documented, fields - documented
