"""Text cells a spreadsheet would run as a formula (OWASP "CSV injection"), and how the job's CSVs avoid them.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a formula by Excel,
LibreOffice and Google Sheets when a person opens the CSV (`=HYPERLINK(...)`, `=cmd|...`): quoting the
field does not help. The fullwidth and small forms (U+FF1D, U+FE62) become those characters under NFKC and are
treated alike. Standard library only: the Lambdas' layer ships this module.

Which CSV does what:
- final_mean_embeddings.csv is data read back by machines (identify, publish): its identity names are
  never altered (quoted, not neutralised), so a name that is a formula is refused at validation and at
  the job's start (contract.identity_names): its numbers are never quoted and are numbers to a spreadsheet.
- rejected.csv is a report for people, read by no program: every cell that starts like a formula is
  written with a leading `'` (`neutralised`), as OWASP advises. Its photo column holds file names a
  camera or a person chose (any name is a valid photo) and its message column library text, so refusing
  them would refuse harmless photos over a report cell.
"""

from __future__ import annotations

import unicodedata

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
NEUTRALISING_PREFIX = "'"  # what a spreadsheet shows as text and hides in the cell


def starts_like_formula(text: str) -> bool:
    """True when a spreadsheet would read this text cell as a formula (or NFKC makes it one)."""
    return text.startswith(FORMULA_PREFIXES) or unicodedata.normalize("NFKC", text[:1]).startswith(
        FORMULA_PREFIXES
    )


def neutralised(text: str) -> str:
    """The text as a cell of a CSV people open: a leading `'` when it starts like a formula, else as is."""
    return NEUTRALISING_PREFIX + text if starts_like_formula(text) else text
