"""The README's tables and field lists of the documents are checked against their models: a field added,
renamed or given another default without the README saying so fails here, naming the field."""

from __future__ import annotations

import json
import re
from pathlib import Path

from facetrain.contract.hyperparameters import Hyperparameters
from facetrain.contract.metrics import EvaluationSummary, IdentityEvaluation, MetricsDocument
from facetrain_offline.run_summary import RunSummary

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
VERSIONING = {"format", "version"}  # every document's first two fields, described once in the README


def _table(after: str) -> list[list[str]]:
    """The rows (cells, stripped) of the first Markdown table after the line starting with `after`."""
    lines = README[README.index(after) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def _names(text: str) -> list[str]:
    """The `backticked` identifiers in a piece of text."""
    return re.findall(r"`([a-z_][a-z0-9_]*)`", text)


def _paragraph(start: str) -> str:
    """README text from `start` to the next blank line or list item."""
    text = README[README.index(start) :]
    return re.split(r"\n\n|\n- ", text, maxsplit=1)[0]


def test_the_hyperparameter_table_lists_every_setting_with_its_default() -> None:
    rows = _table("| key | default | meaning |")
    documented = {_names(key)[0]: default for key, default, _ in rows}
    assert list(documented) == list(Hyperparameters.model_fields)
    for name, default in documented.items():
        if default == "per embedder" or default.startswith("per embedder:"):
            continue  # resolved from the embedder (checked in test_hyperparameters)
        value = Hyperparameters.model_fields[name].default
        shown = json.dumps(list(value)) if isinstance(value, tuple) else str(value)
        written = default.split(" (", 1)[0] if default.startswith("`") else default  # "`None` (why)"
        assert written.strip("`").replace(", ", ",") == shown.replace(", ", ","), name


def test_the_evaluation_table_lists_every_field_of_the_summary() -> None:
    rows = _table("`metrics.json` → `evaluation`:")
    keys = [name for key, _ in rows for name in _names(key)]
    assert sorted(keys) == sorted(EvaluationSummary.model_fields)
    (per_identity,) = [meaning for key, meaning in rows if key == "`per_identity`"]
    identity_fields = set(IdentityEvaluation.model_fields) - {"identity"}  # the folder the row is of
    assert identity_fields <= set(_names(per_identity)), identity_fields - set(_names(per_identity))


def test_the_metrics_list_names_every_field_of_the_document() -> None:
    documented = set(_names(_paragraph("- `metrics.json` (format")))
    values = {"succeeded", "failed", "null"}  # values the paragraph mentions, not fields
    assert documented - values == set(MetricsDocument.model_fields) - VERSIONING


def test_the_run_summary_paragraph_names_every_field_of_run_json() -> None:
    documented = set(_names(_paragraph("`OUT_DIR` receives the files published")))
    fields = set(RunSummary.model_fields) - VERSIONING
    assert fields <= documented, fields - documented
