"""The publish Lambda's verification of model.tar.gz against hostile published files (issue 25): every
rules.py that is not byte for byte what render_rules writes, and every final_mean_embeddings.csv whose
means could never match or that a spreadsheet re-saved, is refused before anything becomes current.

The variants are derived at test time from the files the container's writers make (support.testkit),
shared with tests/container/test_hostile_published_files.py."""

from __future__ import annotations

import io

import numpy as np
import pytest
from facetrain.contract.enrollment_csv import parse_csv, render_csv
from facetrain_lambdas import artifact
from facetrain_lambdas.artifact import read_model_archive, verify_results
from facetrain_lambdas.errors import ResultsInvalid
from support.hostile_rules import FIX, NON_ASCII_IDENTITIES, hostile_rules_files
from support.testkit import model_files, model_tar

GOOD = model_files(NON_ASCII_IDENTITIES)
RULES_VARIANTS = hostile_rules_files(GOOD["rules.py"], 'open("marker", "w").write("ran")')


def _verify(files: dict[str, bytes]):
    """What publish does with a job's artifact: read the archive, then verify its files."""
    return verify_results(read_model_archive(io.BytesIO(model_tar(files))))


def test_results_with_non_ascii_identities_are_published():
    verified = _verify(GOOD)
    assert verified.identities == list(NON_ASCII_IDENTITIES)


@pytest.mark.parametrize("name", sorted(RULES_VARIANTS))
def test_a_rules_py_that_is_not_byte_for_byte_generated_is_never_published(name):
    hostile, words = RULES_VARIANTS[name]
    with pytest.raises(ResultsInvalid) as refused:
        _verify({**GOOD, "rules.py": hostile})
    assert words in str(refused.value) and FIX in str(refused.value)


def _csv_with_mean(row: int, mean_of) -> bytes:
    rows = parse_csv(GOOD["final_mean_embeddings.csv"].decode())
    name, count, mean = rows[row]
    rows[row] = (name, count, mean_of(mean))
    return render_csv(rows, len(mean), warning="NOT FOR PRODUCTION").encode()


@pytest.mark.parametrize(
    ("csv", "words"),
    [
        (_csv_with_mean(1, np.zeros_like), "row 3: the mean embedding is all zeros"),
        (_csv_with_mean(3, lambda mean: mean * 0.25), "row 5: the mean embedding is of length 0.25,"),
        (_csv_with_mean(0, lambda mean: mean * 3), "row 2: the mean embedding is of length 3,"),
        (_csv_with_mean(2, lambda mean: np.full_like(mean, np.nan)), "row 4: non-finite value"),
        (b"\xef\xbb\xbf" + GOOD["final_mean_embeddings.csv"], "starts with a byte-order mark"),
    ],
)
def test_a_csv_mean_that_could_never_match_or_a_spreadsheet_save_is_never_published(csv, words):
    with pytest.raises(ResultsInvalid, match=words):
        _verify({**GOOD, "final_mean_embeddings.csv": csv})


@pytest.mark.parametrize("name", ["rules.py", "final_mean_embeddings.csv"])
def test_each_file_is_capped_at_its_readers_cap_from_the_tar_header(monkeypatch, name):
    """rules.py and the CSV have caps of their own (MAX_RULES_BYTES, MAX_CSV_BYTES), far below the 2 GiB
    of any result file: refused from the header, before the data is read (here with the cap lowered)."""
    size = len(GOOD[name])
    monkeypatch.setitem(artifact.FILE_CAPS, name, size - 1)
    archive = model_tar(GOOD)
    with pytest.raises(ResultsInvalid, match=f"{name} is {size} bytes, over {size - 1}"):
        read_model_archive(io.BytesIO(archive))
    monkeypatch.setitem(artifact.FILE_CAPS, name, size)
    assert read_model_archive(io.BytesIO(archive))[name] == GOOD[name]
