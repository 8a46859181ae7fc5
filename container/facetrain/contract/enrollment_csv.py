"""`final_mean_embeddings.csv`: one row per enrolled identity (identity, photos used, embedding values).

Strings are always quoted and numbers never, so a line that starts with `#` is a comment (the
not-for-production warning) and identity names keep every character of their folder name.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence

import numpy as np

COMMENT = "#"
IDENTITY_COLUMN = "identity"
COUNT_COLUMN = "num_images"


class _Float32(float):
    """A float the csv writer prints with the fewest digits that round-trip to the same float32."""

    def __repr__(self) -> str:
        return np.format_float_positional(np.float32(self), unique=True, trim="-")

    __str__ = __repr__


class EnrollmentCsvError(ValueError):
    """final_mean_embeddings.csv does not have the expected shape."""


def header(dimension: int) -> list[str]:
    """Column names for embeddings of this dimension."""
    return [IDENTITY_COLUMN, COUNT_COLUMN, *(f"e{i}" for i in range(dimension))]


def render_csv(
    rows: Iterable[tuple[str, int, Sequence[float]]], dimension: int, warning: str | None = None
) -> str:
    """Text of the CSV: optional `# warning` line, header, then one row per identity."""
    buffer = io.StringIO()
    if warning:
        buffer.write(f"{COMMENT} {warning}\n")
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    writer.writerow(header(dimension))
    for identity, count, values in rows:
        writer.writerow([identity, count, *(_Float32(v) for v in values)])
    return buffer.getvalue()


def parse_csv(text: str, dimension: int | None = None) -> list[tuple[str, int, np.ndarray]]:
    """Parse and check the CSV: header, unique identities, counts ≥ 1, finite values of one dimension."""
    body = text
    while body.startswith(COMMENT):  # only the leading comment lines: a quoted name may hold "\n#"
        body = body.partition("\n")[2]
    reader = csv.reader(io.StringIO(body, newline=""), quoting=csv.QUOTE_NONNUMERIC)
    try:
        head = next(reader)
    except StopIteration:
        raise EnrollmentCsvError("final_mean_embeddings.csv is empty") from None
    except ValueError as exc:
        raise EnrollmentCsvError(f"final_mean_embeddings.csv header: {exc}") from None
    if head[:2] != [IDENTITY_COLUMN, COUNT_COLUMN] or len(head) < 3:
        raise EnrollmentCsvError("final_mean_embeddings.csv header must start with identity,num_images,e0")
    width = len(head) - 2
    if dimension is not None and width != dimension:
        raise EnrollmentCsvError(
            f"final_mean_embeddings.csv has {width} values per row, expected {dimension}"
        )
    rows: list[tuple[str, int, np.ndarray]] = []
    seen: set[str] = set()
    try:
        for number, row in enumerate(reader, start=2):
            if len(row) != width + 2 or not isinstance(row[0], str):
                raise EnrollmentCsvError(f"final_mean_embeddings.csv row {number} does not match the header")
            identity, count, values = row[0], row[1], np.asarray(row[2:], dtype=np.float32)
            if identity in seen:
                raise EnrollmentCsvError(f"final_mean_embeddings.csv lists '{identity}' twice")
            if not (isinstance(count, float) and count.is_integer() and count >= 1):
                raise EnrollmentCsvError(f"final_mean_embeddings.csv row {number}: bad photo count {count!r}")
            if not all(math.isfinite(v) for v in values.tolist()):
                raise EnrollmentCsvError(f"final_mean_embeddings.csv row {number}: non-finite value")
            seen.add(identity)
            rows.append((identity, int(count), values))
    except ValueError as exc:
        if isinstance(exc, EnrollmentCsvError):
            raise
        raise EnrollmentCsvError(f"final_mean_embeddings.csv: {exc}") from None
    return rows
