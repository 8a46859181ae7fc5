"""Incremental retraining: reuse the published run's per-photo embeddings where nothing changed.

A photo's embedding depends only on its bytes (sha256) and on the embedding settings. The settings are
summed up in an embedding fingerprint stored in saved_embeddings.pkl; when the published run's
fingerprint equals this run's, every photo whose sha256 it holds is reused, the others are computed, and
photos no longer present are simply not carried over. A changed setting changes the fingerprint and
forces a full recompute. The known strangers' photos (face_imgs/_strangers/) are reused the same way, from
the file's `strangers` records (contract.embeddings_file): by sha256, so a photo moved between a person's
folder and _strangers/ is reused either way, and a stranger no longer in _strangers/ is not carried over.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .contract.counting import counted
from .contract.embeddings_file import EmbeddingsFileError, load_embeddings, record_problem
from .contract.hyperparameters import Hyperparameters
from .contract.names import EMBEDDINGS_PKL
from .contract.shorten import shorten
from .inference.faces import DetectedFace
from .photos import PhotoRef, photo_digests
from .pipeline import Accepted

log = logging.getLogger("facetrain")

# Settings that change what a photo's embedding is (batch size, device, thresholds of the enrollment do not).
EMBEDDING_SETTINGS = (
    "embedder",
    "weights",
    "jitter",
    "image_size",
    "margin",
    "min_face_size",
    "detection_thresholds",
    "detection_max_side",
    "face_selection",
    "max_image_pixels",
    "runtime",
)


def embedding_fingerprint(
    settings: Hyperparameters, model_files: Mapping[str, str], preprocessing_version: int
) -> str:
    """sha256 of everything that decides a photo's embedding: the embedder, its settings, the sha256 of
    every model file (`model_files`: name → sha256), and the seed too, for random weights."""
    values: dict[str, Any] = {name: getattr(settings, name) for name in EMBEDDING_SETTINGS}
    values["detection_thresholds"] = list(settings.detection_thresholds)
    values["model_files"] = dict(sorted(model_files.items()))
    values["preprocessing_version"] = preprocessing_version
    if settings.not_for_production:
        values["seed"] = settings.seed
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class PreviousEmbeddings:
    """The published run's per-photo records, by photo sha256."""

    by_sha256: Mapping[str, Mapping[str, Any]]
    run_fingerprint: str


def load_previous(channel: Path | None, fingerprint: str, dimension: int) -> PreviousEmbeddings | None:
    """The reusable records of the `previous` channel, or None (no channel, unreadable, other settings).
    Records that are not sound (embeddings_file.record_problem) are left out, with a warning: their
    photos are computed again."""
    if channel is None:
        return None
    path = channel / EMBEDDINGS_PKL
    if not path.is_file():
        log.warning("previous channel has no %s: computing every embedding", EMBEDDINGS_PKL)
        return None
    try:
        payload = load_embeddings(path)
    except EmbeddingsFileError as exc:
        log.warning("previous embeddings unusable (%s): computing every embedding", exc)
        return None
    previous = payload["metadata"].get("embedding_fingerprint")
    if previous != fingerprint:
        log.info("embedding settings changed since the previous run: computing every embedding")
        return None
    by_sha: dict[str, Mapping[str, Any]] = {}
    unsound: list[str] = []
    for what, records in (("record", payload["records"]), ("stranger record", payload["strangers"])):
        for index, record in enumerate(records):
            problem = record_problem(record, dimension)
            if problem is None and what == "record":
                by_sha[record["sha256"]] = record
            elif problem is None:  # the same bytes as an enrolled photo give the same embedding
                by_sha.setdefault(record["sha256"], record)
            else:
                unsound.append(f"{what} {index} ({shorten(record.get('key'))}): {problem}")
    if unsound:
        unsound_count = counted(len(unsound), "record")
        log.warning("previous embeddings: %s unsound, their photos are recomputed", unsound_count)
        log.debug("previous embeddings, unsound (first 20): %s", "; ".join(unsound[:20]))  # keys: not at INFO
    return PreviousEmbeddings(by_sha256=by_sha, run_fingerprint=str(previous))


def split_reusable(
    photos: list[PhotoRef], previous: PreviousEmbeddings | None, workers: int = 4
) -> tuple[list[Accepted], list[PhotoRef]]:
    """(photos whose embedding is reused, as outcomes; photos to examine). Hashing runs in threads."""
    if previous is None or not previous.by_sha256:
        return [], list(photos)
    digests = photo_digests(photos, workers)
    reused: list[Accepted] = []
    to_compute: list[PhotoRef] = []
    for photo, digest in zip(photos, digests, strict=True):
        record = previous.by_sha256.get(digest) if digest else None
        if record is None:
            to_compute.append(photo)
            continue
        face = DetectedFace(
            box=tuple(float(v) for v in record["box"]),  # type: ignore[arg-type]
            probability=float(record["probability"]),
            faces_found=int(record.get("faces_found", 1)),
        )
        embedding = np.asarray(record["embedding"], dtype=np.float32)
        reused.append(Accepted(photo=photo, sha256=str(digest), face=face, embedding=embedding))
    return reused, to_compute
