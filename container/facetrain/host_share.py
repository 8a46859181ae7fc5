"""What one host of a multi-host job hands the first host (HostShare), and its wire form: UTF-8 JSON.

Every outcome kind travels as it is (Accepted with its face and embedding, Rejected with a Rejection or an
Unforeseen one, SkippedFile), each with its photo (identity, key, path); the counts travel beside them.
Embeddings are their raw little-endian bytes in base64, with dtype and shape, so they arrive bit-exact;
floats are written by `repr`, which reads back exactly. Names that are not UTF-8 (surrogate escapes) are
written as JSON escapes (ensure_ascii) and come back unchanged.

Why JSON and not pickle: these bytes come off the network, and reading JSON runs no code whoever sent it.
Why not the checkpoints' codec (contract.embeddings_file): it keeps accepted records and lasting rejections
only, without the photo's path or the other outcome kinds, and is still a (restricted) unpickler.
`share_from_json` checks every field and raises ShareUnreadable naming the first one that is wrong.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .inference.faces import DetectedFace
from .photos import PhotoRef, Rejection, SkippedFile
from .pipeline import Accepted, Rejected, Unforeseen

Outcome = Accepted | Rejected | SkippedFile
# Embeddings are float32 (facenet) or float64; never an object dtype, which could hold anything.
_EMBEDDING_DTYPES = frozenset({"<f4", "<f8"})


@dataclass(frozen=True)
class HostShare:
    """What one host contributes: its photos' outcomes and counts (gathered on the master). The known
    strangers' photos (face_imgs/_strangers/) are sharded like the others: their outcomes are among
    `outcomes` (PhotoRef.is_stranger tells them apart) and counted in `photos`, `computed`, `reused`."""

    outcomes: list[Outcome]
    stray_files: list[str]
    computed: int
    reused: int
    photos: int  # listed on this host, known strangers' included
    loop_seconds: float
    examined: int  # photos examined now (neither reused nor resumed): images_per_second counts these


class ShareUnreadable(ValueError):
    """A share's JSON does not follow this module's form; the message names the field."""


def share_to_json(share: HostShare) -> dict[str, Any]:
    """The share as JSON data (dicts, lists, str, int, float, None)."""
    return {
        "outcomes": [_outcome_to_json(outcome) for outcome in share.outcomes],
        "stray_files": [str(name) for name in share.stray_files],
        "computed": int(share.computed),
        "reused": int(share.reused),
        "photos": int(share.photos),
        "loop_seconds": float(share.loop_seconds),
        "examined": int(share.examined),
    }


def share_from_json(data: object, where: str = "share") -> HostShare:
    """The share `share_to_json` wrote; ShareUnreadable naming the first wrong field (`where` prefixes it)."""
    outcomes = _get(data, "outcomes", list, where)
    stray_files = _get(data, "stray_files", list, where)
    for index, name in enumerate(stray_files):
        if not isinstance(name, str):
            raise ShareUnreadable(f"{where}.stray_files[{index}] is not a string")
    return HostShare(
        outcomes=[_outcome_from_json(item, f"{where}.outcomes[{i}]") for i, item in enumerate(outcomes)],
        stray_files=list(stray_files),
        computed=_count(data, "computed", where),
        reused=_count(data, "reused", where),
        photos=_count(data, "photos", where),
        loop_seconds=_number(data, "loop_seconds", where),
        examined=_count(data, "examined", where),
    )


def _outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    photo = {"identity": outcome.photo.identity, "key": outcome.photo.key, "path": str(outcome.photo.path)}
    if isinstance(outcome, Accepted):
        face = outcome.face
        return {
            "kind": "accepted",
            "photo": photo,
            "sha256": outcome.sha256,
            "box": [float(v) for v in face.box],
            "probability": float(face.probability),
            "faces_found": int(face.faces_found),
            "embedding": _array_to_json(outcome.embedding),
        }
    if isinstance(outcome, Rejected):
        return {
            "kind": "rejected",
            "photo": photo,
            "sha256": outcome.sha256,
            "reason": outcome.rejection.reason,
            "message": outcome.rejection.message,
            "unforeseen": isinstance(outcome.rejection, Unforeseen),
        }
    if isinstance(outcome, SkippedFile):
        return {"kind": "skipped", "photo": photo, "message": outcome.message}
    raise TypeError(f"a host share holds a {type(outcome).__name__}, which is no photo outcome")


def _outcome_from_json(data: object, where: str) -> Outcome:
    kind = _get(data, "kind", str, where)
    raw_photo = _get(data, "photo", dict, where)
    photo = PhotoRef(
        identity=_get(raw_photo, "identity", str, f"{where}.photo"),
        key=_get(raw_photo, "key", str, f"{where}.photo"),
        path=Path(_get(raw_photo, "path", str, f"{where}.photo")),
    )
    if kind == "accepted":
        box = _get(data, "box", list, where)
        if len(box) != 4 or not all(_is_number(v) for v in box):
            raise ShareUnreadable(f"{where}.box is not 4 numbers")
        face = DetectedFace(
            box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
            probability=_number(data, "probability", where),
            faces_found=_count(data, "faces_found", where),
        )
        embedding = _array_from_json(_get(data, "embedding", dict, where), f"{where}.embedding")
        return Accepted(photo, _get(data, "sha256", str, where), face, embedding)
    if kind == "rejected":
        sha256 = _get(data, "sha256", (str, type(None)), where)
        unforeseen = _get(data, "unforeseen", bool, where)
        rejection = (Unforeseen if unforeseen else Rejection)(
            _get(data, "reason", str, where), _get(data, "message", str, where)
        )
        return Rejected(photo, sha256, rejection)
    if kind == "skipped":
        return SkippedFile(photo, _get(data, "message", str, where))
    raise ShareUnreadable(f"{where}.kind is {kind!r}, not accepted, rejected or skipped")


def _array_to_json(array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array)
    little = array.dtype.newbyteorder("<")
    if little.str not in _EMBEDDING_DTYPES:
        raise TypeError(f"an embedding of dtype {array.dtype} is no float32 or float64 array")
    return {
        "dtype": little.str,
        "shape": list(array.shape),
        "data": base64.b64encode(np.ascontiguousarray(array, dtype=little).tobytes()).decode("ascii"),
    }


def _array_from_json(data: dict[str, Any], where: str) -> np.ndarray:
    dtype = _get(data, "dtype", str, where)
    if dtype not in _EMBEDDING_DTYPES:
        raise ShareUnreadable(f"{where}.dtype is {dtype!r}, not one of {sorted(_EMBEDDING_DTYPES)}")
    shape = _get(data, "shape", list, where)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ShareUnreadable(f"{where}.shape is not a list of sizes")
    try:
        raw = base64.b64decode(_get(data, "data", str, where), validate=True)
    except ValueError:
        raise ShareUnreadable(f"{where}.data is not base64") from None
    itemsize = np.dtype(dtype).itemsize
    if len(raw) != math.prod(shape) * itemsize:
        raise ShareUnreadable(f"{where}.data holds {len(raw)} bytes, not {shape} x {itemsize}")
    # A writable array in this machine's byte order, as the host that computed it held it.
    return np.frombuffer(raw, dtype=dtype).astype(np.dtype(dtype).newbyteorder("=")).reshape(shape)


def _get(data: object, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, dict):
        raise ShareUnreadable(f"{where} is not an object")
    if key not in data:
        raise ShareUnreadable(f"{where}.{key} is missing")
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ShareUnreadable(f"{where}.{key} is a {type(value).__name__}, not a {names}")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(data: object, key: str, where: str) -> float:
    return float(_get(data, key, (int, float), where))


def _count(data: object, key: str, where: str) -> int:
    value = _get(data, key, int, where)
    if value < 0:
        raise ShareUnreadable(f"{where}.{key} is negative")
    return int(value)
