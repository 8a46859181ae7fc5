"""`final_mean_embeddings.csv`: one row per enrolled identity (identity, photos used, embedding values).

Strings are always quoted and numbers never, so a line that starts with `#` is a comment (the
not-for-production warning) and identity names keep every character of their folder name. Each row's
values are a unit-length mean embedding: a row that is not (all zeros, say) could never be matched and
would make distances NaN, so readers refuse it.
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
# 100,000 identities of 512 values (~6 KB a row) are ~600 MB: 1 GiB bounds what a reader takes in.
MAX_CSV_BYTES = 1024**3
# The job writes means normalised in float64 then rounded to float32: their norms are 1 within ~1e-6.
UNIT_NORM_TOLERANCE = 1e-3
BYTE_ORDER_MARK = "\ufeff"
_FIX = "use the final_mean_embeddings.csv the training job published, or retrain"


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
    """Parse and check the CSV: header, unique identities, counts ≥ 1, finite unit-length means of one
    dimension; at most MAX_CSV_BYTES, no byte-order mark."""
    if len(text) > MAX_CSV_BYTES:  # characters: never more than the file's UTF-8 bytes
        raise EnrollmentCsvError(f"final_mean_embeddings.csv is over {MAX_CSV_BYTES} bytes; {_FIX}")
    if text.startswith(BYTE_ORDER_MARK):
        # Refused, not stripped: a file with a BOM was re-saved by a spreadsheet or editor (Excel adds
        # one), which also re-rounds the values and drops the quotes that keep a name such as "123" a
        # name; nothing but the job's own file is known to hold the means the job computed.
        raise EnrollmentCsvError(
            "final_mean_embeddings.csv starts with a byte-order mark: it was re-saved by a spreadsheet or "
            f"editor, which can change names and values; {_FIX}"
        )
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
            _check_unit_length(values, number)
            seen.add(identity)
            rows.append((identity, int(count), values))
    except ValueError as exc:
        if isinstance(exc, EnrollmentCsvError):
            raise
        raise EnrollmentCsvError(f"final_mean_embeddings.csv: {exc}") from None
    return rows


def _check_unit_length(values: np.ndarray, number: int) -> None:
    """A mean embedding is unit length (the job normalises it); zeros or another length is refused."""
    norm = float(np.linalg.norm(values.astype(np.float64)))
    if abs(norm - 1.0) <= UNIT_NORM_TOLERANCE:
        return
    what = "all zeros" if norm == 0.0 else f"of length {norm:.6g}"
    raise EnrollmentCsvError(
        f"final_mean_embeddings.csv row {number}: the mean embedding is {what}, not unit length (the job "
        f"writes unit-length means), so that identity could never be matched; {_FIX}"
    )
