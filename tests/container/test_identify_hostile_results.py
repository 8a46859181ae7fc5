"""`facetrain identify` against hostile results folders (issue 25), derived at test time from the results
of a real job whose identities include non-ASCII names (photos of faces-dev, two folders renamed).

Every refusal is exit 2 with a message on stderr and nothing on stdout: a rules.py that is not byte for
byte what the job writes (a coding declaration that makes `import rules` run code first), a results file
that is a FIFO, socket, device or folder (refused, never waited on), over its cap, or a CSV whose means
could never match."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from facetrain import identify as identify_module
from facetrain.contract.enrollment_csv import MAX_CSV_BYTES, parse_csv, render_csv
from facetrain.contract.rules_file import MAX_RULES_BYTES, load_rules
from support.cli import identify
from support.hostile_rules import FIX, hostile_rules_files, utf7_cookie_payload

RENAMED = {"person_02": "José", "person_04": "李雷"}  # folder in faces-dev → identity enrolled
PHOTO = "faces-dev/person_02/img3.jpg"
RESULTS_FILES = ("rules.py", "final_mean_embeddings.csv", "saved_embeddings.pkl")


@pytest.fixture(scope="module")
def results(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    tree = sagemaker_tree_class(tmp_path_factory.mktemp("hostile-results") / "opt_ml", {"weights": "none"})
    for person in sorted(p for p in (shared_data / "faces-dev").iterdir() if p.is_dir()):
        for photo in sorted(person.glob("*.jpg"))[:3]:
            tree.add_photo(RENAMED.get(person.name, person.name), photo.name, photo)
    assert module_job(tree).rc == 0, tree.failure()
    return tree


@pytest.fixture
def folder(results, tmp_path):
    """A copy of the job's results, to make hostile."""
    copy = tmp_path / "results"
    shutil.copytree(results.model, copy)
    return copy


class Hung(BaseException):
    """identify waited where it must refuse at once (no OSError: nothing may take it for a read error)."""


