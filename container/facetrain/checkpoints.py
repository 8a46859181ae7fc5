"""Spot checkpoints: each examined photo's outcome, saved as the job goes and reused when it restarts.

With a CheckpointConfig (Spot runs), SageMaker syncs `<SAGEMAKER_BASE_DIR>/checkpoints` (its LocalPath)
with `runs/<run_id>/checkpoints/` in S3, and puts those objects back into the folder when an interrupted
job starts again. Without that folder nothing is written: only a job with a CheckpointConfig has it, and
a hand-run or test job should not leave biometric data behind. (AWS's pages say the folder is synced and
filled at the start; none says in so many words that an empty one exists on a first start. The job logs
`checkpoints: off` or `checkpoints: photo outcomes saved in …`: the first Spot run on AWS shows which.)

Each host appends segments, `photo-outcomes-<host>-<n>.pkl`, each holding the outcomes found since the
previous one, in the format of saved_embeddings.pkl (`facetrain.contract.embeddings_file`: builtins and
numpy arrays only, read back with its restricted unpickler, so a tampered checkpoint never runs code). Its
metadata holds the embedding fingerprint and the rejections; its records are the accepted photos.
Segments, not one file rewritten: every outcome is written once (the cost grows with the photos, not with
their square), and the versioned data bucket keeps no old copy of each rewrite. Contracts:

- A segment is written at most every `FLUSH_INTERVAL_SECONDS`, when the embedding stage ends and when it
  is stopped (SIGTERM), through a temporary file and a rename: a SIGKILL mid-write leaves the segments
  written before readable, and no partial one. Writing is best effort: an error is a warning, never a
  failed job (the outcomes stay pending for the next segment).
- Outcomes are reused only when the checkpoint's fingerprint equals this run's, and only for a photo whose
  sha256 they hold. A checkpoint that cannot be read is a warning (naming the file, not a person).
- Rejections are checkpointed when they are a verdict on the photo's bytes under these settings (no face,
  several faces, too small, too large, not an image), so such a photo is not examined again after each
  interruption. An unreadable file or an unforeseen error (pipeline.Unforeseen) is examined again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .contract.counting import counted
from .contract.embeddings_file import EmbeddingsFileError, dump_embeddings, load_embeddings, record_problem
from .inference.faces import DetectedFace
from .photos import PhotoRef, Rejection, photo_digests
from .pipeline import Accepted, Rejected, Unforeseen

log = logging.getLogger("facetrain")

FILE_PREFIX = "photo-outcomes-"
FILE_SUFFIX = ".pkl"
FLUSH_INTERVAL_SECONDS = 30.0
# Rejections that depend only on the photo's bytes and the embedding settings (the fingerprint).
LASTING_REASONS = frozenset({"no_face", "several_faces", "too_small", "too_large", "not_an_image"})
MAX_MESSAGE_CHARS = 1000
_HEX64 = re.compile(r"[0-9a-f]{64}")

Outcome = Accepted | Rejected


def _host_prefix(host: str) -> str:
    """`photo-outcomes-<host>-` (a host name other than letters, digits, '-', '_' becomes 'host')."""
    return f"{FILE_PREFIX}{host if re.fullmatch(r'[A-Za-z0-9_-]{1,64}', host) else 'host'}-"


def segment_file(directory: Path, host: str, number: int) -> Path:
    """This host's segment `number`."""
    return directory / f"{_host_prefix(host)}{number:05d}{FILE_SUFFIX}"


def next_segment_number(directory: Path, host: str) -> int:
    """1 + the highest segment number of this host in `directory` (1 when there is none)."""
    pattern = re.compile(re.escape(_host_prefix(host)) + r"(\d{5,})" + re.escape(FILE_SUFFIX))
    numbers = [int(m.group(1)) for path in directory.iterdir() if (m := pattern.fullmatch(path.name))]
    return max(numbers, default=0) + 1


