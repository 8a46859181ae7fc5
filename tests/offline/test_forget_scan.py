"""`facetrain forget`, proven by scan: faces-dev enrolled, retrained twice, one person forgotten through the
state machine; then every file under --state (the saved bucket: every version of every object) and --out,
and every member of every archive in them, holds no trace of the name and no embedding within 1e-6 of
theirs; the others' rows equal a fresh enrollment without them; identify answers "unknown" on their
photos; the receipt says what went, without the name.

The commands run as a user runs them: `python -m facetrain_offline.cli` in a process of its own, with no
Powertools variable in its environment (the Lambdas get theirs from the template)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from facetrain.contract.embeddings_file import load_embeddings
from facetrain.contract.enrollment_csv import parse_csv
from facetrain_lambdas.erasure_record import parse_record
from facetrain_offline.run_summary import read_run_summary
from support.cli import identify
from support.erasure_scan import embedding_traces, name_traces

pytestmark = pytest.mark.slow

FORGOTTEN = "person_02"
TOLERANCE = 1e-6


def facetrain(*args: object) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    done = subprocess.run(
        [sys.executable, "-m", "facetrain_offline.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, done.stdout + done.stderr


def _photos(shared_data: Path, target: Path, leave_out: set[str] = frozenset()) -> Path:
    for identity in sorted(p for p in (shared_data / "faces-dev").iterdir() if p.is_dir()):
        if identity.name not in leave_out:
            shutil.copytree(identity, target / identity.name)
    return target


def _their_vectors(roots: list[Path]) -> list[np.ndarray]:
    """Every embedding of theirs the runs stored: per-photo records and enrollment rows, of every run."""
    found = []
    for root in roots:
        for pickle in root.rglob("saved_embeddings.pkl"):
            found += [
                np.asarray(r["embedding"], dtype=np.float64)
                for r in load_embeddings(pickle)["records"]
                if r["identity"] == FORGOTTEN
            ]
        for table in root.rglob("final_mean_embeddings.csv"):
            rows = parse_csv(table.read_text())
            found += [np.asarray(v, dtype=np.float64) for name, _, v in rows if name == FORGOTTEN]
    return found


def _rows(folder: Path) -> dict[str, tuple[int, np.ndarray]]:
    return {n: (c, v) for n, c, v in parse_csv((folder / "final_mean_embeddings.csv").read_text())}


def test_forget_leaves_no_trace_of_the_person_anywhere(shared_data: Path, tmp_path: Path, capsys) -> None:
    photos = _photos(shared_data, tmp_path / "photos")
    state, out = tmp_path / "state", tmp_path / "out"
    for extra in ([], ["--force"]):  # enroll, then retrain
        code, screen = facetrain("run", photos, "--state", state, "--out", out, *extra)
        assert code == 0, screen
    (photos / "person_04" / sorted(os.listdir(photos / "person_04"))[0]).unlink()  # retrain: a change
    code, screen = facetrain("run", photos, "--state", state, "--out", out)
    assert code == 0, screen
    targets = _their_vectors([state, out])
    # The scan can see what it looks for: before the forget, both kinds of trace are everywhere.
    assert len(targets) > 6 and name_traces([state, out], FORGOTTEN)
    assert embedding_traces([state], targets, TOLERANCE)
    noncurrent = [p for p in state.rglob("*") if p.is_file() and ".versions" in p.parts]
    assert noncurrent, "the saved state keeps the bucket's noncurrent versions"
    stateless = shutil.copytree(out, tmp_path / "stateless-out")  # as runs without --state leave it

    code, screen = facetrain("forget", FORGOTTEN, "--state", state, "--out", out)

    assert code == 0, screen
    assert FORGOTTEN not in screen  # the terminal says what happened without the name
    summary = read_run_summary(out / "run.json")
    assert summary.status == "SUCCEEDED" and [e.outcome for e in summary.executions] == ["forgotten"]
    assert summary.notifications[-1].Subject == "facetrain forget done"
    assert name_traces([state, out], FORGOTTEN) == []
    assert embedding_traces([state, out], targets, TOLERANCE) == []

    # The others, as a fresh enrollment without the person (the same photos, reused embeddings).
    fresh = tmp_path / "fresh"
    alone = _photos(shared_data, tmp_path / "others", leave_out={FORGOTTEN})
    (alone / "person_04" / sorted(os.listdir(alone / "person_04"))[0]).unlink()
    code, screen = facetrain("run", alone, "--out", fresh)
    assert code == 0, screen
    kept, expected = _rows(out), _rows(fresh)
    assert sorted(kept) == sorted(expected) and FORGOTTEN not in kept
    for name, (count, vector) in expected.items():
        assert kept[name][0] == count
        np.testing.assert_allclose(kept[name][1], vector, atol=TOLERANCE, rtol=0)

    # identify: their photos are nobody now.
    theirs = sorted((shared_data / "faces-dev" / FORGOTTEN).iterdir())
    code, answers, err = identify(capsys, *theirs, "--results", out)
    assert code == 0, err
    assert answers and all(face["identity"] is None for a in answers for face in a["faces"])
    assert all(a["identities"] == [] for a in answers)

    # The receipt: what went, when, by which execution, the person as a salted hash only.
    [receipt] = sorted((state / "bucket" / "erasures").glob("*.json"))
    record = parse_record(json.loads(receipt.read_text()), str(receipt))
    assert record.status == "completed" and record.names(FORGOTTEN) and not record.names("person_04")
    assert record.erasure_id == summary.executions[0].name and record.completed_at
    assert len(record.photo_versions) >= len(theirs)  # each photo's versions (and its restores)
    counts = record.counts()
    assert counts["results_versions_rewritten"] > 0 and counts["results_versions_deleted"] > 0
    assert record.republished_run_id == json.loads((out / "latest.json").read_text())["run_id"]

    # Idempotent: again, the purge finds nothing left, and the others' enrollment is as it was.
    code, screen = facetrain("forget", FORGOTTEN, "--state", state, "--out", out)
    assert code == 0, screen
    again = read_run_summary(out / "run.json")
    assert "Nothing of theirs was left to remove" in again.notifications[-1].Message
    assert _rows(out).keys() == kept.keys() and name_traces([state, out], FORGOTTEN) == []
    # Without --state (runs that kept no bucket), the output folder alone is cleaned.
    code, screen = facetrain("forget", FORGOTTEN, "--out", stateless)
    assert code == 0 and "no --state" in screen, screen
    assert (
        name_traces([stateless], FORGOTTEN) == [] and embedding_traces([stateless], targets, TOLERANCE) == []
    )
    # A name never enrolled is said so, by its position, and nothing changes.
    code, screen = facetrain("forget", "person_99", "--state", state, "--out", out)
    assert code == 1 and "name 1 of 1 is not enrolled" in screen and "person_99" not in screen
