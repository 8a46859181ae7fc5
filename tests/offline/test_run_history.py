"""`facetrain runs` on saved-state folders built here: a document that cannot be read is listed as such,
with its reader's reason, and never stops the listing (issue 27, item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from facetrain_offline.cli import main


def _put(state: Path, key: str, document: object) -> None:
    path = state / "bucket" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)


def test_unreadable_documents_are_listed_with_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    _put(state, "results/runs/old/run.json", {"format": "facetrain.run", "version": 1})
    _put(state, "results/runs/garbled/run.json", "{not json")
    _put(state, "results/runs/stray/notes.txt", "an operator's notes")
    _put(state, "results/latest.json", {"format": "something-else", "version": 7})

    assert main(["runs", "--state", str(state)]) == 0
    lines = capsys.readouterr().out.splitlines()

    assert [line.split()[:3] for line in lines[1:4]] == [
        ["garbled", "-", "unreadable"],
        ["old", "-", "unreadable"],
        ["stray", "-", "unreadable"],
    ]
    assert lines[4].startswith("published: none (results/latest.json is format 'something-else' version 7")
    notes = lines[5:]
    assert notes[0].startswith("note   garbled: results/runs/garbled/run.json is not JSON (Expecting ")
    assert notes[1].startswith("note   old: results/runs/old/run.json is format 'facetrain.run' version 1")
    assert notes[2] == (
        "note   stray: no run.json nor problems.json: validate never accepted nor refused this run id"
    )


def test_a_state_without_runs_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bucket").mkdir()
    assert main(["runs", "--state", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"no run in {tmp_path} (nothing under results/runs/)\n"
