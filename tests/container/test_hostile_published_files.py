"""Hostile published files (issue 25), through their contract readers (no torch, no job).

rules.py must be byte for byte what render_rules writes for its values: the variants are derived at test
time from a rules.py render_rules wrote (tests/support/hostile_rules.py), the first being a coding
declaration that makes `import rules` run code a UTF-8 reader takes for a comment. final_mean_embeddings.csv
must hold unit-length means and no byte-order mark: its variants are derived from one render_csv wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from facetrain.contract.enrollment_csv import EnrollmentCsvError, parse_csv, render_csv
from facetrain.contract.rules_file import MAX_RULES_BYTES, RulesError, load_rules, render_rules
from support.hostile_rules import FIX, NON_ASCII_IDENTITIES, hostile_rules_files, utf7_cookie_payload
from support.testkit import model_files

CONTAINER = Path(__file__).resolve().parents[2] / "container"
GENERATED = model_files(NON_ASCII_IDENTITIES)  # render_rules' and render_csv's own output
RULES = GENERATED["rules.py"]
VARIANTS = hostile_rules_files(RULES, 'open("marker", "w").write("ran")')
IMPORT_RULES = "import json, rules; print(json.dumps(rules.RULES['identities']))"


def import_rules(folder: Path) -> subprocess.CompletedProcess[str]:
    """`import rules` for real, as a consumer would, in a fresh interpreter whose cwd is `folder`."""
    return subprocess.run(
        [sys.executable, "-c", IMPORT_RULES], cwd=folder, capture_output=True, text=True, check=False
    )


# ---- rules.py -------------------------------------------------------------------------------------------


def test_non_ascii_identities_round_trip_through_a_pure_ascii_rules_py(tmp_path):
    assert RULES.isascii()
    assert b"'Jos\\xe9'" in RULES and b"'\\u674e\\u96f7'" in RULES and b"\\U0001f642" in RULES
    assert load_rules(RULES)["identities"] == list(NON_ASCII_IDENTITIES)
    assert load_rules(RULES.decode("ascii"))["identities"] == list(NON_ASCII_IDENTITIES)
    (tmp_path / "rules.py").write_bytes(RULES)
    imported = import_rules(tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout) == list(NON_ASCII_IDENTITIES)  # Python reads the names the job wrote


def test_the_utf7_declaration_runs_code_on_import_yet_every_reading_refuses_it(tmp_path):
    """The attack is real: Python honours `coding: utf-7` and runs the hidden line on import (a marker
    file appears). load_rules refuses the file, as bytes and as the UTF-8 text readers used to pass."""
    hostile = utf7_cookie_payload(RULES, f'open("{tmp_path / "marker"}", "w").write("ran")')
    assert "\n# note +AAo-open(" in hostile.decode("utf-8")  # to a UTF-8 reader: a comment
    (tmp_path / "rules.py").write_bytes(hostile)
    imported = import_rules(tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert (tmp_path / "marker").read_text() == "ran"
    assert json.loads(imported.stdout) == list(NON_ASCII_IDENTITIES)  # and it still looks like the rules
    for source in (hostile, hostile.decode("utf-8")):
        with pytest.raises(RulesError) as refused:
            load_rules(source)
        assert "line 1 is a coding declaration ('utf-7')" in str(refused.value)
        assert FIX in str(refused.value)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_hostile_rules_variant_is_refused_naming_the_line_and_the_fix(name):
    hostile, words = VARIANTS[name]
    assert hostile != RULES
    readings: list[bytes | str] = [hostile]
    with contextlib.suppress(UnicodeDecodeError):
        readings.append(hostile.decode("utf-8"))  # the text a reader decoding as UTF-8 would pass
    for source in readings:
        with pytest.raises(RulesError) as refused:
            load_rules(source)
        message = str(refused.value)
        assert words in message, message
        assert FIX in message
        assert "José" not in message and "Jos\\xe9" not in message  # names are not echoed


def test_a_rules_py_over_the_cap_is_refused_before_parsing():
    padded = RULES + b"#" * (MAX_RULES_BYTES - len(RULES) + 1)
    with pytest.raises(RulesError, match=f"over the {MAX_RULES_BYTES}-byte cap"):
        load_rules(padded)


def test_render_rules_writes_only_what_load_rules_accepts():
    """The job's writer: render_rules checks its text with the readers' own load_rules (byte for byte),
    for every kind of value rules.py holds."""
    data = {
        **load_rules(RULES),
        "target_far": 1e-05,
        "model_files": {"20180402-114759-vggface2.pt": "ab" * 32, "é.dat": "cd" * 32},
        "threshold_source": "evaluation",
        "margin": -0.0,
        "empty_list": [],
        "empty_map": {},
        "nested": [[1, [2.5, None]], {"k": [True, False]}],
        "quotes": 'it\'s "quoted"\\ \t\n\r\x00\x7f\u2028\ud800',
    }
    text = render_rules(data)
    assert text.isascii()
    assert load_rules(text.encode("ascii")) == data


def _interpreters() -> list[str]:
    """Other Python 3.11+ interpreters, on PATH or installed by pyenv (the Lambdas' 3.13, say), that can
    import facetrain.contract (stdlib only)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for minor in range(11, 16):
        installed = sorted(pyenv.glob(f"3.{minor}.*/bin/python3.{minor}"))
        # pyenv's own first: its shims on PATH answer only for the selected version
        path = str(installed[-1]) if installed else shutil.which(f"python3.{minor}")
        if path is None or f"{sys.version_info.major}.{sys.version_info.minor}" == f"3.{minor}":
            continue
        probe = subprocess.run([path, "-c", "import sys"], capture_output=True, check=False)
        if probe.returncode == 0:
            found.append(path)
    return found


RENDER_ELSEWHERE = (
    "import json, sys; sys.path.insert(0, sys.argv[1]);"
    "from facetrain.contract.rules_file import load_rules, render_rules;"
    "data = json.loads(sys.stdin.read()); assert load_rules(sys.argv[2].encode()) == data;"
    "sys.stdout.write(render_rules(data))"
)


@pytest.mark.parametrize(
    "python",
    _interpreters()
    or [pytest.param(None, marks=pytest.mark.skip(reason="no other Python 3.11+ on PATH or in pyenv"))],
)
def test_other_pythons_write_and_accept_the_same_bytes(python):
    """The job (Python 3.11), the publish Lambda (3.13) and a user's identify compare rules.py byte for
    byte: each Python renders the same bytes and accepts this one's (skipped when no other is on PATH)."""
    data = load_rules(RULES)
    result = subprocess.run(
        [python, "-c", RENDER_ELSEWHERE, str(CONTAINER), RULES.decode("ascii")],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.encode("ascii") == RULES


# ---- final_mean_embeddings.csv ---------------------------------------------------------------------------

CSV = GENERATED["final_mean_embeddings.csv"].decode("utf-8")


def _with_row(scale: float | None = None, value: float | None = None, row: int = 2) -> str:
    """The generated CSV with one identity's mean (index `row`, file row row + 2) scaled or set to a
    value, written by the job's own writer."""
    rows = parse_csv(CSV)
    name, count, mean = rows[row]
    rows[row] = (name, count, mean * scale if scale is not None else np.full_like(mean, value))
    return render_csv(rows, len(mean), warning="NOT FOR PRODUCTION")


CSV_VARIANTS = {
    "all-zeros": (lambda: _with_row(value=0.0), "row 4: the mean embedding is all zeros"),
    "half-length": (lambda: _with_row(scale=0.5), "row 4: the mean embedding is of length 0.5,"),
    "double-length": (lambda: _with_row(scale=2.0), "row 4: the mean embedding is of length 2,"),
    "vanishing": (lambda: _with_row(scale=1e-30), "row 4: the mean embedding is of length 1e-30"),
    "first-row-zeros": (lambda: _with_row(value=0.0, row=0), "row 2: the mean embedding is all zeros"),
    "nan": (lambda: _with_row(value=float("nan")), "row 4: non-finite value"),
    "infinite": (lambda: _with_row(value=float("inf")), "row 4: non-finite value"),
    "bom": (lambda: "\ufeff" + CSV, "starts with a byte-order mark"),
    "bom-as-excel-saves": (  # Excel: BOM, CRLF, quotes dropped
        lambda: "\ufeff" + CSV.replace('"', "").replace("\n", "\r\n"),
        "starts with a byte-order mark",
    ),
}


def test_the_generated_csv_holds_unit_means():
    rows = parse_csv(CSV, 512)
    assert [name for name, _, _ in rows] == list(NON_ASCII_IDENTITIES)
    for _, _, mean in rows:
        assert abs(np.linalg.norm(mean.astype(np.float64)) - 1.0) < 1e-6


@pytest.mark.parametrize("name", sorted(CSV_VARIANTS))
def test_csv_means_that_could_never_match_and_spreadsheet_saves_are_refused(name):
    make, words = CSV_VARIANTS[name]
    with pytest.raises(EnrollmentCsvError) as refused:
        parse_csv(make(), 512)
    assert words in str(refused.value)
    if "non-finite" not in words:
        assert "use the final_mean_embeddings.csv the training job published" in str(refused.value)
