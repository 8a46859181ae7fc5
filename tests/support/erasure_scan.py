"""An erasure's proof by scan: every file under a folder (hidden ones too: the saved bucket's noncurrent
versions), every member of every archive inside it, searched for a person's name and embeddings.

Written apart from the erasure's own code (facetrain_lambdas.erasure_scrub) on purpose: a proof that used
the scrubber's reading of the formats would share its blind spots. So it reads bytes: the name as bytes
anywhere (raw, and in every decompressed stream and archive member, and in file and member names), and an
embedding as the bytes of its first components (float32 and float64, as numpy and pickle store them), as
well as every vector it can parse (CSV rows, the embeddings pickles through their restricted reader, JSON
number lists) compared within a tolerance.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from facetrain.contract.embeddings_file import load_embeddings

MIN_DIMENSION = 64  # shorter number lists (boxes, figures) are not embeddings
PREFIX_COMPONENTS = 6  # an embedding's first components, as bytes, identify it


def files(root: Path) -> Iterator[tuple[str, bytes]]:
    """(path relative to root, bytes) of every file under root, hidden ones included."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path.relative_to(root).as_posix(), path.read_bytes()


def expanded(where: str, data: bytes, depth: int = 0) -> Iterator[tuple[str, bytes]]:
    """The blob, and recursively what it holds: decompressed streams and archive members."""
    yield where, data
    if depth > 4:
        return
    for opener in (gzip.decompress, bz2.decompress, lzma.decompress):
        try:
            inner = opener(data)
        except Exception:
            continue
        yield from expanded(f"{where}!", inner, depth + 1)
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive.getmembers():
                if member.isfile():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield from expanded(f"{where}!{member.name}", handle.read(), depth + 1)
    except Exception:
        pass
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                yield from expanded(f"{where}!{name}", archive.read(name), depth + 1)
    except Exception:
        pass


def blobs(roots: Iterable[Path]) -> Iterator[tuple[str, bytes]]:
    for root in roots:
        for where, data in files(root):
            yield from expanded(f"{root.name}/{where}", data)


def name_traces(roots: Iterable[Path], name: str) -> list[str]:
    """Where the name appears: in a file's or member's path, or in its bytes (raw or decompressed)."""
    needle = name.encode()
    return [where for where, data in blobs(roots) if needle in where.encode() or needle in data]


def _csv_vectors(data: bytes) -> list[np.ndarray]:
    vectors = []
    try:
        lines = [line for line in data.decode("utf-8").splitlines() if not line.startswith("#")]
    except UnicodeDecodeError:
        return []
    for row in csv.reader(lines):
        numbers = []
        for cell in row:
            try:
                numbers.append(float(cell))
            except ValueError:
                continue
        if len(numbers) >= MIN_DIMENSION:
            vectors.append(np.asarray(numbers, dtype=np.float64))  # the count first, then the mean
    return vectors


def _pickle_vectors(data: bytes) -> list[np.ndarray]:
    try:
        payload = load_embeddings(data)
    except Exception:
        return []
    records = [*payload["records"], *payload["strangers"]]
    return [np.asarray(r["embedding"], dtype=np.float64).ravel() for r in records]


def _json_vectors(data: bytes) -> list[np.ndarray]:
    try:
        document = json.loads(data)
    except Exception:
        return []
    found: list[np.ndarray] = []

    def walk(node: object) -> None:
        if isinstance(node, list):
            if len(node) >= MIN_DIMENSION and all(isinstance(v, int | float) for v in node):
                found.append(np.asarray(node, dtype=np.float64))
            else:
                for item in node:
                    walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)

    walk(document)
    return found


def vectors(data: bytes) -> list[np.ndarray]:
    """Every embedding-like vector parsed out of the blob (a CSV row's numbers: its count, then its mean)."""
    return [*_csv_vectors(data), *_pickle_vectors(data), *_json_vectors(data)]


def embedding_traces(roots: Iterable[Path], targets: list[np.ndarray], tolerance: float) -> list[str]:
    """Where a vector within `tolerance` (largest component difference) of a target lies (a longer one's
    last components: a CSV row's count comes first), or a target's first components as float32 or
    float64 bytes."""
    patterns = [
        t[:PREFIX_COMPONENTS].astype(dtype).tobytes() for t in targets for dtype in (np.float32, np.float64)
    ]
    found = []
    for where, data in blobs(roots):
        if any(pattern in data for pattern in patterns):
            found.append(where)
            continue
        for vector in vectors(data):
            close = (
                np.max(np.abs(vector[-len(t) :] - t)) <= tolerance for t in targets if len(vector) >= len(t)
            )
            if any(close):
                found.append(where)
                break
    return found
