"""Caps on the size of a run's results files, shared by the publish Lambda's check of model.tar.gz
(facetrain_lambdas.artifact) and `facetrain identify` (facetrain.identify), so that identify reads
whatever publish accepted and nothing larger.

Standard-library only, like the rest of facetrain.contract, which the Lambdas' layer ships.
"""

from __future__ import annotations

from .enrollment_csv import MAX_CSV_BYTES
from .names import ENROLLMENT_CSV, RULES_PY
from .rules_file import MAX_RULES_BYTES

# Any one results file (saved_embeddings.pkl, metrics.json, rejected.csv, report.html), in bytes.
MAX_RESULT_FILE_BYTES = 2 * 1024**3
# The results files whose reader has a smaller cap of its own: refused at that cap.
READER_CAPS = {RULES_PY: MAX_RULES_BYTES, ENROLLMENT_CSV: MAX_CSV_BYTES}


def result_file_cap(name: str) -> int:
    """The most bytes a results file named `name` may have."""
    return READER_CAPS.get(name, MAX_RESULT_FILE_BYTES)