def is_checkpointed(outcome: Outcome) -> bool:
    """Whether an outcome goes into the checkpoint: every accepted photo; a rejection when it is lasting."""
    if isinstance(outcome, Accepted):
        return True
    return (
        outcome.sha256 is not None
        and not isinstance(outcome.rejection, Unforeseen)
        and outcome.rejection.reason in LASTING_REASONS
    )


@dataclass(frozen=True)
class Checkpointed:
    """Outcomes read back from the checkpoint folder, by photo sha256."""

    accepted: Mapping[str, Mapping[str, Any]]  # sound saved_embeddings records
    rejected: Mapping[str, Rejection]

    def __len__(self) -> int:
        return len(self.accepted) + len(self.rejected)


def _rejections(metadata: Mapping[str, Any]) -> tuple[dict[str, Rejection], int]:
    """(the sound rejections of a checkpoint's metadata by sha256, how many were not sound)."""
    found: dict[str, Rejection] = {}
    entries = metadata.get("rejections")
    if not isinstance(entries, list):
        return found, 0 if entries is None else 1
    unsound = 0
    for entry in entries:
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and _HEX64.fullmatch(entry["sha256"])
            and entry.get("reason") in LASTING_REASONS
            and isinstance(entry.get("message"), str)
            and len(entry["message"]) <= MAX_MESSAGE_CHARS
        ):
            found[entry["sha256"]] = Rejection(entry["reason"], entry["message"])
        else:
            unsound += 1
    return found, unsound


def load_checkpoints(directory: Path, fingerprint: str, dimension: int) -> Checkpointed | None:
    """Every host's checkpoint in `directory` whose fingerprint is `fingerprint`, merged; None when there
    is none. Unreadable files and unsound entries are left out with a warning."""
    if not directory.is_dir():
        return None
    accepted: dict[str, Mapping[str, Any]] = {}
    rejected: dict[str, Rejection] = {}
    for path in sorted(directory.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}")):
        try:
            payload = load_embeddings(path)
        except (EmbeddingsFileError, OSError) as exc:
            log.warning("checkpoint %s is unusable and ignored: %s", path.name, type(exc).__name__)
            continue
        metadata = payload["metadata"]
        if metadata.get("embedding_fingerprint") != fingerprint:
            log.info("checkpoint %s was made with other embedding settings: ignored", path.name)
            continue
        unsound = 0
        for record in payload["records"]:
            if record_problem(record, dimension) is None:
                accepted[record["sha256"]] = record
            else:
                unsound += 1
        found, bad = _rejections(metadata)
        rejected.update(found)
        if unsound + bad:
            log.warning("checkpoint %s: %d unsound entr(ies) ignored", path.name, unsound + bad)
    return Checkpointed(accepted, rejected) if accepted or rejected else None


def _accepted(photo: PhotoRef, sha256: str, record: Mapping[str, Any]) -> Accepted:
    face = DetectedFace(
        box=tuple(float(v) for v in record["box"]),  # type: ignore[arg-type]
        probability=float(record["probability"]),
        faces_found=int(record.get("faces_found", 1)),
    )
    return Accepted(photo, sha256, face, np.asarray(record["embedding"], dtype=np.float32))


def resume(
    photos: list[PhotoRef], checkpointed: Checkpointed | None, workers: int = 4
) -> tuple[list[Outcome], list[PhotoRef]]:
    """(the outcomes of photos the checkpoint holds, the photos still to examine), in the given order."""
    if not checkpointed:
        return [], list(photos)
    digests = photo_digests(photos, workers)
    resumed: list[Outcome] = []
    to_examine: list[PhotoRef] = []
    for photo, digest in zip(photos, digests, strict=True):
        if digest in checkpointed.accepted:
            resumed.append(_accepted(photo, digest, checkpointed.accepted[digest]))
        elif digest in checkpointed.rejected:
            resumed.append(Rejected(photo, digest, checkpointed.rejected[digest]))
        else:
            to_examine.append(photo)
    return resumed, to_examine


