"""The erasure's view into archives: tar (any compression), zip, and single gzip, bzip2 or xz streams.

An archive is judged only by its members, never by its own (compressed) bytes: a member holds a trace
when its name is a photo key of theirs (`<name>/...` or under the images prefix, a leading `./` or `/`
ignored), or when its content does by the rules for a file of its name (`judge`, the dispatcher's,
recursively: a model.tar.gz's metrics.json is read as a metrics.json). A single compressed stream's member
is named after the archive without its suffix (`metrics.json.gz` holds a `metrics.json`).

An archive whose members cannot all be read (corrupt, or nested deeper than the dispatcher allows) counts
as holding a trace: what cannot be checked may hide them. Only one that expands beyond the object's budget
raises (ArchiveTooLarge, naming the key and the fix): deleting it could destroy a run's only model,
keeping it could keep the person.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
from collections.abc import Callable, Iterator

from .erasure_traces import Traces

Judge = Callable[[str, bytes, int], bool]  # (member's file name, content, depth) -> holds a trace
_STREAMS = ((b"\x1f\x8b", gzip, ".gz"), (b"BZh", bz2, ".bz2"), (b"\xfd7zXZ\x00", lzma, ".xz"))


class ArchiveTooLarge(ValueError):
    """An archive expands beyond the erasure's budget: the message names the object and what to do."""


class Unreadable(Exception):
    """An archive member could not be read: the archive counts as holding a trace."""


class Budget:
    """Bytes an object's archives may still expand to."""

    def __init__(self, key: str, limit: int) -> None:
        self.key = key
        self.limit = limit
        self.left = limit

    def take(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise ArchiveTooLarge(
                f"{self.key} expands to more than {self.limit} bytes, too much to scan for the people to "
                "forget: a training job's archive is far smaller. Check what it is; delete it (every "
                "version: aws s3api delete-object --version-id) if it may hold them, then run the request "
                "again"
            )


def is_archive(data: bytes) -> bool:
    """Whether `data` starts like an archive this module opens (a corrupt one included)."""
    return (
        (data[:2] == b"PK" and zipfile.is_zipfile(io.BytesIO(data)))
        or any(data.startswith(magic) for magic, _, _ in _STREAMS)
        or _is_tar(data)
    )


def _is_tar(data: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*"):
            return True
    except Exception:  # not a tar (or a corrupt compressed one: its stream's magic finds it)
        return False


def _members(file_name: str, data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each member. Raises Unreadable when a member cannot be read."""
    if data[:2] == b"PK" and zipfile.is_zipfile(io.BytesIO(data)):
        yield from _zip_members(data, budget)
        return
    if _is_tar(data):
        yield from _tar_members(data, budget)
        return
    for magic, module, suffix in _STREAMS:
        if data.startswith(magic):
            with module.open(io.BytesIO(data)) as stream:
                expanded = stream.read(budget.left + 1)  # never more than the budget in memory
            budget.take(len(expanded))
            yield file_name.removesuffix(suffix), expanded
            return


def _tar_members(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar:
            content = b""
            if member.isfile():
                budget.take(member.size)
                handle = tar.extractfile(member)
                content = handle.read() if handle else b""
            yield member.name, content
            if member.linkname:
                yield member.linkname, b""


def _zip_members(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            budget.take(info.file_size)
            with archive.open(info) as handle:
                content = handle.read(info.file_size + 1)
            if len(content) > info.file_size:
                raise Unreadable(f"zip member {info.filename} is larger than it says")
            yield info.filename, content


def archive_holds(
    file_name: str, data: bytes, traces: Traces, budget: Budget, depth: int, judge: Judge
) -> bool:
    """Whether a member of the archive holds a trace (module docstring); `depth` is this archive's."""
    try:
        for name, content in _members(file_name, data, budget):
            path = name.lstrip("/").removeprefix("./")
            if traces.is_photo_key(path) or traces.is_photo_key(name):
                return True
            if content and judge(path.rsplit("/", 1)[-1], content, depth + 1):
                return True
    except ArchiveTooLarge:
        raise
    except Exception:  # corrupt archives and member streams fail in as many ways as their libraries have
        return True
    return False
