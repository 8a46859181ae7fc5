"""facetrain.contract.counting.counted: the one pluraliser of every message (issue 27, "counted right"),
and the texts that now go through it where a person reads them."""

from __future__ import annotations

import pytest
from facetrain.contract.counting import counted
from facetrain_lambdas.errors import InvalidInput
from facetrain_offline.run_options import recorded_input
from facetrain_offline.run_triggers import uploaded_files


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 problems"), (1, "1 problem"), (2, "2 problems"), (11, "11 problems"), (21, "21 problems")],
)
def test_one_is_singular_zero_and_every_other_count_plural(count: int, expected: str) -> None:
    assert counted(count, "problem") == expected


@pytest.mark.parametrize(("count", "expected"), [(0, "0 identities"), (1, "1 identity"), (2, "2 identities")])
def test_an_irregular_plural_is_used_as_given(count: int, expected: str) -> None:
    assert counted(count, "identity", "identities") == expected


def test_a_phrase_agrees_with_its_count() -> None:
    assert counted(1, "person", "people") == "1 person"
    assert counted(3, "person", "people") == "3 people"
    assert counted(1, "identity has", "identities have") == "1 identity has"
    assert counted(2, "identity has", "identities have") == "2 identities have"


def test_the_lambdas_count_problems_with_the_contracts_rule() -> None:
    assert str(InvalidInput(["a: fix a"])).startswith("The retraining input has 1 problem to fix:\n")
    assert str(InvalidInput([])).startswith("The retraining input has 0 problems to fix:")


@pytest.mark.parametrize(
    ("names", "shown"), [(["ann"], "<1 name, not recorded>"), (["ann", "bob"], "<2 names, not recorded>")]
)
def test_a_forget_request_is_recorded_as_a_count_of_names_without_them(names: list[str], shown: str) -> None:
    recorded = recorded_input({"forget": names, "run_id": "r1"})
    assert recorded == {"forget": shown, "run_id": "r1"}


def test_the_upload_line_counts_one_file_in_one_folder_in_the_singular() -> None:
    assert uploaded_files(["p/ann/1.jpg"], "p/") == "1 file (1 in 1 person's folder)"
    assert uploaded_files(["p/ann/1.jpg", "p/_strangers/x.jpg"], "p/") == (
        "2 files (1 in 1 person's folder, 1 in the known strangers' folder)"
    )