@contextmanager
def fails_instead_of_hanging(seconds: int = 20) -> Iterator[None]:
    def interrupt(signum, frame):
        raise Hung(f"still waiting after {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def refused(capsys, shared_data, folder, *words: str) -> str:
    code, answers, err = identify(capsys, shared_data / PHOTO, "--results", folder)
    assert (code, answers) == (2, []), err
    for word in words:
        assert word in err, err
    assert "Traceback" not in err
    return err


def test_the_jobs_non_ascii_identities_round_trip_byte_for_byte(results, shared_data, capsys):
    raw = (results.model / "rules.py").read_bytes()
    assert raw.isascii() and b"'Jos\\xe9'" in raw and b"'\\u674e\\u96f7'" in raw
    assert set(RENAMED.values()) <= set(load_rules(raw)["identities"])  # type: ignore[arg-type]
    code, [answer], err = identify(capsys, shared_data / PHOTO, "--results", results.model, "--top", "4")
    assert code == 0, err
    assert {c["identity"] for c in answer["faces"][0]["candidates"]} == {
        *RENAMED.values(),
        "person_05",
        "person_10",
    }


def test_a_utf7_rules_py_that_runs_code_on_import_is_refused(folder, shared_data, capsys, tmp_path):
    marker = tmp_path / "marker"
    hostile = utf7_cookie_payload((folder / "rules.py").read_bytes(), f'open("{marker}", "w").write("ran")')
    (folder / "rules.py").write_bytes(hostile)
    refused(capsys, shared_data, folder, "rules.py line 1 is a coding declaration ('utf-7')", FIX)
    assert not marker.exists()  # identify never ran it
    imported = subprocess.run(
        [sys.executable, "-c", "import rules"], cwd=folder, capture_output=True, text=True, check=False
    )
    assert imported.returncode == 0, imported.stderr
    assert marker.read_text() == "ran"  # Python would have: the refusal is what stands in the way


def _variants(results) -> dict[str, tuple[bytes, str]]:
    return hostile_rules_files((results.model / "rules.py").read_bytes(), 'open("marker", "w").write("ran")')


@pytest.mark.parametrize(
    "name",
    ["latin1-cookie", "byte-order-mark", "crlf-line-ends", "trailing-comment", "extra-blank-line",
     "tab-indentation", "non-ascii-comment", "raw-utf8-identity", "stale-warning"],
)  # fmt: skip
def test_every_hostile_rules_py_is_refused(results, folder, shared_data, capsys, name):
    hostile, words = _variants(results)[name]
    (folder / "rules.py").write_bytes(hostile)
    refused(capsys, shared_data, folder, words, FIX)


def _fifo(path):
    os.mkfifo(path)


def _socket(path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(path.name)  # relative: the test's cwd is the folder (socket paths are short)
    return server


def _device(path):
    path.symlink_to(os.devnull)


def _folder(path):
    path.mkdir()


@pytest.mark.parametrize(
    "make", [_fifo, _socket, _device, _folder], ids=["fifo", "socket", "device", "folder"]
)
@pytest.mark.parametrize("name", RESULTS_FILES)
def test_a_results_file_that_is_not_a_regular_file_is_refused_not_waited_on(
    folder, shared_data, capsys, monkeypatch, make, name
):
    (folder / name).unlink()
    monkeypatch.chdir(folder)
    made = make(folder / name)
    try:
        with fails_instead_of_hanging():
            refused(
                capsys, shared_data, folder, f"{folder / name} is not a regular file", "published results"
            )
    finally:
        if made is not None:
            made.close()


@pytest.mark.parametrize(
    ("name", "cap"),
    [
        ("rules.py", MAX_RULES_BYTES),
        ("final_mean_embeddings.csv", MAX_CSV_BYTES),
        ("saved_embeddings.pkl", 2**31),
    ],
)
def test_a_results_file_over_its_cap_is_refused_before_it_is_read(folder, shared_data, capsys, name, cap):
    """A sparse file one byte over the real cap: refused from its size (a read would take seconds)."""
    assert identify_module.RESULTS_FILE_CAPS[name] == cap
    with open(folder / name, "r+b") as stream:
        stream.truncate(cap + 1)
    refused(capsys, shared_data, folder, f"{folder / name} is over identify's cap of {cap} bytes for {name}")


def test_each_cap_admits_a_file_of_exactly_its_size(folder, shared_data, capsys, monkeypatch):
    sizes = {name: (folder / name).stat().st_size for name in RESULTS_FILES}
    monkeypatch.setattr(identify_module, "RESULTS_FILE_CAPS", sizes)
    code, _, err = identify(capsys, shared_data / PHOTO, "--results", folder)
    assert code == 0, err
    for name in RESULTS_FILES:
        monkeypatch.setattr(identify_module, "RESULTS_FILE_CAPS", {**sizes, name: sizes[name] - 1})
        refused(capsys, shared_data, folder, f"cap of {sizes[name] - 1} bytes for {name}")


def _rewrite_csv(folder, row: int, mean_of) -> None:
    path = folder / "final_mean_embeddings.csv"
    text = path.read_text(encoding="utf-8")
    rows = parse_csv(text)
    name, count, mean = rows[row]
    rows[row] = (name, count, mean_of(mean))
    path.write_text(render_csv(rows, len(mean), warning=text.partition("\n")[0][2:]), encoding="utf-8")


@pytest.mark.parametrize(
    ("row", "mean_of", "words"),
    [
        (0, np.zeros_like, "row 2: the mean embedding is all zeros"),
        (2, lambda mean: mean / 2, "row 4: the mean embedding is of length 0.5,"),
        (3, lambda mean: mean * 1e-20, "row 5: the mean embedding is of length 1e-20"),
    ],
)
def test_a_csv_mean_that_could_never_match_is_refused(folder, shared_data, capsys, row, mean_of, words):
    """Before, an all-zero mean became a row of NaN, and `--top` printed `"distance": NaN` (not JSON)."""
    _rewrite_csv(folder, row, mean_of)
    refused(capsys, shared_data, folder, words, "could never be matched")


def test_a_csv_re_saved_with_a_byte_order_mark_is_refused(folder, shared_data, capsys):
    path = folder / "final_mean_embeddings.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    refused(capsys, shared_data, folder, "starts with a byte-order mark", "re-saved by a spreadsheet")


def test_identify_never_prints_nan_or_infinity(results, shared_data, monkeypatch):
    """A non-finite number in an answer (a bug, now that the CSV's means are checked) fails loudly
    instead of printing `NaN`, which JSON readers refuse."""
    for value in (math.nan, math.inf, -math.inf):

        def answers(*args, value=value, **kwargs):
            yield {"photo": "x.jpg", "faces": [{"distance": value}]}

        monkeypatch.setattr(identify_module, "identify", answers)
        out = io.StringIO()
        with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
            identify_module.run_identify([shared_data / PHOTO], results.model, out=out, err=io.StringIO())
        assert out.getvalue() == ""
    assert json.loads(json.dumps({"distance": 0.5}, allow_nan=False)) == {"distance": 0.5}
