"""`saved_embeddings.pkl`: per-photo embeddings, pickled, and read back with a restricted unpickler.

The pickle holds only builtins and numpy arrays, so `load_embeddings` can refuse every other global and
never runs code from a tampered file.

`records` are the enrolled photos. `strangers` holds the known strangers' photos (face_imgs/_strangers/,
contract.names.STRANGERS_FOLDER) in the same record form, identity `_strangers`: never part of the
enrollment, kept only so that the next run reuses their embeddings (and they are biometric data of people
who are not enrolled: a run without the folder writes none). A file without the key (written before known
strangers) reads as having none.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

FORMAT = "facetrain.saved_embeddings"
VERSION = 1
RECORD_KEYS = ("identity", "key", "sha256", "box", "probability", "embedding")

# The only globals a numpy array needs to unpickle (numpy 1.x and 2.x module names).
_ALLOWED_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class EmbeddingsFileError(ValueError):
    """saved_embeddings.pkl is unreadable or not in facetrain's format."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise EmbeddingsFileError(f"saved_embeddings.pkl refers to {module}.{name}, which is not allowed")


_HEX64 = frozenset("0123456789abcdef")
UNIT_NORM_TOLERANCE = 1e-3


def _finite_number(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.floating, np.integer))
        and not isinstance(value, bool)
        and (math.isfinite(float(value)))
    )


def record_problem(record: object, dimension: int) -> str | None:
    """What is wrong with one per-photo record (None when it is sound): the types of its fields, the
    photo's sha256, a box of 4 finite numbers with x1 < x2 and y1 < y2, a probability in [0, 1], and a
    finite float32 embedding of `dimension` values with unit norm."""
    if not isinstance(record, dict):
        return "is not a mapping"
    for key in ("identity", "key"):
        if not isinstance(record.get(key), str) or not record[key]:
            return f"{key} is not a non-empty string"
    sha = record.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and set(sha) <= _HEX64):
        return "sha256 is not 64 lowercase hex digits"
    box = record.get("box")
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_finite_number(v) for v in box)):
        return "box is not 4 finite numbers"
    if not (box[0] < box[2] and box[1] < box[3]):
        return "box is empty or inverted"
    probability = record.get("probability")
    if not (_finite_number(probability) and 0.0 <= float(probability) <= 1.0):  # type: ignore[arg-type]
        return "probability is not a number in [0, 1]"
    faces = record.get("faces_found", 1)
    if not (isinstance(faces, int) and not isinstance(faces, bool) and faces >= 1):
        return "faces_found is not a positive integer"
    embedding = record.get("embedding")
    if (
        not isinstance(embedding, np.ndarray)
        or embedding.dtype != np.float32
        or embedding.shape != (dimension,)
    ):
        return f"embedding is not a float32 array of {dimension} values"
    if not np.all(np.isfinite(embedding)):
        return "embedding has a non-finite value"
    if abs(float(np.linalg.norm(embedding.astype(np.float64))) - 1.0) > UNIT_NORM_TOLERANCE:
        return "embedding is not of unit length"
    return None


def dump_embeddings(
    metadata: Mapping[str, object],
    records: Sequence[Mapping[str, object]],
    out: IO[bytes],
    strangers: Sequence[Mapping[str, object]] = (),
) -> None:
    """Write the per-photo records, the known strangers' records and the run metadata."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "metadata": dict(metadata),
        "records": [dict(record) for record in records],
        "strangers": [dict(record) for record in strangers],
    }
    pickle.dump(payload, out, protocol=pickle.HIGHEST_PROTOCOL)


def load_embeddings(source: bytes | Path) -> dict[str, Any]:
    """Load and check a saved_embeddings.pkl without allowing any global but numpy's array builders."""
    data = source.read_bytes() if isinstance(source, Path) else source
    try:
        payload = _RestrictedUnpickler(io.BytesIO(data)).load()
    except EmbeddingsFileError:
        raise
    except Exception as exc:  # a truncated or foreign file can fail in many ways
        raise EmbeddingsFileError(
            f"saved_embeddings.pkl cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise EmbeddingsFileError(f"saved_embeddings.pkl is not a {FORMAT} file")
    records = payload.get("records")
    if not isinstance(records, list) or not isinstance(payload.get("metadata"), dict):
        raise EmbeddingsFileError("saved_embeddings.pkl lacks its records list or metadata")
    strangers = payload.setdefault("strangers", [])
    if not isinstance(strangers, list):
        raise EmbeddingsFileError("saved_embeddings.pkl: strangers is not a list of records")
    for what, entries in (("record", records), ("stranger record", strangers)):
        for index, record in enumerate(entries):
            if not isinstance(record, dict) or any(key not in record for key in RECORD_KEYS):
                raise EmbeddingsFileError(f"{what} {index} lacks one of {', '.join(RECORD_KEYS)}")
            embedding = record["embedding"]
            if not isinstance(embedding, np.ndarray) or embedding.dtype != np.float32 or embedding.ndim != 1:
                raise EmbeddingsFileError(f"{what} {index}: embedding is not a 1-D float32 array")
    return payload