def _record(outcome: Accepted) -> dict[str, object]:
    return {
        "identity": outcome.photo.identity,
        "key": outcome.photo.key,
        "sha256": outcome.sha256,
        "box": [float(v) for v in outcome.face.box],
        "probability": float(outcome.face.probability),
        "faces_found": int(outcome.face.faces_found),
        "embedding": np.asarray(outcome.embedding, dtype=np.float32),
    }


def _temporary_path(target: Path) -> Path:
    """Where the next version is written before the rename: beside the folder when it is on the same
    file system (SageMaker syncs everything in the folder, and deletes in S3 what is deleted in it),
    else in it under a name no reader takes."""
    folder = target.parent
    with contextlib.suppress(OSError):
        if folder.parent.stat().st_dev == folder.stat().st_dev:
            return folder.parent / f".{folder.name}-{target.name}.tmp"
    return folder / f".{target.name}.tmp"


class CheckpointWriter:
    """Collects checkpointed outcomes and writes them as this host's next segment, at most every
    `interval_seconds` (and on `flush()`)."""

    def __init__(
        self,
        directory: Path,
        host: str,
        fingerprint: str,
        interval_seconds: float = FLUSH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.host = host
        self.fingerprint = fingerprint
        self.interval_seconds = interval_seconds
        self.clock = clock
        self.accepted: list[dict[str, object]] = []  # pending: not in a segment yet
        self.rejected: list[dict[str, str]] = []
        self.segments: list[Path] = []
        self.saved = 0
        self._next = next_segment_number(directory, host)
        self._last_flush = clock()

    def add(self, outcome: Outcome) -> None:
        """Keep the outcome (if checkpointed); write a segment when the interval has passed."""
        if not is_checkpointed(outcome):
            return
        if isinstance(outcome, Accepted):
            self.accepted.append(_record(outcome))
        else:
            self.rejected.append(
                {
                    "sha256": str(outcome.sha256),
                    "reason": outcome.rejection.reason,
                    "message": outcome.rejection.message[:MAX_MESSAGE_CHARS],
                }
            )
        if self.clock() - self._last_flush >= self.interval_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the pending outcomes as the next segment, through a temporary file and a rename; an error
        is only a warning (they stay pending)."""
        self._last_flush = self.clock()
        pending = len(self.accepted) + len(self.rejected)
        if not pending:
            return
        metadata = {
            "kind": "checkpoint",
            "embedding_fingerprint": self.fingerprint,
            "rejections": self.rejected,
        }
        target = segment_file(self.directory, self.host, self._next)
        temporary = _temporary_path(target)
        try:
            with temporary.open("wb") as out:
                dump_embeddings(metadata, self.accepted, out)
                out.flush()
                os.fsync(out.fileno())
            temporary.replace(target)
        except OSError as exc:
            log.warning("checkpoint %s not written (%s): the job goes on", target.name, exc.strerror)
            with contextlib.suppress(OSError):
                temporary.unlink()
            return
        log.info(
            "checkpoint: %s and %s saved (%s)",
            counted(len(self.accepted), "embedding"),
            counted(len(self.rejected), "rejection"),
            target.name,
        )
        self.accepted, self.rejected = [], []
        self.segments.append(target)
        self.saved += pending
        self._next += 1


@contextlib.contextmanager
def checkpointing(directory: Path, host: str, fingerprint: str) -> Iterator[CheckpointWriter | None]:
    """A writer of this host's checkpoint segments (None when `directory` does not exist); it is flushed
    when the block ends, also when a stop (SIGTERM) or an error ends it."""
    if not directory.is_dir():
        log.info("checkpoints: off (no %s folder: the job has no CheckpointConfig)", directory)
        yield None
        return
    writer = CheckpointWriter(directory, host, fingerprint)
    log.info("checkpoints: photo outcomes saved in %s", directory)
    try:
        yield writer
    finally:
        writer.flush()
