"""facetrain.contract.enrollment_csv: final_mean_embeddings.csv round trip and shape checks (no torch)."""

from __future__ import annotations

import numpy as np
import pytest
from facetrain.contract.enrollment_csv import EnrollmentCsvError, header, parse_csv, render_csv

HOSTILE_NAMES = [
    'x"];import os;os.system("touch PWNED")#',
    "Zoë Ñúñez",
    "名前",
    'O\'Brien "Bob"',
    "Smith, John, Jr.",
    "#not a comment",
    '=HYPERLINK("http://x")',
    "123",
    "1e5",
    "  spaced  ",
    "line\nbreak",
    "carriage\rreturn",
]


def unit_rows(names: list[str], dimension: int, seed: int = 0) -> list[tuple[str, int, np.ndarray]]:
    generator = np.random.default_rng(seed)
    rows = []
    for index, name in enumerate(names):
        vector = generator.standard_normal(dimension)
        rows.append((name, index + 1, (vector / np.linalg.norm(vector)).astype(np.float32)))
    return rows


def test_round_trip_is_exact_for_hostile_names_and_float32_values():
    rows = unit_rows(HOSTILE_NAMES, 512)
    text = render_csv(rows, 512, warning="NOT FOR PRODUCTION: test")
    assert text.startswith("# NOT FOR PRODUCTION: test\n")
    assert text.splitlines()[1] == ",".join(f'"{name}"' for name in header(512))
    parsed = parse_csv(text, 512)
    assert [name for name, _, _ in parsed] == HOSTILE_NAMES
    assert [count for _, count, _ in parsed] == list(range(1, len(HOSTILE_NAMES) + 1))
    for (_, _, written), (_, _, read) in zip(rows, parsed, strict=True):
        assert read.dtype == np.float32
        assert np.array_equal(written, read)  # shortest float32 repr round-trips bit for bit


def test_values_are_unquoted_and_short():
    text = render_csv([("a", 1, np.array([0.1, -0.5, 1.0], dtype=np.float32))], 3)
    assert text == '"identity","num_images","e0","e1","e2"\n"a",1,0.1,-0.5,1\n'


def test_identity_with_newline_then_hash_round_trips():
    rows = unit_rows(["x\n#y"], 4)
    assert [name for name, _, _ in parse_csv(render_csv(rows, 4, warning="w"), 4)] == ["x\n#y"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ('"name","num_images","e0"\n"a",1,0.5\n', "header must start"),
        ('"identity","num_images"\n', "header must start"),
        ('"identity","num_images","e0","e1"\n"a",1,0.5\n', "row 2 does not match"),
        ('"identity","num_images","e0"\n"a",1,1.0\n"a",2,-1.0\n', "lists 'a' twice"),
        ('"identity","num_images","e0"\n"a",0,0.5\n', "bad photo count"),
        ('"identity","num_images","e0"\n"a",1.5,0.5\n', "bad photo count"),
        ('"identity","num_images","e0"\n"a",1,nan\n', "non-finite"),
        ('"identity","num_images","e0"\n"a",1,inf\n', "non-finite"),
        ('"identity","num_images","e0"\n"a",1,abc\n', "final_mean_embeddings.csv"),
        ('"identity","num_images","e0"\n5,1,0.5\n', "row 2 does not match"),
    ],
)
def test_malformed_csv_raises(text, words):
    with pytest.raises(EnrollmentCsvError) as error:
        parse_csv(text)
    assert words in str(error.value)


def test_dimension_is_checked():
    text = render_csv(unit_rows(["a"], 8), 8)
    assert len(parse_csv(text, 8)[0][2]) == 8
    with pytest.raises(EnrollmentCsvError, match="8 values per row, expected 512"):
        parse_csv(text, 512)
